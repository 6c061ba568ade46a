/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io_setup, io_destroy, io_queue_init, io_queue_release and the ring header. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int aio_max_nr(void)
{
	FILE *f = fopen("/proc/sys/fs/aio-max-nr", "r");
	int n = 0;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d", &n), 1);
	fclose(f);
	return n;
}

START_TEST(setup_and_destroy)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(io_setup(8, &ctx), 0);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

/* Takes every free descriptor under a lowered limit; returns the first taken. */
static int fill_descriptors(struct rlimit *saved)
{
	struct rlimit low;
	int first = -1, fd;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, saved), 0);
	low = *saved;
	low.rlim_cur = 256;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while ((fd = dup(0)) >= 0)
		if (first < 0)
			first = fd;
	ck_assert_int_eq(errno, EMFILE);
	return first;
}

static void release_descriptors(int first, const struct rlimit *saved)
{
	for (int fd = first; first >= 0 && fd < 256; fd++)
		close(fd);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, saved), 0);
}

/* One request on a context set up at the limit, reaped. */
static void rw_once(io_context_t ctx, int fd, int op)
{
	static char buf[4096];
	struct iocb cb, *cbs[1] = { &cb };
	struct io_event ev;

	if (op == IO_CMD_PWRITE)
		io_prep_pwrite(&cb, fd, buf, sizeof(buf), 0);
	else
		io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	ck_assert_int_eq(io_submit(ctx, 1, cbs), 1);
	ck_assert_int_eq(io_getevents(ctx, 1, 1, &ev, NULL), 1);
	ck_assert_int_eq(ev.res, sizeof(buf));
}

static void read_once(io_context_t ctx, int fd)
{
	rw_once(ctx, fd, IO_CMD_PREAD);
}

/*
 * At the descriptor limit: libaio and the native backend need no
 * descriptor. A ring needs one, its own: uring named explicitly fails with
 * -EMFILE while none is free, and with one free takes it and no more (its
 * writes then go to io_uring). auto takes native AIO instead.
 */
START_TEST(setup_at_descriptor_limit)
{
	const char *backend = test_backend();
	int file = tmpfile_in(NULL, 4096, 0), first;
	io_context_t ctx = NULL;
	struct rlimit saved;
	int ret;

	first = fill_descriptors(&saved);
	ret = io_setup(8, &ctx);
	if (!strcmp(backend, "uring") && getenv("AIO_COMPAT_BACKEND") &&
	    !strcmp(getenv("AIO_COMPAT_BACKEND"), "uring")) {
		ck_assert_int_eq(ret, -EMFILE);
		close(first);
		ck_assert_int_eq(io_setup(8, &ctx), 0);
		ck_assert_int_eq(dup(0), -1);
		ck_assert_int_eq(errno, EMFILE);
		rw_once(ctx, file, IO_CMD_PWRITE);
		read_once(ctx, file);
		ck_assert_int_eq(io_destroy(ctx), 0);
		ck_assert_int_eq(dup(0), first);
	} else {
		ck_assert_msg(ret == 0, "%s: io_setup at the descriptor limit: %d", backend, ret);
		read_once(ctx, file);
		ck_assert_int_eq(io_destroy(ctx), 0);
	}
	if (aio_compat_setup) {
		ctx = NULL;
		ck_assert_int_eq(aio_compat_setup(8, &ctx, AIO_COMPAT_NATIVE), 0);
		read_once(ctx, file);
		ck_assert_int_eq(io_destroy(ctx), 0);
	}
	release_descriptors(first, &saved);
	close(file);
}
END_TEST

/* auto, whatever AIO_COMPAT_BACKEND says for the suite. */
START_TEST(auto_at_descriptor_limit)
{
	const char *env = getenv("AIO_COMPAT_BACKEND");
	io_context_t ctx = NULL, warm = NULL;
	struct rlimit saved;
	int file, first, chosen;
	char *was;

	/* The reference has one path, which setup_at_descriptor_limit covers. */
	if (!aio_compat_setup)
		return;
	was = env ? strdup(env) : NULL;
	file = tmpfile_in(NULL, 4096, 0);
	setenv("AIO_COMPAT_BACKEND", "auto", 1);
	/* The probe's answer from before the limit stands: auto, or native without io_uring. */
	ck_assert_int_eq(io_setup(8, &warm), 0);
	chosen = aio_compat_backend(warm);
	ck_assert_int_eq(io_destroy(warm), 0);
	first = fill_descriptors(&saved);
	/* The kernel's context needs no descriptor; cold reads would go without their ring. */
	ck_assert_int_eq(io_setup(8, &ctx), 0);
	ck_assert_int_eq(aio_compat_backend(ctx), chosen);
	read_once(ctx, file);
	ck_assert_int_eq(io_destroy(ctx), 0);
	release_descriptors(first, &saved);
	if (was)
		setenv("AIO_COMPAT_BACKEND", was, 1);
	else
		unsetenv("AIO_COMPAT_BACKEND");
	free(was);
	close(file);
}
END_TEST

struct submit_arg {
	io_context_t ctx;
	int fd;
};

static void *submit_and_exit(void *arg)
{
	static char buf[4096];
	static struct iocb cb;
	struct iocb *cbs[1] = { &cb };
	struct submit_arg *a = arg;

	io_prep_pwrite(&cb, a->fd, buf, sizeof(buf), 0);
	ck_assert_int_eq(io_submit(a->ctx, 1, cbs), 1);
	return NULL;
}

/*
 * What a context holds while in use: none on native AIO and libaio; on a
 * ring, its own and its native AIO side's eventfd. Waiters, the thread
 * that publishes for a program reading the ring itself, and a thread that
 * exits with I/O in flight take none.
 */
START_TEST(descriptors_in_use)
{
	int file = tmpfile_in("/var/tmp", 1 << 20, 0), before = count_fds();
	struct submit_arg arg;
	io_context_t ctx = NULL;
	struct aio_ring *ring;
	struct io_event ev;
	pthread_t t;
	int most;

	ck_assert_int_eq(io_setup(64, &ctx), 0);
	most = ctx_is_uring(ctx) ? 2 : 0;
	ck_assert_int_le(count_fds() - before, most);
	/* The program takes events from the ring itself: the library publishes for it. */
	ring = (struct aio_ring *)ctx;
	ck_assert_uint_eq(ring->magic, AIO_RING_MAGIC);
	for (int i = 0; i < 8; i++) {
		static char buf[4096];
		struct iocb cb, *cbs[1] = { &cb };
		unsigned head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);

		io_prep_pread(&cb, file, buf, sizeof(buf), 0);
		ck_assert_int_eq(io_submit(ctx, 1, cbs), 1);
		for (int ms = 0; __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE) == head; ms++) {
			struct timespec tick = { 0, 1000000 };

			ck_assert_msg(ms < 10000, "no event in the ring for 10 s");
			nanosleep(&tick, NULL);
		}
		__atomic_store_n(&ring->head, (head + 1) % ring->nr, __ATOMIC_RELEASE);
		ck_assert_int_le(count_fds() - before, most);
	}
	arg.ctx = ctx;
	arg.fd = file;
	ck_assert_int_eq(pthread_create(&t, NULL, submit_and_exit, &arg), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_le(count_fds() - before, most);
	ck_assert_int_eq(io_getevents(ctx, 1, 1, &ev, NULL), 1);
	ck_assert_int_eq(io_destroy(ctx), 0);
	ck_assert_int_eq(count_fds(), before);
	close(file);
}
END_TEST

START_TEST(setup_needs_null_ctx)
{
	io_context_t ctx = (io_context_t)0x1;

	ck_assert_int_eq(io_setup(8, &ctx), -EINVAL);
	/* A failed io_setup leaves the handle as it was. */
	ck_assert_ptr_eq(ctx, (io_context_t)0x1);
}
END_TEST

START_TEST(setup_maxevents_zero_or_negative)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(io_setup(0, &ctx), -EINVAL);
	ck_assert_int_eq(io_setup(-1, &ctx), -EINVAL);
	/* The kernel doubles 0x80000000 as unsigned: 0 events, which it answers -EAGAIN. */
	ck_assert_int_eq(io_setup(INT_MIN, &ctx), -EAGAIN);
	ck_assert_ptr_null(ctx);
}
END_TEST

START_TEST(setup_maxevents_huge)
{
	io_context_t ctx = NULL;
	int max = aio_max_nr();

	/*
	 * Twice maxevents must fit in 0x10000000 bytes of io_events, or the
	 * kernel answers -EINVAL; under that, more than fs.aio-max-nr is -EAGAIN.
	 */
	ck_assert_int_eq(io_setup(INT_MAX, &ctx), -EINVAL);
	ck_assert_int_eq(io_setup(0x10000000 / 32 / 2 + 1, &ctx), -EINVAL);
	ck_assert_int_le(max, 0x10000000 / 32 / 2);
	ck_assert_int_eq(io_setup(max + 1, &ctx), -EAGAIN);
	ck_assert_int_eq(io_setup(0x10000000 / 32 / 2, &ctx), -EAGAIN);
	ck_assert_ptr_null(ctx);
}
END_TEST

START_TEST(setup_null_ctxp)
{
	ck_assert_int_eq(io_setup(8, NULL), -EFAULT);
	ck_assert_int_eq(io_setup(8, KERNEL_PTR), -EFAULT);
}
END_TEST

START_TEST(destroy_never_set_up)
{
	long on_stack[8] = { 0 };

	ck_assert_int_eq(io_destroy((io_context_t)0x1000), -EINVAL);
	ck_assert_int_eq(io_destroy((io_context_t)on_stack), -EINVAL);
	ck_assert_int_eq(io_destroy(NULL), -EINVAL);
	ck_assert_int_eq(io_destroy(KERNEL_PTR), -EINVAL);
}
END_TEST

START_TEST(destroy_twice)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(io_setup(4, &ctx), 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	ck_assert_int_eq(io_destroy(ctx), -EINVAL);
}
END_TEST

START_TEST(destroyed_ctx_is_unknown)
{
	io_context_t ctx = NULL;
	struct iocb cb;
	char buf[16];
	int fd = tmpfile_in(NULL, 16, 0);

	ck_assert_int_eq(io_setup(4, &ctx), 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	ck_assert_int_eq(io_cancel(ctx, &cb, NULL), -EINVAL);
	close(fd);
}
END_TEST

START_TEST(queue_init_and_release)
{
	/* io_queue_init clears the handle itself before io_setup. */
	io_context_t ctx = (io_context_t)0x1;

	ck_assert_int_eq(io_queue_init(8, &ctx), 0);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_ptr_ne(ctx, (io_context_t)0x1);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	ck_assert_int_eq(io_queue_release(ctx), -EINVAL);
}
END_TEST

START_TEST(queue_init_bad_maxevents)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(io_queue_init(0, &ctx), -EINVAL);
	ck_assert_int_eq(io_queue_init(-5, &ctx), -EINVAL);
	ck_assert_int_eq(io_queue_init(INT_MAX, &ctx), -EINVAL);
	ck_assert_int_eq(io_queue_init(aio_max_nr() + 1, &ctx), -EAGAIN);
	ck_assert_int_eq(io_queue_release((io_context_t)0x1000), -EINVAL);
}
END_TEST

START_TEST(contexts_are_distinct)
{
	io_context_t a = NULL, b = NULL;

	ck_assert_int_eq(io_setup(4, &a), 0);
	ck_assert_int_eq(io_setup(4, &b), 0);
	ck_assert_ptr_ne(a, b);
	ck_assert_int_eq(io_destroy(a), 0);
	ck_assert_int_eq(io_destroy(b), 0);
}
END_TEST

/* Many contexts: each of THREADS threads sets up and tears down ROUNDS contexts in turn. */
#define THREADS 50
#define ROUNDS 40
#define HEAP_SLACK (16 * 1024)
/*
 * glibc's cache of thread stacks places 50 stacks anew each round, and
 * neighbouring stacks merge into one mapping or not; a leaked ring would
 * be one mapping per context, thousands. Under valgrind, which maps
 * memory of its own as it goes and places thread stacks itself, only the
 * kernel's rings are counted (exactly, as they are everywhere).
 */
#define MAPS_SLACK 4

static void assert_maps_back(int maps, int ring_maps)
{
	ck_assert_int_eq(count_ring_maps(), ring_maps);
	if (!UNDER_ASAN && !UNDER_VALGRIND && !UNDER_TSAN)
		ck_assert_int_le(count_maps(), maps + MAPS_SLACK);
}

static void *setup_destroy_loop(void *arg)
{
	long rounds = (long)arg;

	for (long i = 0; i < rounds; i++) {
		io_context_t ctx = NULL;

		if (io_setup(8, &ctx) != 0 || io_destroy(ctx) != 0)
			return (void *)1;
	}
	return NULL;
}

static void run_loops(long rounds)
{
	pthread_t t[THREADS];
	void *failed;

	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, setup_destroy_loop, (void *)rounds),
				 0);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], &failed), 0);
		ck_assert_ptr_null(failed);
	}
}

START_TEST(many_contexts_leave_nothing_behind)
{
	size_t heap;
	int fds, maps, ring_maps;

	/*
	 * One malloc arena, so that the heap in use is one number and no arena
	 * appears halfway. A first round lets thread stacks be cached; the
	 * second must leave descriptors exactly where they were, mappings
	 * within MAPS_SLACK, and the heap where it was but for the freed chunks that malloc's
	 * per-thread caches keep (mallinfo counts them as in use): one leaked
	 * chunk per context would be 2000 chunks of 32 bytes or more.
	 */
	if (UNDER_ASAN)
		test_skip(NULL,
			  "many_contexts_leave_nothing_behind: the heap in use and the count "
			  "of all mappings, under ASan (it owns malloc and maps shadow memory)");
	else if (UNDER_VALGRIND || UNDER_TSAN)
		test_skip(NULL,
			  "many_contexts_leave_nothing_behind: the count of all mappings, "
			  "under %s (it maps memory of its own)",
			  UNDER_TSAN ? "ThreadSanitizer" : "valgrind");
	if (!UNDER_ASAN)
		ck_assert_int_eq(mallopt(M_ARENA_MAX, 1), 1);
	run_loops(ROUNDS / 2);
	fds = count_fds();
	maps = count_maps();
	ring_maps = count_ring_maps();
	heap = mallinfo2().uordblks;
	run_loops(ROUNDS);
	ck_assert_int_eq(count_fds(), fds);
	assert_maps_back(maps, ring_maps);
	if (!UNDER_ASAN)
		ck_assert_uint_le(mallinfo2().uordblks, heap + HEAP_SLACK);

	/* The same, one context after the other on this thread. */
	for (int i = 0; i < 40; i++) {
		io_context_t ctx = NULL;

		ck_assert_int_eq(io_setup(64, &ctx), 0);
		ck_assert_int_eq(io_destroy(ctx), 0);
	}
	ck_assert_int_eq(count_fds(), fds);
	assert_maps_back(maps, ring_maps);
}
END_TEST

static const int ring_sizes[] = { 1, 8, 32, 100, 128, 500, 1024 };

START_TEST(ring_header)
{
	int maxevents = ring_sizes[_i];
	io_context_t ctx = NULL;
	struct aio_ring *ring;

	ck_assert_int_eq(io_setup(maxevents, &ctx), 0);
	ring = (struct aio_ring *)ctx;
	ck_assert_uint_eq(ring->magic, AIO_RING_MAGIC);
	ck_assert_uint_eq(ring->header_length, sizeof(struct aio_ring));
	ck_assert_uint_eq(ring->header_length, 32);
	ck_assert_uint_eq(ring->nr, kernel_ring_nr(maxevents));
	ck_assert_uint_eq(ring->compat_features, 1);
	ck_assert_uint_eq(ring->incompat_features, 0);
	ck_assert_uint_eq(ring->head, ring->tail);
	ck_assert_uint_lt(ring->head, ring->nr);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(ring_holds_completion_until_reaped)
{
	io_context_t ctx = NULL;
	struct aio_ring *ring;
	struct iocb cb;
	char buf[64];
	int fd = tmpfile_in(NULL, sizeof(buf), 0);
	int efd = eventfd(0, 0);
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	unsigned head;

	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(io_setup(8, &ctx), 0);
	ring = (struct aio_ring *)ctx;
	head = ring->head;
	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	io_set_eventfd(&cb, efd);
	cb.data = (void *)0x5eed;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	/* Once the eventfd fires the event is in the ring, not yet consumed. */
	ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
	ck_assert_uint_eq(__atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE), (head + 1) % ring->nr);
	ck_assert_uint_eq(ring->head, head);
	ck_assert_ptr_eq(ring->io_events[head].obj, &cb);
	ck_assert_ptr_eq(ring->io_events[head].data, (void *)0x5eed);
	ck_assert_int_eq((long)ring->io_events[head].res, sizeof(buf));
	ck_assert_int_eq((long)ring->io_events[head].res2, 0);
	/* io_getevents consumes it from there. */
	ck_assert_int_eq(reap_one(ctx, &cb), sizeof(buf));
	ck_assert_uint_eq(ring->head, ring->tail);
	ck_assert_uint_eq(ring->head, (head + 1) % ring->nr);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(efd);
	close(fd);
}
END_TEST

/* io_uring's own answer to a one-entry ring: 0, or the error io_setup must give. */
static int uring_setup_result(void)
{
	long params[15] = { 0 }; /* struct io_uring_params is 120 bytes */
	long fd;

	/* Before 5.6 io_uring lacks what the library needs. */
	if (uring_emulates_before(5, 6))
		return -ENOSYS;
	fd = syscall(SYS_io_uring_setup, 1, params);
	if (fd < 0)
		return -errno;
	close((int)fd);
	return 0;
}

START_TEST(compat_setup_native)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(aio_compat_setup(8, &ctx, AIO_COMPAT_NATIVE), 0);
	ck_assert_int_eq(aio_compat_backend(ctx), AIO_COMPAT_NATIVE);
	ck_assert_uint_eq(((struct aio_ring *)ctx)->magic, AIO_RING_MAGIC);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(compat_setup_uring)
{
	io_context_t ctx = NULL;
	int expected = uring_setup_result();

	ck_assert_int_eq(aio_compat_setup(8, &ctx, AIO_COMPAT_URING), expected);
	if (expected)
		return;
	ck_assert_int_eq(aio_compat_backend(ctx), AIO_COMPAT_URING);
	ck_assert_uint_eq(((struct aio_ring *)ctx)->magic, AIO_RING_MAGIC);
	ck_assert_uint_eq(((struct aio_ring *)ctx)->nr, kernel_ring_nr(8));
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(compat_setup_auto_follows_environment)
{
	io_context_t ctx = NULL, plain = NULL;
	const char *b = test_backend();

	ck_assert_int_eq(aio_compat_setup(8, &ctx, AIO_COMPAT_AUTO), 0);
	ck_assert_int_eq(io_setup(8, &plain), 0);
	ck_assert_int_eq(aio_compat_backend(ctx), aio_compat_backend(plain));
	if (!strcmp(b, "native"))
		ck_assert_int_eq(aio_compat_backend(ctx), AIO_COMPAT_NATIVE);
	else if (!strcmp(b, "uring"))
		ck_assert_int_eq(aio_compat_backend(ctx), AIO_COMPAT_URING);
	else
		ck_assert_int_eq(aio_compat_backend(ctx), AIO_COMPAT_AUTO);
	/* Without a usable io_uring, auto is native AIO, silently. */
	if (uring_setup_result())
		ck_assert_int_eq(aio_compat_backend(ctx), AIO_COMPAT_NATIVE);
	ck_assert_int_eq(io_destroy(ctx), 0);
	ck_assert_int_eq(io_destroy(plain), 0);
}
END_TEST

START_TEST(compat_setup_bad_arguments)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(aio_compat_setup(0, &ctx, AIO_COMPAT_NATIVE), -EINVAL);
	/* Where io_uring is refused, that answer comes first. */
	ck_assert_int_eq(aio_compat_setup(-1, &ctx, AIO_COMPAT_URING),
			 uring_setup_result() ? uring_setup_result() : -EINVAL);
	ck_assert_int_eq(aio_compat_setup(8, NULL, AIO_COMPAT_NATIVE), -EFAULT);
	ck_assert_int_eq(aio_compat_setup(8, &ctx, (enum aio_compat_backend)7), -EINVAL);
	ck_assert_int_eq(aio_compat_setup(8, &ctx, (enum aio_compat_backend) - 1), -EINVAL);
	ck_assert_ptr_null(ctx);
	ctx = (io_context_t)0x1;
	ck_assert_int_eq(aio_compat_setup(8, &ctx, AIO_COMPAT_NATIVE), -EINVAL);
	ck_assert_ptr_eq(ctx, (io_context_t)0x1);
}
END_TEST

START_TEST(compat_backend_of_unknown_ctx)
{
	io_context_t ctx = NULL;
	long on_stack[8] = { 0 };

	ck_assert_int_eq(aio_compat_backend(NULL), -EINVAL);
	ck_assert_int_eq(aio_compat_backend((io_context_t)0x1000), -EINVAL);
	ck_assert_int_eq(aio_compat_backend((io_context_t)on_stack), -EINVAL);
	ck_assert_int_eq(io_setup(4, &ctx), 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	ck_assert_int_eq(aio_compat_backend(ctx), -EINVAL);
}
END_TEST

START_TEST(compat_backend_name)
{
	ck_assert_str_eq(aio_compat_backend_name(AIO_COMPAT_AUTO), "auto");
	ck_assert_str_eq(aio_compat_backend_name(AIO_COMPAT_URING), "uring");
	ck_assert_str_eq(aio_compat_backend_name(AIO_COMPAT_NATIVE), "native");
	ck_assert_ptr_null(aio_compat_backend_name(3));
	ck_assert_ptr_null(aio_compat_backend_name(-1));
}
END_TEST

/*
 * A daemon may end its main thread with pthread_exit(): the process then
 * ends with its last thread, as it does on libaio. No thread of the
 * library may outlive the work it serves and keep the process alive.
 * Each scenario runs in a child, which ends its main thread that way;
 * exit codes name what failed in it.
 */
static int write_and_reap(io_context_t ctx, int fd, int efd)
{
	static char buf[512];
	struct iocb cb, *cbp = &cb;
	struct io_event ev;

	io_prep_pwrite(&cb, fd, buf, sizeof(buf), 0);
	if (efd >= 0)
		io_set_eventfd(&cb, efd);
	if (io_submit(ctx, 1, &cbp) != 1)
		return 11;
	if (io_getevents(ctx, 1, 1, &ev, NULL) != 1 || ev.res != sizeof(buf))
		return 12;
	return 0;
}

static int destroyed_context(int fd)
{
	io_context_t ctx = NULL;
	int ret;

	if (io_setup(8, &ctx))
		return 10;
	ret = write_and_reap(ctx, fd, -1);
	if (!ret && io_destroy(ctx))
		ret = 13;
	return ret;
}

/*
 * Left set up, with nothing in flight, after an eventfd's request and a
 * completion read from the ring by hand: the work of the context's helper.
 */
static int idle_context(int fd)
{
	int efd = eventfd(0, EFD_CLOEXEC);
	io_context_t ctx = NULL;
	struct aio_ring *ring;
	struct iocb cb, *cbp = &cb;
	static char buf[512];
	uint64_t count;
	int ret;

	if (efd < 0 || io_setup(8, &ctx))
		return 10;
	ring = (struct aio_ring *)ctx;
	ret = write_and_reap(ctx, fd, efd);
	if (ret)
		return ret;
	io_prep_pwrite(&cb, fd, buf, sizeof(buf), 512);
	io_set_eventfd(&cb, efd);
	if (io_submit(ctx, 1, &cbp) != 1 || read(efd, &count, sizeof(count)) != sizeof(count))
		return 14;
	while (__atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE) == ring->head)
		usleep(1000);
	__atomic_store_n(&ring->head, (ring->head + 1) % ring->nr, __ATOMIC_RELEASE);
	return write_and_reap(ctx, fd, -1);
}

/* The child must end, with status 0, within 5 s; it is killed after that. */
static void expect_child_ends(pid_t pid)
{
	int status = 0;

	ck_assert_int_ge(pid, 0);
	for (int ms = 0; ms < 5000; ms += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		usleep(10 * 1000);
	}
	if (waitpid(pid, &status, WNOHANG) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		ck_abort_msg("the process lives on 5 s after its main thread's pthread_exit");
	}
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

static void pthread_exit_after(int (*scenario)(int fd))
{
	int fd;
	pid_t pid;

	/* Its own background thread keeps a process alive past main's pthread_exit. */
	if (UNDER_TSAN) {
		test_skip(NULL, "pthread_exit from main: under ThreadSanitizer");
		return;
	}
	fd = tmpfile_in(NULL, 4096, 0);
	pid = fork();

	if (pid == 0) {
		int ret = scenario(fd);

		if (ret)
			_exit(ret);
		main_thread_exit();
	}
	expect_child_ends(pid);
	close(fd);
}

START_TEST(pthread_exit_after_destroy)
{
	pthread_exit_after(destroyed_context);
}
END_TEST

START_TEST(pthread_exit_with_idle_context)
{
	pthread_exit_after(idle_context);
}
END_TEST

static Suite *setup_suite(void)
{
	Suite *s = suite_create("setup");
	TCase *tc = tcase_create("setup");
	TCase *many = tcase_create("many");
	TCase *ring = tcase_create("ring");
	TCase *lifetime = tcase_create("lifetime");

	tcase_add_test(tc, setup_and_destroy);
	tcase_add_test(tc, setup_at_descriptor_limit);
	tcase_add_test(tc, auto_at_descriptor_limit);
	tcase_add_test(tc, descriptors_in_use);
	tcase_add_test(tc, setup_needs_null_ctx);
	tcase_add_test(tc, setup_maxevents_zero_or_negative);
	tcase_add_test(tc, setup_maxevents_huge);
	tcase_add_test(tc, setup_null_ctxp);
	tcase_add_test(tc, destroy_never_set_up);
	tcase_add_test(tc, destroy_twice);
	tcase_add_test(tc, destroyed_ctx_is_unknown);
	tcase_add_test(tc, queue_init_and_release);
	tcase_add_test(tc, queue_init_bad_maxevents);
	tcase_add_test(tc, contexts_are_distinct);
	suite_add_tcase(s, tc);

	/* A native io_destroy waits out an RCU grace period (about 30 ms here). */
	tcase_set_timeout(many, 20);
	tcase_add_test(many, many_contexts_leave_nothing_behind);
	suite_add_tcase(s, many);

	tcase_add_loop_test(ring, ring_header, 0, sizeof(ring_sizes) / sizeof(ring_sizes[0]));
	tcase_add_test(ring, ring_holds_completion_until_reaped);
	suite_add_tcase(s, ring);

	tcase_set_timeout(lifetime, 15);
	tcase_add_test(lifetime, pthread_exit_after_destroy);
	tcase_add_test(lifetime, pthread_exit_with_idle_context);
	suite_add_tcase(s, lifetime);

	/* The extensions exist only in libaio-compat, not in the real libaio. */
	if (aio_compat_setup && aio_compat_backend && aio_compat_backend_name) {
		TCase *ext = tcase_create("extensions");

		tcase_add_test(ext, compat_setup_native);
		tcase_add_test(ext, compat_setup_uring);
		tcase_add_test(ext, compat_setup_auto_follows_environment);
		tcase_add_test(ext, compat_setup_bad_arguments);
		tcase_add_test(ext, compat_backend_of_unknown_ctx);
		tcase_add_test(ext, compat_backend_name);
		suite_add_tcase(s, ext);
	}
	return s;
}

int main(void)
{
	return run_suite(setup_suite(), "setup");
}
