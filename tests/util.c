/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if UNDER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>

static int main_thread_gone;

int __lsan_is_turned_off(void)
{
	return main_thread_gone;
}
#endif

void stack_unwinds_next(void)
{
#if UNDER_ASAN
	__asan_handle_no_return();
#endif
}

void main_thread_exit(void)
{
#if UNDER_ASAN
	main_thread_gone = 1;
#endif
	stack_unwinds_next();
	pthread_exit(NULL);
}

/* For auto, the backend the library picks on this machine. */
const char *test_backend(void)
{
	static const char *picked;
	const char *b = getenv("AIO_COMPAT_BACKEND");
	io_context_t ctx = NULL;

	if (b && *b && strcmp(b, "auto"))
		return b;
	if (!picked && aio_compat_backend && io_setup(1, &ctx) == 0) {
		picked = aio_compat_backend(ctx) == AIO_COMPAT_URING ? "uring" : "native";
		io_destroy(ctx);
	}
	return picked ? picked : "auto";
}

int uring_emulates_before(unsigned major, unsigned minor)
{
	const char *env = getenv("AIO_COMPAT_URING_EMULATE");
	unsigned env_major, env_minor;

	if (!env)
		return 0;
	if (!strcmp(env, "none"))
		return 1;
	if (sscanf(env, "%u.%u", &env_major, &env_minor) != 2)
		return 0;
	return env_major < major || (env_major == major && env_minor < minor);
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

void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	struct io_event ev[8];
	struct timespec start, end;

	clock_gettime(CLOCK_MONOTONIC, &start);
	w->ret = getevents_ms(w->ctx, w->min_nr, w->min_nr, ev, 5000);
	clock_gettime(CLOCK_MONOTONIC, &end);
	w->ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
	return NULL;
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

int submit_one(io_context_t ctx, struct iocb *cb)
{
	return io_submit(ctx, 1, &cb);
}

long reap_one(io_context_t ctx, struct iocb *cb)
{
	struct io_event ev;
	int ret = getevents_ms(ctx, 1, 1, &ev, 2000);

	ck_assert_int_eq(ret, 1);
	ck_assert_ptr_eq(ev.obj, cb);
	ck_assert_ptr_eq(ev.data, cb->data);
	return (long)ev.res;
}

void reap_n(io_context_t ctx, int n, struct io_event *ev, long ms)
{
	struct timespec start, now;
	int got = 0;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (got < n) {
		int ret = getevents_ms(ctx, 1, n - got, ev + got, 100);
		long spent;

		ck_assert_int_ge(ret, 0);
		got += ret;
		clock_gettime(CLOCK_MONOTONIC, &now);
		spent =
		    (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		ck_assert_msg(got == n || spent < ms, "reaped %d of %d events in %ld ms", got, n,
			      spent);
	}
}

void expect_no_event(io_context_t ctx, long ms)
{
	struct io_event ev;

	ck_assert_int_eq(getevents_ms(ctx, 1, 1, &ev, ms), 0);
}

void expect_error_at_submit_or_event(io_context_t ctx, struct iocb *cb, int err)
{
	int ret = submit_one(ctx, cb);

	/* io_uring may know it only at completion; what it can tell, it tells at once. */
	if (ctx_is_uring(ctx) && ret == 1)
		ck_assert_int_eq(reap_one(ctx, cb), err);
	else
		ck_assert_int_eq(ret, err);
	expect_no_event(ctx, 10);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

int count_fds(void)
{
	return count_entries("/proc/self/fd");
}

int count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;

	ck_assert_ptr_nonnull(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

int count_ring_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;

	ck_assert_ptr_nonnull(f);
	/* Long lines are read in pieces; a name fits in one. */
	while (fgets(line, sizeof(line), f))
		n += strstr(line, " /[aio]") || strstr(line, " anon_inode:[io_uring]");
	fclose(f);
	return n;
}

unsigned kernel_ring_nr(int maxevents)
{
	unsigned long id = 0;
	unsigned nr;

	ck_assert_int_eq(syscall(SYS_io_setup, maxevents, &id), 0);
	nr = ((struct aio_ring *)id)->nr;
	ck_assert_int_eq(syscall(SYS_io_destroy, id), 0);
	return nr;
}

int kernel_inflight_limit(int maxevents)
{
	unsigned long id = 0;
	struct iocb cb;
	struct iocb *cbp = &cb;
	int fds[2], n = 0;

	/* The kernel keeps only the iocb's address: one iocb serves every poll. */
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(syscall(SYS_io_setup, maxevents, &id), 0);
	io_prep_poll(&cb, fds[0], POLLIN);
	while (syscall(SYS_io_submit, id, 1, &cbp) == 1)
		n++;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(syscall(SYS_io_destroy, id), 0);
	close(fds[0]);
	close(fds[1]);
	return n;
}

void pin_to_cpu0(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(set), &set), 0);
}
