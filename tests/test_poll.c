/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * IO_CMD_POLL: the event's res is the poll mask. Polled when submitted, a
 * ready file answers the requested bits (POLLERR and POLLHUP are always
 * requested). Woken later, native AIO may report the whole mask the file
 * woke it with (POLLIN | POLLRDNORM for a pipe), or only the requested
 * bits when it had to poll the file again.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static io_context_t ctx;

static void ctx_up(void)
{
	ctx = NULL;
	ck_assert_int_eq(io_setup(16, &ctx), 0);
}

static void ctx_down(void)
{
	expect_no_event(ctx, 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
}

/* Polls fd for events; returns res, or fails when nothing comes within 1 s. */
static long poll_now(int fd, int events)
{
	struct iocb cb;

	io_prep_poll(&cb, fd, events);
	cb.data = (void *)(long)fd;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	return reap_one(ctx, &cb);
}

/* Submits a poll that must not complete yet. */
static void poll_pending(struct iocb *cb, int fd, int events)
{
	io_prep_poll(cb, fd, events);
	ck_assert_int_eq(submit_one(ctx, cb), 1);
	expect_no_event(ctx, 20);
}

#define PIPE_WAKE (POLLIN | POLLRDNORM)
#define SOCKET_WAKE (POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND)

/* A POLLIN poll woken by a file that wakes with wake_mask. */
static void assert_woken_in(long res, long wake_mask)
{
	ck_assert_msg((res & POLLIN) && !(res & ~wake_mask), "res %#lx", res);
}

START_TEST(pipe_pollin)
{
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(poll_now(p[0], POLLIN), POLLIN);
	ck_assert_int_eq(poll_now(p[0], POLLIN | POLLRDNORM), POLLIN | POLLRDNORM);
	/* Bits the file does not have are not reported. */
	ck_assert_int_eq(poll_now(p[0], POLLIN | POLLOUT | POLLPRI), POLLIN);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(pipe_pollout)
{
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(poll_now(p[1], POLLOUT), POLLOUT);
	ck_assert_int_eq(poll_now(p[1], POLLOUT | POLLWRNORM), POLLOUT | POLLWRNORM);
	ck_assert_int_eq(poll_now(p[1], POLLOUT | POLLIN), POLLOUT);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(pipe_hangup)
{
	int p[2], q[2];

	/* POLLHUP and POLLERR come whether asked for or not. */
	ck_assert_int_eq(pipe(p), 0);
	close(p[1]);
	ck_assert_int_eq(poll_now(p[0], POLLIN), POLLHUP);
	ck_assert_int_eq(pipe(q), 0);
	close(q[0]);
	ck_assert_int_eq(poll_now(q[1], POLLOUT), POLLOUT | POLLERR);
	close(p[0]);
	close(q[1]);
}
END_TEST

START_TEST(eventfd_pollin_pollout)
{
	int efd = eventfd(0, 0);
	struct iocb cb;

	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(poll_now(efd, POLLOUT), POLLOUT);
	poll_pending(&cb, efd, POLLIN);
	ck_assert_int_eq(eventfd_write(efd, 3), 0);
	ck_assert_int_eq(reap_one(ctx, &cb), POLLIN);
	ck_assert_int_eq(poll_now(efd, POLLIN), POLLIN);
	close(efd);
}
END_TEST

START_TEST(socketpair_pollin_pollout)
{
	int s[2];
	struct iocb cb;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	ck_assert_int_eq(poll_now(s[0], POLLOUT), POLLOUT);
	ck_assert_int_eq(poll_now(s[0], POLLOUT | POLLWRNORM), POLLOUT | POLLWRNORM);
	poll_pending(&cb, s[0], POLLIN);
	ck_assert_int_eq(write(s[1], "x", 1), 1);
	assert_woken_in(reap_one(ctx, &cb), SOCKET_WAKE);
	ck_assert_int_eq(poll_now(s[0], POLLIN), POLLIN);
	ck_assert_int_eq(poll_now(s[0], POLLIN | POLLRDNORM), POLLIN | POLLRDNORM);
	/* The peer gone: readable (end of file) and hung up. */
	close(s[1]);
	ck_assert_int_eq(poll_now(s[0], POLLIN), POLLIN | POLLHUP);
	ck_assert_int_eq(poll_now(s[0], POLLRDHUP), POLLRDHUP | POLLHUP);
	close(s[0]);
}
END_TEST

START_TEST(regular_file_is_always_ready)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);

	ck_assert_int_eq(poll_now(fd, POLLIN), POLLIN);
	ck_assert_int_eq(poll_now(fd, POLLOUT), POLLOUT);
	close(fd);
}
END_TEST

START_TEST(pipe_becomes_ready)
{
	int p[2];
	struct iocb cb;

	ck_assert_int_eq(pipe(p), 0);
	poll_pending(&cb, p[0], POLLIN);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	assert_woken_in(reap_one(ctx, &cb), PIPE_WAKE);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(several_polls_on_one_fd)
{
	int p[2];
	struct iocb cbs[4];
	struct io_event ev[4];
	int seen = 0;

	ck_assert_int_eq(pipe(p), 0);
	for (int i = 0; i < 4; i++) {
		io_prep_poll(&cbs[i], p[0], POLLIN);
		ck_assert_int_eq(submit_one(ctx, &cbs[i]), 1);
	}
	expect_no_event(ctx, 20);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	reap_n(ctx, 4, ev, 2000);
	for (int i = 0; i < 4; i++) {
		long k = ev[i].obj - cbs;

		ck_assert(k >= 0 && k < 4);
		assert_woken_in((long)ev[i].res, PIPE_WAKE);
		seen |= 1 << k;
	}
	ck_assert_int_eq(seen, 0xf);
	close(p[0]);
	close(p[1]);
}
END_TEST

struct delayed_write {
	int fd;
	long ms;
};

static void *write_later(void *arg)
{
	struct delayed_write *dw = arg;
	struct timespec ts = { 0, dw->ms * 1000000 };

	nanosleep(&ts, NULL);
	if (write(dw->fd, "x", 1) != 1)
		return (void *)1;
	return NULL;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

START_TEST(ready_later_from_another_thread)
{
	int p[2];
	struct delayed_write dw;
	struct iocb cb;
	struct io_event ev;
	struct timespec t0;
	pthread_t t;
	void *failed;

	ck_assert_int_eq(pipe(p), 0);
	io_prep_poll(&cb, p[0], POLLIN);
	cb.data = (void *)0xfeed;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	dw = (struct delayed_write){ p[1], 100 };
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(pthread_create(&t, NULL, write_later, &dw), 0);
	/* io_getevents sleeps until the other thread's write wakes the poll. */
	ck_assert_int_eq(io_getevents(ctx, 1, 1, &ev, NULL), 1);
	ck_assert_int_ge(ms_since(&t0), 90);
	ck_assert_ptr_eq(ev.obj, &cb);
	ck_assert_ptr_eq(ev.data, (void *)0xfeed);
	assert_woken_in((long)ev.res, PIPE_WAKE);
	ck_assert_int_eq((long)ev.res2, 0);
	ck_assert_int_eq(pthread_join(t, &failed), 0);
	ck_assert_ptr_null(failed);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(ready_later_with_timeout)
{
	int p[2];
	struct delayed_write dw;
	struct iocb cb;
	struct io_event ev;
	pthread_t t;

	ck_assert_int_eq(pipe(p), 0);
	io_prep_poll(&cb, p[0], POLLIN);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	/* Nothing within 50 ms; a write 50 ms later completes it. */
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, &ev, 50), 0);
	dw = (struct delayed_write){ p[1], 50 };
	ck_assert_int_eq(pthread_create(&t, NULL, write_later, &dw), 0);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, &ev, 2000), 1);
	ck_assert_ptr_eq(ev.obj, &cb);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(bad_poll_iocbs)
{
	int p[2];
	struct iocb cb;

	ck_assert_int_eq(pipe(p), 0);
	/* Only the 16-bit events field may be set. */
	io_prep_poll(&cb, p[0], 0x10000);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_poll(&cb, p[0], POLLIN);
	cb.u.poll.__pad1 = 1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_poll(&cb, p[0], POLLIN);
	cb.u.c.offset = 1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_poll(&cb, p[0], POLLIN);
	cb.u.c.nbytes = 1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_poll(&cb, p[0], POLLIN);
	cb.aio_rw_flags = RWF_NOWAIT;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_poll(&cb, -1, POLLIN);
	ck_assert_int_eq(submit_one(ctx, &cb), -EBADF);
	close(p[0]);
	close(p[1]);
}
END_TEST

static Suite *poll_suite(void)
{
	Suite *s = suite_create("poll");
	TCase *ready = tcase_create("ready");
	TCase *later = tcase_create("later");
	TCase *bad = tcase_create("bad");

	tcase_add_checked_fixture(ready, ctx_up, ctx_down);
	tcase_add_checked_fixture(later, ctx_up, ctx_down);
	tcase_add_checked_fixture(bad, ctx_up, ctx_down);
	tcase_add_test(ready, pipe_pollin);
	tcase_add_test(ready, pipe_pollout);
	tcase_add_test(ready, pipe_hangup);
	tcase_add_test(ready, eventfd_pollin_pollout);
	tcase_add_test(ready, socketpair_pollin_pollout);
	tcase_add_test(ready, regular_file_is_always_ready);
	tcase_add_test(later, pipe_becomes_ready);
	tcase_add_test(later, several_polls_on_one_fd);
	tcase_add_test(later, ready_later_from_another_thread);
	tcase_add_test(later, ready_later_with_timeout);
	tcase_add_test(bad, bad_poll_iocbs);
	suite_add_tcase(s, ready);
	suite_add_tcase(s, later);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	return run_suite(poll_suite(), "poll");
}
