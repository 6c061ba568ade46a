/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Many threads submitting, reaping and dispatching on one context at once. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SUBMITTERS 4
#define REAPERS 2
#define PER_SUBMITTER 256
#define TOTAL (SUBMITTERS * PER_SUBMITTER)
#define BATCH 8
#define DEADLINE_MS 5000

/*
 * Worker threads must not call ck_assert (it exits or jumps out of the
 * wrong thread): they note the first thing that went wrong here and the
 * test thread asserts on it after joining them.
 */
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;
static char failure[256];

static void fail_later(const char *fmt, long a, long b)
{
	pthread_mutex_lock(&failure_lock);
	if (!failure[0])
		snprintf(failure, sizeof(failure), fmt, a, b);
	pthread_mutex_unlock(&failure_lock);
}

static int failed(void)
{
	int ret;

	pthread_mutex_lock(&failure_lock);
	ret = failure[0] != 0;
	pthread_mutex_unlock(&failure_lock);
	return ret;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct shared {
	io_context_t ctx;
	int fd;
	size_t block;
	double deadline;
	struct iocb iocbs[TOTAL];
	unsigned char *bufs[TOTAL];
	unsigned char *readback[TOTAL];
	atomic_int seen[TOTAL];
	atomic_int done;
};

static struct shared sh;

static int pattern_of(long i)
{
	return (int)((i * 13 + 7) & 0xff);
}

static void setup_shared(const char *dir, int flags, size_t block, int maxevents)
{
	memset(failure, 0, sizeof(failure));
	sh.fd = tmpfile_in(dir, block * TOTAL, flags);
	sh.block = block;
	sh.ctx = NULL;
	ck_assert_int_eq(io_setup(maxevents, &sh.ctx), 0);
	for (long i = 0; i < TOTAL; i++) {
		sh.bufs[i] = aligned_buf(block, pattern_of(i));
		/* The block's own number, so a misplaced write shows. */
		memcpy(sh.bufs[i], &i, sizeof(i));
		sh.readback[i] = aligned_buf(block, 0);
		atomic_init(&sh.seen[i], 0);
	}
	atomic_init(&sh.done, 0);
	sh.deadline = now_ms() + DEADLINE_MS;
}

static void teardown_shared(void)
{
	ck_assert_int_eq(io_destroy(sh.ctx), 0);
	for (int i = 0; i < TOTAL; i++) {
		free(sh.bufs[i]);
		free(sh.readback[i]);
	}
	close(sh.fd);
}

static void check_seen_once(int times)
{
	for (int i = 0; i < TOTAL; i++)
		ck_assert_msg(atomic_load(&sh.seen[i]) == times, "iocb %d completed %d times", i,
			      atomic_load(&sh.seen[i]));
}

static void check_file(void)
{
	unsigned char *buf = aligned_buf(sh.block, 0);

	for (long i = 0; i < TOTAL; i++) {
		ck_assert_int_eq(pread(sh.fd, buf, sh.block, i * (off_t)sh.block),
				 (ssize_t)sh.block);
		ck_assert_msg(memcmp(buf, sh.bufs[i], sh.block) == 0, "block %ld differs on disk",
			      i);
	}
	free(buf);
}

/* Submits ios[0..nr), nr at a time or fewer, waiting out a full ring. */
static int submit_all(struct iocb **ios, int nr)
{
	int done = 0;

	while (done < nr && !failed()) {
		int n = nr - done < BATCH ? nr - done : BATCH;
		int ret = io_submit(sh.ctx, n, ios + done);

		if (ret == -EAGAIN || ret == 0) {
			if (now_ms() > sh.deadline) {
				fail_later("submitted %ld of %ld before the deadline", done, nr);
				return -1;
			}
			usleep(100);
			continue;
		}
		if (ret < 0) {
			fail_later("io_submit returned %ld after %ld iocbs", ret, done);
			return -1;
		}
		done += ret;
	}
	return 0;
}

static void *submitter(void *arg)
{
	long first = (long)(intptr_t)arg * PER_SUBMITTER;
	struct iocb *ios[PER_SUBMITTER];

	for (long i = 0; i < PER_SUBMITTER; i++) {
		long n = first + i;

		io_prep_pwrite(&sh.iocbs[n], sh.fd, sh.bufs[n], sh.block, n * (long long)sh.block);
		sh.iocbs[n].data = sh.bufs[n];
		ios[i] = &sh.iocbs[n];
	}
	submit_all(ios, PER_SUBMITTER);
	return NULL;
}

/* Marks one completion; the iocb pointer says which one it was. */
static int account(const struct io_event *ev)
{
	long i = ev->obj - sh.iocbs;

	if (i < 0 || i >= TOTAL) {
		fail_later("event for an iocb that was never submitted (index %ld)", i, 0);
		return -1;
	}
	if (ev->data != sh.bufs[i]) {
		fail_later("iocb %ld: event data is not the iocb's data", i, 0);
		return -1;
	}
	if ((long)ev->res != (long)sh.block || ev->res2 != 0) {
		fail_later("iocb %ld: res %ld", i, (long)ev->res);
		return -1;
	}
	atomic_fetch_add(&sh.seen[i], 1);
	atomic_fetch_add(&sh.done, 1);
	return 0;
}

static void *reaper(void *arg)
{
	struct io_event ev[32];

	(void)arg;
	while (atomic_load(&sh.done) < TOTAL && !failed()) {
		int ret = getevents_ms(sh.ctx, 1, 32, ev, 20);

		if (ret < 0) {
			fail_later("io_getevents returned %ld", ret, 0);
			break;
		}
		for (int i = 0; i < ret; i++)
			if (account(&ev[i]) < 0)
				return NULL;
		if (now_ms() > sh.deadline) {
			fail_later("%ld of %ld completions reaped before the deadline",
				   atomic_load(&sh.done), TOTAL);
			break;
		}
	}
	return NULL;
}

static void submit_and_reap(void)
{
	pthread_t subs[SUBMITTERS], reapers[REAPERS];

	for (int i = 0; i < REAPERS; i++)
		ck_assert_int_eq(pthread_create(&reapers[i], NULL, reaper, NULL), 0);
	for (long i = 0; i < SUBMITTERS; i++)
		ck_assert_int_eq(pthread_create(&subs[i], NULL, submitter, (void *)(intptr_t)i), 0);
	for (int i = 0; i < SUBMITTERS; i++)
		pthread_join(subs[i], NULL);
	for (int i = 0; i < REAPERS; i++)
		pthread_join(reapers[i], NULL);
	ck_assert_msg(!failed(), "%s", failure);
	ck_assert_int_eq(atomic_load(&sh.done), TOTAL);
	check_seen_once(1);
	check_file();
}

START_TEST(test_submit_reap_buffered)
{
	struct io_event ev;

	setup_shared(NULL, 0, 512, 64);
	submit_and_reap();
	/* Nothing left over, nothing delivered twice. */
	ck_assert_int_eq(getevents_ms(sh.ctx, 0, 1, &ev, 0), 0);
	teardown_shared();
}
END_TEST

START_TEST(test_submit_reap_direct)
{
	struct io_event ev;

	/* O_DIRECT on a disk file: native AIO really runs in the background. */
	setup_shared("/var/tmp", O_DIRECT, 4096, 64);
	ck_assert_int_ne(fcntl(sh.fd, F_GETFL) & O_DIRECT, 0);
	submit_and_reap();
	ck_assert_int_eq(getevents_ms(sh.ctx, 0, 1, &ev, 0), 0);
	teardown_shared();
}
END_TEST

/*
 * Native AIO does not tie a request to the thread that submitted it: a
 * thread may submit and exit, and its I/O still completes (the real libaio
 * delivers every write here whole).
 */
static void outlive_round(void)
{
	pthread_t subs[SUBMITTERS];
	struct io_event ev[64];

	setup_shared(NULL, 0, 512, TOTAL);
	for (long i = 0; i < SUBMITTERS; i++)
		ck_assert_int_eq(pthread_create(&subs[i], NULL, submitter, (void *)(intptr_t)i), 0);
	for (int i = 0; i < SUBMITTERS; i++)
		pthread_join(subs[i], NULL);
	ck_assert_msg(!failed(), "%s", failure);
	/* Every submitter has exited: only now is anything reaped. */
	while (atomic_load(&sh.done) < TOTAL && !failed()) {
		int ret = getevents_ms(sh.ctx, 1, 64, ev, 2000);

		ck_assert_msg(ret > 0, "io_getevents returned %d after %d of %d completions", ret,
			      atomic_load(&sh.done), TOTAL);
		for (int i = 0; i < ret; i++)
			account(&ev[i]);
	}
	ck_assert_msg(!failed(), "%s", failure);
	check_seen_once(1);
	check_file();
	teardown_shared();
}

/* The loss depends on timing: several rounds make it show. */
START_TEST(test_io_outlives_submitter)
{
	for (int round = 0; round < 8; round++)
		outlive_round();
}
END_TEST

/*
 * Dispatch: each write's callback turns its iocb into a read of the same
 * block and submits it from whichever thread runs the callback; the read's
 * callback compares. Every iocb's callback runs exactly twice.
 */
static void read_back_cb(io_context_t ctx, struct iocb *iocb, long res, long res2);

static void written_cb(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	long i = iocb - sh.iocbs;
	int ret;

	atomic_fetch_add(&sh.seen[i], 1);
	if (res != (long)sh.block || res2 != 0) {
		fail_later("write %ld: res %ld", i, res);
		return;
	}
	io_prep_pread(iocb, sh.fd, sh.readback[i], sh.block, i * (long long)sh.block);
	io_set_callback(iocb, read_back_cb);
	while ((ret = io_submit(ctx, 1, &iocb)) == -EAGAIN && now_ms() < sh.deadline)
		usleep(100);
	if (ret != 1)
		fail_later("read %ld: io_submit returned %ld", i, ret);
}

static void read_back_cb(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	long i = iocb - sh.iocbs;

	(void)ctx;
	atomic_fetch_add(&sh.seen[i], 1);
	if (res != (long)sh.block || res2 != 0)
		fail_later("read %ld: res %ld", i, res);
	else if (memcmp(sh.readback[i], sh.bufs[i], sh.block) != 0)
		fail_later("read %ld: data differs from what was written", i, 0);
	atomic_fetch_add(&sh.done, 1);
}

static void *dispatcher(void *arg)
{
	(void)arg;
	while (atomic_load(&sh.done) < TOTAL && !failed()) {
		int ret = io_queue_run(sh.ctx);

		if (ret != 0) {
			fail_later("io_queue_run returned %ld", ret, 0);
			break;
		}
		if (now_ms() > sh.deadline) {
			fail_later("%ld of %ld reads back before the deadline",
				   atomic_load(&sh.done), TOTAL);
			break;
		}
		sched_yield();
	}
	return NULL;
}

START_TEST(test_queue_run_concurrent)
{
	enum {
		DISPATCHERS = 3
	};
	pthread_t threads[DISPATCHERS];
	struct iocb *ios[TOTAL];

	/*
	 * Room for every iocb: a callback that found the ring full could wait
	 * for ever, with every dispatcher inside a callback and none reaping.
	 */
	setup_shared(NULL, 0, 512, TOTAL);
	for (long i = 0; i < TOTAL; i++) {
		io_prep_pwrite(&sh.iocbs[i], sh.fd, sh.bufs[i], sh.block, i * (long long)sh.block);
		io_set_callback(&sh.iocbs[i], written_cb);
		ios[i] = &sh.iocbs[i];
	}
	for (int i = 0; i < DISPATCHERS; i++)
		ck_assert_int_eq(pthread_create(&threads[i], NULL, dispatcher, NULL), 0);
	submit_all(ios, TOTAL);
	for (int i = 0; i < DISPATCHERS; i++)
		pthread_join(threads[i], NULL);
	ck_assert_msg(!failed(), "%s", failure);
	ck_assert_int_eq(atomic_load(&sh.done), TOTAL);
	check_seen_once(2);
	ck_assert_int_eq(io_queue_run(sh.ctx), 0);
	check_seen_once(2);
	check_file();
	teardown_shared();
}
END_TEST

/*
 * Threads that went to sleep in io_getevents with nothing in flight, and
 * requests another thread submits later, that complete in the background
 * (O_DIRECT): the waiters must wake for them. Two waiters, so that on the
 * native backend one sleeps in the kernel and the other must be told.
 */
START_TEST(test_waiters_woken_by_later_submission)
{
	enum {
		WAITERS = 2
	};
	struct waiter w[WAITERS];
	pthread_t threads[WAITERS];
	struct iocb *ios[2 * WAITERS];

	setup_shared("/var/tmp", O_DIRECT, 4096, 2 * WAITERS);
	for (int i = 0; i < WAITERS; i++) {
		w[i] = (struct waiter){ .ctx = sh.ctx, .min_nr = 2 };
		ck_assert_int_eq(pthread_create(&threads[i], NULL, waiter_main, &w[i]), 0);
	}
	usleep(100 * 1000);
	for (int i = 0; i < 2 * WAITERS; i++) {
		io_prep_pwrite(&sh.iocbs[i], sh.fd, sh.bufs[i], sh.block, i * (long long)sh.block);
		ios[i] = &sh.iocbs[i];
	}
	for (int i = 0; i < 2 * WAITERS; i++)
		ck_assert_int_eq(io_submit(sh.ctx, 1, &ios[i]), 1);
	for (int i = 0; i < WAITERS; i++) {
		pthread_join(threads[i], NULL);
		ck_assert_int_eq(w[i].ret, 2);
		ck_assert_msg(w[i].ms < 2000, "a waiter returned after %ld ms", w[i].ms);
	}
	teardown_shared();
}
END_TEST

/*
 * io_uring cancels what a thread still has queued when it exits, so on the
 * uring backend a thread that exits with I/O in flight waits, at its exit,
 * until that I/O is done: asleep in the kernel, not polling on a timer.
 * A read of an empty pipe keeps it waiting while its state is sampled.
 */
struct exiting {
	io_context_t ctx;
	int fd, ret;
	pid_t tid;
	char c;
	struct iocb cb;
	atomic_bool submitted;
};

static void *read_then_exit(void *arg)
{
	struct exiting *e = arg;
	struct iocb *cbp = &e->cb;

	e->tid = gettid();
	io_prep_pread(&e->cb, e->fd, &e->c, 1, 0);
	e->ret = io_submit(e->ctx, 1, &cbp);
	atomic_store(&e->submitted, true);
	return NULL;
}

/* The system call the thread sleeps in, -1 when it runs, or -2 once gone. */
static long sleeping_in(pid_t tid)
{
	char path[64], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	f = fopen(path, "r");
	if (!f)
		return -2;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strncmp(buf, "running", 7) ? strtol(buf, NULL, 10) : -1;
}

START_TEST(test_exit_waits_asleep)
{
	struct exiting e = { 0 };
	int p[2], timed_sleeps = 0;
	pthread_t thread;

	ck_assert_int_eq(io_setup(8, &e.ctx), 0);
	/* Native AIO ties I/O to the process (and reads a pipe inside io_submit). */
	if (!ctx_is_uring(e.ctx)) {
		ck_assert_int_eq(io_destroy(e.ctx), 0);
		return;
	}
	ck_assert_int_eq(pipe(p), 0);
	e.fd = p[0];
	ck_assert_int_eq(pthread_create(&thread, NULL, read_then_exit, &e), 0);
	while (!atomic_load(&e.submitted))
		usleep(1000);
	ck_assert_int_eq(e.ret, 1);
	for (int i = 0; i < 100; i++) {
		long nr = sleeping_in(e.tid);

		if (nr == -2)
			break;
		timed_sleeps += nr == SYS_nanosleep || nr == SYS_clock_nanosleep;
		usleep(1000);
	}
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(pthread_join(thread, NULL), 0);
	ck_assert_int_eq(reap_one(e.ctx, &e.cb), 1);
	ck_assert_int_eq(e.c, 'x');
	ck_assert_msg(!timed_sleeps, "the exiting thread slept on a timer in %d of 100 samples",
		      timed_sleeps);
	ck_assert_int_eq(io_destroy(e.ctx), 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

/*
 * libaio's waits are system calls, not cancellation points: a thread
 * cancelled while it waits leaves the call as it would have, and the
 * cancel acts at its next cancellation point. Nothing of the call may
 * stay behind (a reaper counted, the context pinned), or io_destroy
 * would wait for ever.
 */
#define NOT_RETURNED (-1000)

struct cancelled {
	io_context_t ctx;
	int ret; /* what the call returned, or NOT_RETURNED */
};

static void *getevents_then_cancel_point(void *arg)
{
	struct cancelled *c = arg;
	struct io_event ev;

	c->ret = io_getevents(c->ctx, 1, 1, &ev, NULL);
	stack_unwinds_next();
	pthread_testcancel();
	return NULL;
}

static void *queue_wait_then_cancel_point(void *arg)
{
	struct cancelled *c = arg;

	c->ret = io_queue_wait(c->ctx, NULL);
	stack_unwinds_next();
	pthread_testcancel();
	return NULL;
}

/* Cancels a thread that (very likely) sleeps in the library by now. */
static void cancel_sleeper(pthread_t thread)
{
	usleep(50 * 1000);
	ck_assert_int_eq(pthread_cancel(thread), 0);
}

static void join_cancelled(pthread_t thread)
{
	void *res = NULL;

	ck_assert_int_eq(pthread_join(thread, &res), 0);
	ck_assert_ptr_eq(res, PTHREAD_CANCELED);
}

START_TEST(test_cancel_waiter_in_getevents)
{
	struct cancelled c = { .ret = NOT_RETURNED };
	int fd = tmpfile_in(NULL, 4096, 0);
	char buf[512] = { 0 };
	struct iocb cb, *cbp = &cb;
	pthread_t thread;

	ck_assert_int_eq(io_setup(8, &c.ctx), 0);
	ck_assert_int_eq(pthread_create(&thread, NULL, getevents_then_cancel_point, &c), 0);
	cancel_sleeper(thread);
	/* Its completion ends the wait; the cancel acts after the call. */
	io_prep_pwrite(&cb, fd, buf, sizeof(buf), 0);
	ck_assert_int_eq(io_submit(c.ctx, 1, &cbp), 1);
	join_cancelled(thread);
	ck_assert_int_eq(c.ret, 1);
	ck_assert_int_eq(io_destroy(c.ctx), 0);
	close(fd);
}
END_TEST

START_TEST(test_cancel_waiter_in_queue_wait)
{
	struct cancelled c = { .ret = NOT_RETURNED };
	struct iocb cb, *cbp = &cb;
	pthread_t thread;
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(io_setup(8, &c.ctx), 0);
	io_prep_poll(&cb, p[0], POLLIN);
	ck_assert_int_eq(io_submit(c.ctx, 1, &cbp), 1);
	ck_assert_int_eq(pthread_create(&thread, NULL, queue_wait_then_cancel_point, &c), 0);
	cancel_sleeper(thread);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	join_cancelled(thread);
	ck_assert_int_eq(c.ret, 0);
	ck_assert(reap_one(c.ctx, &cb) & POLLIN);
	ck_assert_int_eq(io_destroy(c.ctx), 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

struct setup_destroy {
	int setup, submit, destroy;
};

/* Set up and destroyed by a thread whose cancel is already pending. */
static void *setup_destroy_cancelled(void *arg)
{
	struct setup_destroy *r = arg;
	io_context_t ctx = NULL;
	struct iocb cb, *cbp = &cb;
	int p[2];

	if (pipe(p))
		return NULL;
	pthread_cancel(pthread_self());
	r->setup = io_setup(8, &ctx);
	if (!r->setup) {
		/* A poll in flight: io_destroy has to cancel it and wait. */
		io_prep_poll(&cb, p[0], POLLIN);
		r->submit = io_submit(ctx, 1, &cbp);
		r->destroy = io_destroy(ctx);
	}
	stack_unwinds_next();
	close(p[0]);
	close(p[1]);
	return NULL;
}

START_TEST(test_cancel_pending_at_setup_and_destroy)
{
	struct setup_destroy r = { NOT_RETURNED, NOT_RETURNED, NOT_RETURNED };
	pthread_t thread;

	ck_assert_int_eq(pthread_create(&thread, NULL, setup_destroy_cancelled, &r), 0);
	join_cancelled(thread);
	ck_assert_int_eq(r.setup, 0);
	ck_assert_int_eq(r.submit, 1);
	ck_assert_int_eq(r.destroy, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("threads");
	TCase *reap = tcase_create("submit and reap");
	TCase *dispatch = tcase_create("dispatch");
	TCase *cancel = tcase_create("cancel");

	tcase_set_timeout(reap, 10);
	tcase_add_test(reap, test_submit_reap_buffered);
	tcase_add_test(reap, test_submit_reap_direct);
	tcase_add_test(reap, test_io_outlives_submitter);
	tcase_add_test(reap, test_waiters_woken_by_later_submission);
	tcase_add_test(reap, test_exit_waits_asleep);
	suite_add_tcase(s, reap);

	tcase_set_timeout(dispatch, 10);
	tcase_add_test(dispatch, test_queue_run_concurrent);
	suite_add_tcase(s, dispatch);

	tcase_set_timeout(cancel, 10);
	tcase_add_test(cancel, test_cancel_waiter_in_getevents);
	/* The real libaio's io_queue_wait never waits: nothing to cancel there. */
	if (aio_compat_backend)
		tcase_add_test(cancel, test_cancel_waiter_in_queue_wait);
	tcase_add_test(cancel, test_cancel_pending_at_setup_and_destroy);
	suite_add_tcase(s, cancel);

	return run_suite(s, "threads");
}
