/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *test_backend(void)
{
	const char *b = getenv("AIO_COMPAT_BACKEND");

	return b && *b ? b : "auto";
}

int ctx_is_uring(io_context_t ctx)
{
	return aio_compat_backend && aio_compat_backend(ctx) == AIO_COMPAT_URING;
}

int tmpfile_in(const char *dir, size_t size, int flags)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/aio-compat-test-XXXXXX", dir ? dir : "/dev/shm");
	fd = mkostemp(path, flags);
	ck_assert_msg(fd >= 0, "mkostemp %s: %s", path, strerror(errno));
	unlink(path);
	if (size)
		ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	return fd;
}

void *aligned_buf(size_t size, int pattern)
{
	void *p = NULL;

	ck_assert_int_eq(posix_memalign(&p, 4096, size), 0);
	memset(p, pattern, size);
	return p;
}

int getevents_ms(io_context_t ctx, long min_nr, long nr, struct io_event *ev, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	return io_getevents(ctx, min_nr, nr, ev, &ts);
}

static int backend_available(void)
{
	io_context_t ctx = NULL;
	int ret = io_setup(1, &ctx);

	if (ret == 0) {
		io_destroy(ctx);
		return 1;
	}
	printf("backend %s: unavailable on this kernel (%s), skipped\n", test_backend(),
	       strerror(-ret));
	return 0;
}

int run_suite(Suite *s, const char *area)
{
	SRunner *sr;
	int failed;

	if (!backend_available())
		return 0;
	sr = srunner_create(s);
	printf("backend %s: %s\n", test_backend(), area);
	fflush(stdout);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
