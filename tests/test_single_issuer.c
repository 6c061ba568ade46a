/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * AIO_COMPAT_SINGLE_ISSUER: on io_uring the ring is set up SINGLE_ISSUER |
 * DEFER_TASKRUN, so its completions are posted only when the thread that
 * set it up calls in. Every call of that thread must still see them: a
 * blocking wait, a poll with a zero timeout, io_queue_run, the thread's
 * exit. Another thread's calls get -EEXIST. On native AIO, and where the
 * kernel lacks the mode, the flag changes nothing.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 32
#define BLOCKS 256 /* 4 KiB blocks in the file */

static io_context_t ctx;
static int fd;

/*
 * Whether this kernel makes such rings (and the library is not told to
 * act as on an older one): then the flag must take effect.
 */
static bool kernel_has_single_issuer(void)
{
	struct io_uring_params p;
	int ring;

	if (uring_emulates_before(6, 1))
		return false;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	ring = (int)syscall(__NR_io_uring_setup, 2, &p);
	if (ring < 0)
		return false;
	close(ring);
	return true;
}

/* Whether this run expects the single-issuer rules. */
static bool enforced(void)
{
	return ctx_is_uring(ctx) && kernel_has_single_issuer();
}

/* Each 4 KiB block holds its own number in every byte. */
static void ctx_up(void)
{
	static char block[4096];

	ctx = NULL;
	ck_assert_int_eq(aio_compat_setup(64, &ctx, AIO_COMPAT_AUTO | AIO_COMPAT_SINGLE_ISSUER), 0);
	fd = tmpfile_in(NULL, 0, O_RDWR);
	for (int b = 0; b < BLOCKS; b++) {
		memset(block, b, sizeof(block));
		ck_assert_int_eq(pwrite(fd, block, sizeof(block), (off_t)b * 4096), 4096);
	}
}

static void ctx_down(void)
{
	if (ctx)
		ck_assert_int_eq(io_destroy(ctx), 0);
	close(fd);
}

static void check_block(const struct io_event *ev)
{
	const struct iocb *cb = ev->obj;
	const unsigned char *p = cb->u.c.buf;
	int b = (int)(cb->u.c.offset / 4096);

	ck_assert_int_eq(ev->res, 4096);
	for (int i = 0; i < 4096; i += 512)
		ck_assert_int_eq(p[i], (unsigned char)b);
}

START_TEST(flag_needs_a_valid_backend)
{
	io_context_t c = NULL;

	ck_assert_int_eq(aio_compat_setup(8, &c, AIO_COMPAT_SINGLE_ISSUER | 3), -EINVAL);
	ck_assert_int_eq(aio_compat_setup(8, &c, 0x200), -EINVAL);
	ck_assert_ptr_null(c);
}
END_TEST

/* fio's loop: one read per io_submit, reap at least one, submit again. */
START_TEST(reads_at_depth_one_per_submit)
{
	static struct iocb cbs[DEPTH];
	static int done[DEPTH];
	char *bufs = aligned_buf(DEPTH * 4096, 0);
	struct io_event ev[DEPTH];
	unsigned seed = 1;
	long total = 0;

	for (int i = 0; i < DEPTH; i++) {
		seed = seed * 1103515245 + 12345;
		io_prep_pread(&cbs[i], fd, bufs + i * 4096, 4096,
			      (long long)(seed % BLOCKS) * 4096);
		ck_assert_int_eq(submit_one(ctx, &cbs[i]), 1);
	}
	while (total < 4000) {
		int n = io_getevents(ctx, 1, DEPTH, ev, NULL);

		ck_assert_int_ge(n, 1);
		for (int i = 0; i < n; i++) {
			struct iocb *cb = ev[i].obj;

			check_block(&ev[i]);
			done[cb - cbs]++;
			seed = seed * 1103515245 + 12345;
			io_prep_pread(cb, fd, cb->u.c.buf, 4096, (long long)(seed % BLOCKS) * 4096);
			ck_assert_int_eq(submit_one(ctx, cb), 1);
		}
		total += n;
	}
	reap_n(ctx, DEPTH, ev, 2000);
	for (int i = 0; i < DEPTH; i++)
		ck_assert_int_gt(done[i], 0);
	expect_no_event(ctx, 0);
	free(bufs);
}
END_TEST

/* Completions must show without a blocking call: the zero timeout polls. */
START_TEST(zero_timeout_poll_sees_completions)
{
	static struct iocb cbs[8];
	struct iocb *list[8];
	char *bufs = aligned_buf(8 * 4096, 0);
	struct timespec zero = { 0, 0 }, start, now;
	struct io_event ev[8];
	int got = 0;

	for (int i = 0; i < 8; i++) {
		io_prep_pread(&cbs[i], fd, bufs + i * 4096, 4096, (long long)i * 4096);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, 8, list), 8);
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		int n;

		/* Before the look: a stalled machine still looks once more. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		n = io_getevents(ctx, 0, 8 - got, ev + got, &zero);
		ck_assert_int_ge(n, 0);
		got += n;
	} while (got < 8 && now.tv_sec - start.tv_sec < 5);
	ck_assert_int_eq(got, 8);
	for (int i = 0; i < 8; i++)
		check_block(&ev[i]);
	free(bufs);
}
END_TEST

static int callbacks;

static void count_callback(io_context_t c, struct iocb *cb, long res, long res2)
{
	(void)c;
	(void)res2;
	ck_assert_int_eq(res, 4096);
	ck_assert_int_eq(((unsigned char *)cb->u.c.buf)[0], (unsigned char)(cb->u.c.offset / 4096));
	callbacks++;
}

/* io_queue_run never blocks: it must still post what the kernel holds. */
START_TEST(queue_run_sees_completions)
{
	static struct iocb cbs[8];
	char *bufs = aligned_buf(8 * 4096, 0);
	struct timespec start, now;

	callbacks = 0;
	for (int i = 0; i < 8; i++) {
		io_prep_pread(&cbs[i], fd, bufs + i * 4096, 4096, (long long)(i + 8) * 4096);
		io_set_callback(&cbs[i], count_callback);
		ck_assert_int_eq(submit_one(ctx, &cbs[i]), 1);
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		clock_gettime(CLOCK_MONOTONIC, &now);
		ck_assert_int_ge(aio_compat_queue_run(ctx), 0);
	} while (callbacks < 8 && now.tv_sec - start.tv_sec < 5);
	ck_assert_int_eq(callbacks, 8);
	free(bufs);
}
END_TEST

/* 32 writes and an fsync in one call: the sync is held, then issued by a reap. */
START_TEST(fsync_behind_writes)
{
	static struct iocb cbs[DEPTH + 1];
	struct iocb *list[DEPTH + 1];
	char *bufs = aligned_buf(DEPTH * 4096, 0x5a);
	struct io_event ev[DEPTH + 1];

	for (int i = 0; i < DEPTH; i++) {
		io_prep_pwrite(&cbs[i], fd, bufs + i * 4096, 4096, (long long)i * 4096);
		list[i] = &cbs[i];
	}
	io_prep_fsync(&cbs[DEPTH], fd);
	list[DEPTH] = &cbs[DEPTH];
	ck_assert_int_eq(io_submit(ctx, DEPTH + 1, list), DEPTH + 1);
	reap_n(ctx, DEPTH + 1, ev, 5000);
	for (int i = 0; i < DEPTH + 1; i++)
		ck_assert_int_eq(ev[i].res, ev[i].obj == &cbs[DEPTH] ? 0 : 4096);
	/* The sync's event comes after every write's. */
	ck_assert_ptr_eq(ev[DEPTH].obj, &cbs[DEPTH]);
	free(bufs);
}
END_TEST

struct foreign_calls {
	struct iocb *cb;
	int submit, getevents, queue_run, queue_wait, cancel, destroy;
};

static void *call_from_another_thread(void *arg)
{
	struct foreign_calls *f = arg;
	struct timespec zero = { 0, 0 };
	struct io_event ev;

	f->submit = submit_one(ctx, f->cb);
	f->getevents = io_getevents(ctx, 0, 1, &ev, &zero);
	f->queue_run = aio_compat_queue_run(ctx);
	f->queue_wait = io_queue_wait(ctx, &zero);
	f->cancel = io_cancel(ctx, f->cb, &ev);
	f->destroy = io_destroy(ctx);
	return NULL;
}

START_TEST(other_threads_get_eexist)
{
	int pipefd[2];
	struct iocb poll_cb, read_cb;
	struct foreign_calls f = { .cb = &read_cb };
	char buf[4096];
	pthread_t t;

	/* A poll keeps a request in flight, so io_destroy cannot go through. */
	ck_assert_int_eq(pipe(pipefd), 0);
	io_prep_poll(&poll_cb, pipefd[0], POLLIN);
	ck_assert_int_eq(submit_one(ctx, &poll_cb), 1);
	io_prep_pread(&read_cb, fd, buf, 4096, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, call_from_another_thread, &f), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	if (enforced()) {
		ck_assert_int_eq(f.submit, -EEXIST);
		ck_assert_int_eq(f.getevents, -EEXIST);
		ck_assert_int_eq(f.queue_run, -EEXIST);
		ck_assert_int_eq(f.queue_wait, -EEXIST);
		ck_assert_int_eq(f.cancel, -EEXIST);
		ck_assert_int_eq(f.destroy, -EEXIST);
		/* The thread that set it up goes on as before. */
		ck_assert_int_eq(write(pipefd[1], "x", 1), 1);
		ck_assert_int_eq(reap_one(ctx, &poll_cb) & POLLIN, POLLIN);
		ck_assert_int_eq(submit_one(ctx, &read_cb), 1);
		ck_assert_int_eq(reap_one(ctx, &read_cb), 4096);
	} else {
		/* Nothing is promised: the other thread's calls simply work. */
		ck_assert_int_eq(f.submit, 1);
		ck_assert_int_ge(f.getevents, 0);
		ck_assert_int_eq(f.destroy, 0);
		ctx = NULL;
	}
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

static void *destroy_from_another_thread(void *arg)
{
	*(int *)arg = io_destroy(ctx);
	return NULL;
}

/* With nothing in flight, any thread may destroy it (after its thread exits, say). */
START_TEST(idle_context_destroyed_by_another_thread)
{
	struct iocb cb;
	char buf[4096];
	pthread_t t;
	int ret = 1;

	io_prep_pread(&cb, fd, buf, 4096, 4096);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 4096);
	ck_assert_int_eq(pthread_create(&t, NULL, destroy_from_another_thread, &ret), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(ret, 0);
	ctx = NULL;
}
END_TEST

/* What a careless program passes gets the kernel's error, promise or not. */
START_TEST(bad_input_answered_as_without_the_flag)
{
	static struct iocb polls[256];
	static struct iocb *list[256];
	int pipefd[2], closed, limit;
	io_context_t c = NULL;
	struct iocb cb;
	char buf[4096];

	ck_assert_int_eq(io_submit(ctx, 1, NULL), -EFAULT);
	list[0] = NULL;
	/* The kernel's own context hands it to the kernel, through valgrind's io_submit wrapper. */
	if (UNDER_VALGRIND && !ctx_is_uring(ctx))
		test_skip(NULL, "bad_input_answered_as_without_the_flag: an iocb at NULL, "
				"under valgrind (its io_submit wrapper reads it and crashes)");
	else
		ck_assert_int_eq(io_submit(ctx, 1, list), -EFAULT);
	io_prep_pread(&cb, fd, buf, 4096, 0);
	cb.aio_lio_opcode = 99;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	closed = dup(fd);
	close(closed);
	io_prep_pread(&cb, closed, buf, 4096, 0);
	expect_error_at_submit_or_event(ctx, &cb, -EBADF);

	/* Too many in flight: -EAGAIN where the kernel's limit is, on one CPU. */
	pin_to_cpu0();
	limit = kernel_inflight_limit(32);
	ck_assert_int_le(limit + 1, 256);
	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(aio_compat_setup(32, &c, AIO_COMPAT_AUTO | AIO_COMPAT_SINGLE_ISSUER), 0);
	for (int i = 0; i <= limit; i++) {
		io_prep_poll(&polls[i], pipefd[0], POLLIN);
		list[i] = &polls[i];
	}
	ck_assert_int_eq(io_submit(c, limit + 1, list), limit);
	ck_assert_int_eq(io_submit(c, 1, list + limit), -EAGAIN);
	ck_assert_int_eq(io_destroy(c), 0);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

START_TEST(resfd_refused)
{
	int efd = eventfd(0, EFD_CLOEXEC);
	struct iocb cb;
	char buf[4096];

	ck_assert_int_ge(efd, 0);
	io_prep_pread(&cb, fd, buf, 4096, 0);
	io_set_eventfd(&cb, efd);
	if (enforced()) {
		ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	} else {
		ck_assert_int_eq(submit_one(ctx, &cb), 1);
		ck_assert_int_eq(reap_one(ctx, &cb), 4096);
	}
	close(efd);
}
END_TEST

static void on_alarm(int sig)
{
	(void)sig;
}

/* A wait in the kernel still ends at its timeout, and at a signal with -EINTR. */
START_TEST(wait_times_out_and_is_interrupted)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct timespec start, now, tmo = { 0, 100000000 };
	struct io_event ev;
	struct iocb cb;
	int pipefd[2];
	long ms;

	ck_assert_int_eq(pipe(pipefd), 0);
	io_prep_poll(&cb, pipefd[0], POLLIN);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	clock_gettime(CLOCK_MONOTONIC, &start);
	ck_assert_int_eq(io_getevents(ctx, 1, 1, &ev, &tmo), 0);
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
	ck_assert_int_ge(ms, 90);

	/* valgrind holds signals back while io_uring_enter sleeps. */
	if (UNDER_VALGRIND && enforced()) {
		test_skip(NULL,
			  "wait_times_out_and_is_interrupted: -EINTR at a signal, under valgrind "
			  "(it holds signals back while io_uring_enter sleeps)");
	} else {
		sigemptyset(&sa.sa_mask);
		ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
		ualarm(50000, 0);
		ck_assert_int_eq(io_getevents(ctx, 1, 1, &ev, NULL), -EINTR);
	}

	ck_assert_int_eq(write(pipefd[1], "x", 1), 1);
	ck_assert_int_eq(reap_one(ctx, &cb) & POLLIN, POLLIN);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

struct exiting_owner {
	io_context_t ctx;
	char *bufs;
	struct iocb cbs[16];
};

/* Sets a context up, submits 16 reads, and exits without reaping them. */
static void *submit_and_exit(void *arg)
{
	struct exiting_owner *o = arg;

	if (aio_compat_setup(32, &o->ctx, AIO_COMPAT_AUTO | AIO_COMPAT_SINGLE_ISSUER))
		return NULL;
	for (int i = 0; i < 16; i++) {
		io_prep_pread(&o->cbs[i], fd, o->bufs + i * 4096, 4096, (long long)(i + 16) * 4096);
		if (submit_one(o->ctx, &o->cbs[i]) != 1)
			return NULL;
	}
	return NULL;
}

/*
 * io_uring cancels what is queued on a thread's workers when it exits: the
 * thread waits at exit until its reads are done, and their events are in
 * the ring for whoever reads it.
 */
START_TEST(owner_exit_finishes_its_io)
{
	struct exiting_owner o = { .bufs = aligned_buf(16 * 4096, 0) };
	struct aio_ring *ring;
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, submit_and_exit, &o), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_ptr_nonnull(o.ctx);
	if (!ctx_is_uring(o.ctx) || !kernel_has_single_issuer()) {
		struct io_event ev[16];

		reap_n(o.ctx, 16, ev, 2000);
		for (int i = 0; i < 16; i++)
			check_block(&ev[i]);
		ck_assert_int_eq(io_destroy(o.ctx), 0);
		free(o.bufs);
		return;
	}
	ring = (struct aio_ring *)o.ctx;
	ck_assert_uint_eq((ring->tail + ring->nr - ring->head) % ring->nr, 16);
	for (unsigned i = 0, slot = ring->head; i < 16; i++, slot = (slot + 1) % ring->nr)
		check_block(&ring->io_events[slot]);
	ck_assert_int_eq(io_destroy(o.ctx), 0);
	free(o.bufs);
}
END_TEST

static Suite *single_issuer_suite(void)
{
	Suite *s = suite_create("single-issuer");
	TCase *io = tcase_create("io");
	TCase *threads = tcase_create("threads");

	tcase_add_checked_fixture(io, ctx_up, ctx_down);
	tcase_add_checked_fixture(threads, ctx_up, ctx_down);
	tcase_add_test(io, flag_needs_a_valid_backend);
	tcase_add_test(io, reads_at_depth_one_per_submit);
	tcase_add_test(io, zero_timeout_poll_sees_completions);
	tcase_add_test(io, queue_run_sees_completions);
	tcase_add_test(io, fsync_behind_writes);
	tcase_add_test(io, bad_input_answered_as_without_the_flag);
	tcase_add_test(io, resfd_refused);
	tcase_add_test(io, wait_times_out_and_is_interrupted);
	tcase_add_test(threads, other_threads_get_eexist);
	tcase_add_test(threads, idle_context_destroyed_by_another_thread);
	tcase_add_test(threads, owner_exit_finishes_its_io);
	suite_add_tcase(s, io);
	suite_add_tcase(s, threads);
	return s;
}

int main(void)
{
	return run_suite(single_issuer_suite(), "single-issuer");
}
