/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io_getevents timeouts, and the signals that cut a wait short. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* libaio.so.1 exports it (LIBAIO_0.4) but <libaio.h> leaves it commented out. */
int io_queue_wait(io_context_t ctx, struct timespec *timeout);

#define BLOCK 512

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static io_context_t new_ctx(int maxevents)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(io_setup(maxevents, &ctx), 0);
	return ctx;
}

/* A poll on the read end of a fresh pipe: in flight until someone writes. */
struct pending_poll {
	int pipefd[2];
	struct iocb iocb;
};

static void submit_poll(io_context_t ctx, struct pending_poll *pp)
{
	struct iocb *ios[1] = { &pp->iocb };

	ck_assert_int_eq(pipe(pp->pipefd), 0);
	io_prep_poll(&pp->iocb, pp->pipefd[0], POLLIN);
	ck_assert_int_eq(io_submit(ctx, 1, ios), 1);
}

/* Makes the poll fire, reaps it, closes the pipe. */
static void finish_poll(io_context_t ctx, struct pending_poll *pp)
{
	struct io_event ev;
	int ret;

	ck_assert_int_eq(write(pp->pipefd[1], "x", 1), 1);
	/* A signal still pending from the test may cut the first wait short. */
	while ((ret = getevents_ms(ctx, 1, 1, &ev, 2000)) == -EINTR)
		;
	ck_assert_int_eq(ret, 1);
	ck_assert_ptr_eq(ev.obj, &pp->iocb);
	close(pp->pipefd[0]);
	close(pp->pipefd[1]);
}

static void submit_writes(io_context_t ctx, int fd, void *buf, struct iocb *iocbs, int nr)
{
	struct iocb *ios[8];

	ck_assert_int_le(nr, 8);
	for (int i = 0; i < nr; i++) {
		io_prep_pwrite(&iocbs[i], fd, buf, BLOCK, (long long)i * BLOCK);
		ios[i] = &iocbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, nr, ios), nr);
}

START_TEST(test_zero_timeout_nothing_ready)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct io_event ev[4];
	double t0;

	t0 = now_ms();
	ck_assert_int_eq(getevents_ms(ctx, 1, 4, ev, 0), 0);
	ck_assert_double_lt(now_ms() - t0, 1000);

	submit_poll(ctx, &pp);
	t0 = now_ms();
	ck_assert_int_eq(getevents_ms(ctx, 1, 4, ev, 0), 0);
	ck_assert_double_lt(now_ms() - t0, 1000);
	finish_poll(ctx, &pp);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(test_zero_timeout_returns_what_is_ready)
{
	io_context_t ctx = new_ctx(8);
	int fd = tmpfile_in(NULL, 0, 0);
	void *buf = aligned_buf(BLOCK, 0x17);
	struct iocb iocbs[3];
	struct io_event ev[8];
	double t0;

	submit_writes(ctx, fd, buf, iocbs, 3);
	/* Writes to tmpfs finish in far less than this. */
	sleep_ms(100);
	t0 = now_ms();
	/* min_nr is more than there is: a zero timeout returns the 3 anyway. */
	ck_assert_int_eq(getevents_ms(ctx, 4, 8, ev, 0), 3);
	ck_assert_double_lt(now_ms() - t0, 1000);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq((long)ev[i].res, BLOCK);
	ck_assert_int_eq(getevents_ms(ctx, 1, 8, ev, 0), 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fd);
	free(buf);
}
END_TEST

START_TEST(test_timeout_nothing_in_flight)
{
	io_context_t ctx = new_ctx(4);
	struct io_event ev[4];
	double t0, waited;

	t0 = now_ms();
	ck_assert_int_eq(getevents_ms(ctx, 1, 4, ev, 50), 0);
	waited = now_ms() - t0;
	ck_assert_msg(waited >= 49, "a 50 ms timeout returned after %.2f ms", waited);
	ck_assert_double_lt(waited, 2000);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(test_timeout_poll_in_flight)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct io_event ev[4];
	double t0, waited;

	submit_poll(ctx, &pp);
	t0 = now_ms();
	ck_assert_int_eq(getevents_ms(ctx, 1, 4, ev, 50), 0);
	waited = now_ms() - t0;
	ck_assert_msg(waited >= 49, "a 50 ms timeout returned after %.2f ms", waited);
	ck_assert_double_lt(waited, 2000);
	finish_poll(ctx, &pp);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(test_timeout_returns_fewer_than_min_nr)
{
	io_context_t ctx = new_ctx(4);
	int fd = tmpfile_in(NULL, 0, 0);
	void *buf = aligned_buf(BLOCK, 0x18);
	struct iocb iocb;
	struct io_event ev[4];
	double t0, waited;

	submit_writes(ctx, fd, buf, &iocb, 1);
	t0 = now_ms();
	/* One is there, two were asked for: the kernel waits, then gives the one. */
	ck_assert_int_eq(getevents_ms(ctx, 2, 4, ev, 50), 1);
	waited = now_ms() - t0;
	ck_assert_msg(waited >= 49, "a 50 ms timeout returned after %.2f ms", waited);
	ck_assert_int_eq((long)ev[0].res, BLOCK);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fd);
	free(buf);
}
END_TEST

/* Writes to each pipe in turn, step_ms apart. */
struct staggered {
	int fds[3];
	long step_ms;
};

static void *write_staggered(void *arg)
{
	struct staggered *st = arg;
	intptr_t written = 0;

	for (int i = 0; i < 3; i++) {
		sleep_ms(st->step_ms);
		written += write(st->fds[i], "x", 1);
	}
	return (void *)written;
}

START_TEST(test_null_timeout_waits_for_min_nr)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp[3];
	struct staggered st = { .step_ms = 40 };
	struct io_event ev[4];
	pthread_t thread;
	void *written;
	double t0, waited;
	int got;

	for (int i = 0; i < 3; i++) {
		submit_poll(ctx, &pp[i]);
		st.fds[i] = pp[i].pipefd[1];
	}
	t0 = now_ms();
	ck_assert_int_eq(pthread_create(&thread, NULL, write_staggered, &st), 0);
	got = io_getevents(ctx, 2, 4, ev, NULL);
	waited = now_ms() - t0;
	ck_assert_msg(got == 2 || got == 3, "io_getevents(min_nr 2, NULL) returned %d", got);
	ck_assert_msg(waited >= 79, "min_nr 2 satisfied after %.2f ms", waited);
	if (got == 2)
		ck_assert_int_eq(io_getevents(ctx, 1, 4, ev + 2, NULL), 1);
	waited = now_ms() - t0;
	ck_assert_msg(waited >= 119, "third poll reaped after %.2f ms", waited);
	/* The writer may not have returned from its last write yet. */
	ck_assert_int_eq(pthread_join(thread, &written), 0);
	ck_assert_int_eq((intptr_t)written, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_ptr_eq(ev[i].obj, &pp[i].iocb);
		close(pp[i].pipefd[0]);
		close(pp[i].pipefd[1]);
	}
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

/* Signals. */
static atomic_int signals_caught;

static void count_signal(int sig)
{
	(void)sig;
	atomic_fetch_add(&signals_caught, 1);
}

static void catch_signal(int sig, int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = count_signal;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(sig, &sa, NULL), 0);
	atomic_store(&signals_caught, 0);
}

/*
 * SIGALRM every 50 ms to the process, so a signal that lands before the
 * wait has begun does not leave the wait without one.
 */
static void start_alarms(void)
{
	struct itimerval it = { { 0, 50000 }, { 0, 50000 } };

	ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
}

static void stop_alarms(void)
{
	struct itimerval off = { { 0, 0 }, { 0, 0 } };

	ck_assert_int_eq(setitimer(ITIMER_REAL, &off, NULL), 0);
}

/* Sends sig to one thread every interval_ms until stopped. */
struct sender {
	pthread_t target;
	int sig;
	long interval_ms;
	atomic_int stop;
	pthread_t thread;
};

static void *send_signals(void *arg)
{
	struct sender *s = arg;

	while (!atomic_load(&s->stop)) {
		sleep_ms(s->interval_ms);
		if (!atomic_load(&s->stop))
			pthread_kill(s->target, s->sig);
	}
	return NULL;
}

static void start_sender(struct sender *s, int sig, long interval_ms)
{
	s->target = pthread_self();
	s->sig = sig;
	s->interval_ms = interval_ms;
	atomic_init(&s->stop, 0);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, send_signals, s), 0);
}

static void stop_sender(struct sender *s)
{
	atomic_store(&s->stop, 1);
	ck_assert_int_eq(pthread_join(s->thread, NULL), 0);
}

/* _i: 0 without SA_RESTART, 1 with: io_getevents is never restarted. */
START_TEST(test_sigalrm_interrupts_timed_wait)
{
	io_context_t ctx = new_ctx(4);
	struct timespec ts = { 2, 0 };
	struct io_event ev;
	int ret;

	catch_signal(SIGALRM, _i ? SA_RESTART : 0);
	start_alarms();
	ret = io_getevents(ctx, 1, 1, &ev, &ts);
	stop_alarms();
	ck_assert_int_eq(ret, -EINTR);
	ck_assert_int_ge(atomic_load(&signals_caught), 1);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(test_sigalrm_interrupts_endless_wait)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct io_event ev;
	int ret;

	submit_poll(ctx, &pp);
	catch_signal(SIGALRM, _i ? SA_RESTART : 0);
	start_alarms();
	ret = io_getevents(ctx, 1, 1, &ev, NULL);
	stop_alarms();
	ck_assert_int_eq(ret, -EINTR);
	ck_assert_int_ge(atomic_load(&signals_caught), 1);
	finish_poll(ctx, &pp);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(test_thread_signal_interrupts_wait)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct timespec ts = { 2, 0 };
	struct io_event ev;
	struct sender s;
	int ret;

	submit_poll(ctx, &pp);
	catch_signal(SIGUSR1, _i ? SA_RESTART : 0);
	start_sender(&s, SIGUSR1, 50);
	ret = io_getevents(ctx, 1, 1, &ev, &ts);
	stop_sender(&s);
	ck_assert_int_eq(ret, -EINTR);
	ck_assert_int_ge(atomic_load(&signals_caught), 1);
	finish_poll(ctx, &pp);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

#define TRICKLE 100

struct trickle {
	io_context_t ctx;
	int fd;
	void *buf;
	struct iocb iocbs[TRICKLE];
	int submitted;
};

/* One write at a time, a millisecond apart, while the test thread waits. */
static void *trickle_writes(void *arg)
{
	struct trickle *t = arg;

	for (int i = 0; i < TRICKLE; i++) {
		struct iocb *iocb = &t->iocbs[i];

		io_prep_pwrite(iocb, t->fd, t->buf, BLOCK, (long long)i * BLOCK);
		if (io_submit(t->ctx, 1, &iocb) != 1)
			break;
		t->submitted++;
		sleep_ms(1);
	}
	return NULL;
}

START_TEST(test_no_eintr_without_signal)
{
	enum {
		NR = TRICKLE
	};
	static struct trickle t;
	struct io_event ev;
	pthread_t thread;

	t.ctx = new_ctx(NR);
	t.fd = tmpfile_in(NULL, 0, 0);
	t.buf = aligned_buf(BLOCK, 0x19);
	ck_assert_int_eq(pthread_create(&thread, NULL, trickle_writes, &t), 0);
	for (int i = 0; i < NR; i++) {
		int ret = getevents_ms(t.ctx, 1, 1, &ev, 2000);

		ck_assert_msg(ret == 1, "wait %d of %d returned %d with no signal sent", i + 1, NR,
			      ret);
		ck_assert_int_eq((long)ev.res, BLOCK);
	}
	ck_assert_int_eq(pthread_join(thread, NULL), 0);
	ck_assert_int_eq(t.submitted, NR);
	ck_assert_int_eq(io_destroy(t.ctx), 0);
	close(t.fd);
	free(t.buf);
}
END_TEST

/* Fires the uring context's poll, later the native one's. */
static void *fire_two(void *arg)
{
	int *fds = arg;
	intptr_t written = 0;

	sleep_ms(30);
	written += write(fds[0], "x", 1);
	sleep_ms(120);
	written += write(fds[1], "x", 1);
	return (void *)written;
}

/*
 * The kernel's native io_getevents returns -EINTR, with no signal, when an
 * io_uring completion queues task work on the waiting thread (measured on
 * this kernel: 10 of 10 rounds, raw liburing and libaio). The library must
 * not pass that on as a signal.
 */
START_TEST(test_no_eintr_from_uring_task_work)
{
	io_context_t uring = NULL, native = NULL;
	struct pending_poll on_uring, on_native;
	struct io_event ev;
	struct timespec ts = { 1, 0 };
	pthread_t thread;
	void *written;
	int fds[2], ret;

	if (!aio_compat_setup)
		return;
	/* valgrind has no io_pgetevents: native waits are io_getevents there. */
	if (UNDER_VALGRIND) {
		test_skip(NULL, "test_no_eintr_from_uring_task_work: under valgrind (no "
				"io_pgetevents, and io_getevents ends with EINTR after task work)");
		return;
	}
	if (aio_compat_setup(4, &uring, AIO_COMPAT_URING) != 0)
		return;
	ck_assert_int_eq(aio_compat_setup(4, &native, AIO_COMPAT_NATIVE), 0);
	for (int round = 0; round < 5; round++) {
		submit_poll(uring, &on_uring);
		submit_poll(native, &on_native);
		fds[0] = on_uring.pipefd[1];
		fds[1] = on_native.pipefd[1];
		ck_assert_int_eq(pthread_create(&thread, NULL, fire_two, fds), 0);
		ret = io_getevents(native, 1, 1, &ev, &ts);
		ck_assert_msg(ret == 1, "round %d: io_getevents on the native context returned %d",
			      round, ret);
		ck_assert_ptr_eq(ev.obj, &on_native.iocb);
		ck_assert_int_eq(io_getevents(uring, 1, 1, &ev, &ts), 1);
		ck_assert_ptr_eq(ev.obj, &on_uring.iocb);
		ck_assert_int_eq(pthread_join(thread, &written), 0);
		ck_assert_int_eq((intptr_t)written, 2);
		for (int i = 0; i < 2; i++) {
			close(on_uring.pipefd[i]);
			close(on_native.pipefd[i]);
		}
	}
	ck_assert_int_eq(io_destroy(uring), 0);
	ck_assert_int_eq(io_destroy(native), 0);
}
END_TEST

/* Wakes a poll after delay_ms, while a sender keeps signalling. */
struct delayed_write {
	int fd;
	long delay_ms;
};

static void *write_later(void *arg)
{
	struct delayed_write *dw = arg;

	sleep_ms(dw->delay_ms);
	return (void *)(intptr_t)write(dw->fd, "x", 1);
}

START_TEST(test_pgetevents_mask_blocks_signal)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct timespec ts = { 2, 0 };
	struct io_event ev;
	struct delayed_write dw;
	struct sender s;
	pthread_t writer;
	sigset_t during_wait;
	void *written;
	double t0, waited;
	int ret;

	/*
	 * io_uring's task work interrupts the wait, and the kernel restarts it
	 * with the old mask back for a moment: a signal let through then runs
	 * its handler and the wait goes on. valgrind cannot tell that restart
	 * from a wait not yet begun, and ends the wait with EINTR.
	 */
	if (UNDER_VALGRIND) {
		test_skip(NULL, "test_pgetevents_mask_blocks_signal: under valgrind (%s)",
			  ctx_is_uring(ctx) ? "it ends a restarted ppoll with EINTR"
					    : "it has no io_pgetevents to take the mask");
		ck_assert_int_eq(io_destroy(ctx), 0);
		return;
	}
	submit_poll(ctx, &pp);
	catch_signal(SIGUSR1, 0);
	sigemptyset(&during_wait);
	sigaddset(&during_wait, SIGUSR1);
	dw = (struct delayed_write){ pp.pipefd[1], 150 };
	t0 = now_ms();
	ck_assert_int_eq(pthread_create(&writer, NULL, write_later, &dw), 0);
	start_sender(&s, SIGUSR1, 20);
	ret = io_pgetevents(ctx, 1, 1, &ev, &ts, &during_wait);
	waited = now_ms() - t0;
	stop_sender(&s);
	/* SIGUSR1 kept arriving, held off by the mask: the poll ended the wait. */
	ck_assert_int_eq(ret, 1);
	ck_assert_ptr_eq(ev.obj, &pp.iocb);
	ck_assert_msg(waited >= 149, "io_pgetevents returned after %.2f ms", waited);
	/* Held, not lost: the handler ran once the old mask came back. */
	ck_assert_int_ge(atomic_load(&signals_caught), 1);
	ck_assert_int_eq(pthread_join(writer, &written), 0);
	ck_assert_int_eq((intptr_t)written, 1);
	close(pp.pipefd[0]);
	close(pp.pipefd[1]);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(test_pgetevents_mask_opens_signal)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct timespec ts = { 2, 0 };
	struct io_event ev;
	struct sender s;
	sigset_t blocked, during_wait, old;
	int ret;

	if (UNDER_VALGRIND && !ctx_is_uring(ctx)) {
		test_skip(NULL, "test_pgetevents_mask_opens_signal: under valgrind on native AIO "
				"(it has no io_pgetevents to take the mask)");
		ck_assert_int_eq(io_destroy(ctx), 0);
		return;
	}
	submit_poll(ctx, &pp);
	catch_signal(SIGUSR1, 0);
	/* Blocked everywhere except inside the wait, as ppoll users do. */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &blocked, &old), 0);
	sigemptyset(&during_wait);
	start_sender(&s, SIGUSR1, 50);
	ret = io_pgetevents(ctx, 1, 1, &ev, &ts, &during_wait);
	stop_sender(&s);
	ck_assert_int_eq(ret, -EINTR);
	ck_assert_int_ge(atomic_load(&signals_caught), 1);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
	finish_poll(ctx, &pp);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

START_TEST(test_queue_wait_signal)
{
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct timespec ts = { 2, 0 };
	struct sender s;
	int ret;

	submit_poll(ctx, &pp);
	catch_signal(SIGUSR1, SA_RESTART);
	start_sender(&s, SIGUSR1, 50);
	ret = io_queue_wait(ctx, &ts);
	stop_sender(&s);
	if (aio_compat_queue_run) {
		/* A wait that sleeps ends on a signal the way io_getevents does. */
		ck_assert_int_eq(ret, -EINTR);
		ck_assert_int_ge(atomic_load(&signals_caught), 1);
	} else {
		/* libaio's io_queue_wait never sleeps. */
		ck_assert_int_eq(ret, 0);
	}
	finish_poll(ctx, &pp);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

/*
 * The edges of a timeout. The kernel takes any timespec (no -EINVAL) and
 * reads it as sec * 1e9 + nsec nanoseconds in wrapping 64-bit arithmetic,
 * seconds from KTIME_SEC_MAX on as no limit; a negative sum never expires.
 * Measured on the kernel: { LONG_MIN, 0 } (a sum of 0) returns at once,
 * the others wait (a second for { 0, 1000000000 }).
 */
static const struct timespec edges[] = {
	{ 0, LONG_MAX },	 { 0, -1 }, { LONG_MIN, 0 },
	{ LONG_MAX, 999999999 }, { -1, 0 }, { 0, 1000000000 },
};

/*
 * What the kernel's io_getevents does with a timeout while a poll is in
 * flight and SIGUSR1 comes every 50 ms: 0 if it returned at once, -EINTR
 * if it was waiting.
 */
static int kernel_wait(const struct timespec *ts)
{
	unsigned long id = 0;
	struct iocb cb, *cbp = &cb;
	struct io_event ev;
	struct sender s;
	int fds[2], ret;

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(syscall(SYS_io_setup, 4, &id), 0);
	io_prep_poll(&cb, fds[0], POLLIN);
	ck_assert_int_eq(syscall(SYS_io_submit, id, 1, &cbp), 1);
	start_sender(&s, SIGUSR1, 50);
	ret = (int)syscall(SYS_io_getevents, id, 1, 1, &ev, ts);
	if (ret < 0)
		ret = -errno;
	stop_sender(&s);
	ck_assert_int_eq(syscall(SYS_io_destroy, id), 0);
	close(fds[0]);
	close(fds[1]);
	return ret;
}

/* The library's io_getevents, then its io_queue_wait, the same way. */
START_TEST(test_timeout_edges)
{
	struct timespec ts = edges[_i];
	io_context_t ctx = new_ctx(4);
	struct pending_poll pp;
	struct io_event ev;
	struct sender s;
	int expected, ret;

	catch_signal(SIGUSR1, 0);
	expected = kernel_wait(&ts);
	ck_assert(expected == 0 || expected == -EINTR);
	submit_poll(ctx, &pp);
	start_sender(&s, SIGUSR1, 50);
	ret = io_getevents(ctx, 1, 1, &ev, &ts);
	stop_sender(&s);
	ck_assert_msg(ret == expected, "io_getevents with { %ld, %ld }: %d, the kernel's %d",
		      (long)ts.tv_sec, ts.tv_nsec, ret, expected);
	if (aio_compat_queue_run) {
		start_sender(&s, SIGUSR1, 50);
		ret = io_queue_wait(ctx, &ts);
		stop_sender(&s);
		ck_assert_msg(ret == expected, "io_queue_wait with { %ld, %ld }: %d, expected %d",
			      (long)ts.tv_sec, ts.tv_nsec, ret, expected);
	}
	finish_poll(ctx, &pp);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("timeouts");
	TCase *timeouts = tcase_create("timeouts");
	TCase *signals = tcase_create("signals");

	tcase_add_test(timeouts, test_zero_timeout_nothing_ready);
	tcase_add_test(timeouts, test_zero_timeout_returns_what_is_ready);
	tcase_add_test(timeouts, test_timeout_nothing_in_flight);
	tcase_add_test(timeouts, test_timeout_poll_in_flight);
	tcase_add_test(timeouts, test_timeout_returns_fewer_than_min_nr);
	tcase_add_test(timeouts, test_null_timeout_waits_for_min_nr);
	suite_add_tcase(s, timeouts);

	tcase_add_loop_test(signals, test_sigalrm_interrupts_timed_wait, 0, 2);
	tcase_add_loop_test(signals, test_sigalrm_interrupts_endless_wait, 0, 2);
	tcase_add_loop_test(signals, test_thread_signal_interrupts_wait, 0, 2);
	tcase_add_test(signals, test_no_eintr_without_signal);
	tcase_add_test(signals, test_no_eintr_from_uring_task_work);
	tcase_add_test(signals, test_pgetevents_mask_blocks_signal);
	tcase_add_test(signals, test_pgetevents_mask_opens_signal);
	tcase_add_test(signals, test_queue_wait_signal);
	tcase_add_loop_test(signals, test_timeout_edges, 0, sizeof(edges) / sizeof(edges[0]));
	suite_add_tcase(s, signals);

	return run_suite(s, "timeouts");
}
