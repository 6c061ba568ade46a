/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

	if (!aio_compat_backend)
		return "libaio";
	if (b && *b && strcmp(b, "auto"))
		return b;
	if (!picked && aio_compat_backend && io_setup(1, &ctx) == 0) {
		picked = aio_compat_backend_name(aio_compat_backend(ctx));
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
	int backend = aio_compat_backend ? aio_compat_backend(ctx) : -EINVAL;

	return backend == AIO_COMPAT_URING;
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

static const char *suite_area = "?";
static unsigned *skips; /* shared with the forked processes the checks run in */

/* Whether AIO_COMPAT_REQUIRE, a comma-separated list, names part. */
static bool required(const char *part)
{
	const char *list = getenv("AIO_COMPAT_REQUIRE");
	size_t len = strlen(part);

	while (list && *list) {
		size_t n = strcspn(list, ",");

		if (n == len && strncmp(list, part, len) == 0)
			return true;
		list += n + (list[n] == ',');
	}
	return false;
}

static void print_skip(const char *why)
{
	printf("SKIP: %s on %s: %s\n", suite_area, test_backend(), why);
	fflush(stdout);
}

void test_skip(const char *part, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	ck_assert_msg(!part || !required(part), "%s, and AIO_COMPAT_REQUIRE lists %s", why, part);
	print_skip(why);
	__atomic_fetch_add(skips, 1, __ATOMIC_RELAXED);
}

/* 0 when the backend this run names can be set up, else the exit status. */
static int backend_missing(void)
{
	const char *part = strcmp(test_backend(), "uring") == 0 ? "uring" : "native";
	io_context_t ctx = NULL;
	int ret = io_setup(1, &ctx);
	char why[128];

	if (ret == 0) {
		io_destroy(ctx);
		return 0;
	}
	snprintf(why, sizeof(why), "io_setup fails here (%s)", strerror(-ret));
	if (required(part)) {
		printf("FAIL: %s on %s: %s, and AIO_COMPAT_REQUIRE lists %s\n", suite_area,
		       test_backend(), why, part);
		return EXIT_FAILURE;
	}
	print_skip(why);
	return EXIT_SKIP;
}

/*
 * Under valgrind, a fault the library's guard catches deep in a check
 * killed the child the check runs in: valgrind could not grow its main
 * stack to deliver the signal ("Can't extend stack ... during signal
 * delivery"). The stack is touched that deep first; the children inherit it.
 */
static __attribute__((noinline)) void stack_grow(void)
{
	volatile char deep[256 * 1024];

	for (size_t i = 0; i < sizeof(deep); i += 4096)
		deep[i] = 0;
}

int run_suite(Suite *s, const char *area)
{
	SRunner *sr;
	int failed, missing;

	suite_area = area;
	missing = backend_missing();
	if (missing)
		return missing;
	skips =
	    mmap(NULL, sizeof(*skips), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (skips == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	if (UNDER_VALGRIND)
		stack_grow();
	sr = srunner_create(s);
	printf("backend %s: %s\n", test_backend(), area);
	fflush(stdout);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (failed)
		return EXIT_FAILURE;
	return *skips ? EXIT_SKIP : EXIT_SUCCESS;
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
