/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io_cancel. Native AIO can cancel only a POLL: io_cancel answers
 * -EINPROGRESS, leaves its result argument alone, and the cancelled poll
 * completes through the ring with res 0. Everything else is -EINVAL.
 */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdbool.h>
#include <sys/syscall.h>

static io_context_t ctx;
static int pfd[2]; /* a pipe nobody writes to */

static void ctx_up(void)
{
	ctx = NULL;
	ck_assert_int_eq(io_setup(16, &ctx), 0);
	ck_assert_int_eq(pipe(pfd), 0);
}

static void ctx_down(void)
{
	expect_no_event(ctx, 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(pfd[0]);
	close(pfd[1]);
}

static void submit_poll(struct iocb *cb, void *cookie)
{
	io_prep_poll(cb, pfd[0], POLLIN);
	cb->data = cookie;
	ck_assert_int_eq(submit_one(ctx, cb), 1);
}

/* The event of a cancelled poll: res 0, res2 0, data and obj as submitted. */
static void reap_cancelled(struct iocb *cb)
{
	struct io_event ev;

	ck_assert_int_eq(getevents_ms(ctx, 1, 1, &ev, 2000), 1);
	ck_assert_ptr_eq(ev.obj, cb);
	ck_assert_ptr_eq(ev.data, cb->data);
	ck_assert_int_eq((long)ev.res, 0);
	ck_assert_int_eq((long)ev.res2, 0);
}

START_TEST(cancel_poll_in_flight)
{
	struct iocb cb;
	struct io_event result;

	submit_poll(&cb, (void *)0xc0ffee);
	expect_no_event(ctx, 20);
	ck_assert_int_eq(io_cancel(ctx, &cb, &result), -EINPROGRESS);
	reap_cancelled(&cb);
}
END_TEST

START_TEST(cancel_leaves_result_alone)
{
	struct iocb cb;
	struct io_event result, pattern;

	memset(&pattern, 0xa5, sizeof(pattern));
	result = pattern;
	submit_poll(&cb, (void *)0x1);
	ck_assert_int_eq(io_cancel(ctx, &cb, &result), -EINPROGRESS);
	ck_assert_mem_eq(&result, &pattern, sizeof(result));
	reap_cancelled(&cb);
	ck_assert_mem_eq(&result, &pattern, sizeof(result));
}
END_TEST

START_TEST(cancel_null_result)
{
	struct iocb cb;

	submit_poll(&cb, (void *)0x2);
	ck_assert_int_eq(io_cancel(ctx, &cb, NULL), -EINPROGRESS);
	reap_cancelled(&cb);
}
END_TEST

START_TEST(cancel_twice)
{
	struct iocb cb;
	struct io_event result;

	submit_poll(&cb, (void *)0x3);
	ck_assert_int_eq(io_cancel(ctx, &cb, &result), -EINPROGRESS);
	ck_assert_int_eq(io_cancel(ctx, &cb, &result), -EINVAL);
	reap_cancelled(&cb);
	ck_assert_int_eq(io_cancel(ctx, &cb, &result), -EINVAL);
	expect_no_event(ctx, 20);
}
END_TEST

START_TEST(cancel_one_of_many)
{
	struct iocb cbs[8];
	struct io_event ev[7];
	int seen = 0;

	for (int i = 0; i < 8; i++)
		submit_poll(&cbs[i], (void *)(long)(i + 1));
	ck_assert_int_eq(io_cancel(ctx, &cbs[3], NULL), -EINPROGRESS);
	reap_cancelled(&cbs[3]);
	/* The others are still waiting and complete when the pipe turns readable. */
	expect_no_event(ctx, 20);
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	reap_n(ctx, 7, ev, 2000);
	for (int i = 0; i < 7; i++) {
		long k = ev[i].obj - cbs;

		ck_assert(k >= 0 && k < 8 && k != 3);
		ck_assert_int_eq((long)ev[i].res & POLLIN, POLLIN);
		seen |= 1 << k;
	}
	ck_assert_int_eq(seen, 0xff & ~(1 << 3));
}
END_TEST

START_TEST(cancel_all)
{
	struct iocb cbs[8];
	struct io_event ev[8];

	for (int i = 0; i < 8; i++)
		submit_poll(&cbs[i], (void *)(long)(i + 1));
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(io_cancel(ctx, &cbs[i], NULL), -EINPROGRESS);
	reap_n(ctx, 8, ev, 2000);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq((long)ev[i].res, 0);
}
END_TEST

START_TEST(cancel_in_other_context)
{
	io_context_t other = NULL;
	struct iocb cb;

	ck_assert_int_eq(io_setup(4, &other), 0);
	submit_poll(&cb, (void *)0x4);
	ck_assert_int_eq(io_cancel(other, &cb, NULL), -EINVAL);
	ck_assert_int_eq(io_destroy(other), 0);
	/* Still in flight in its own context. */
	expect_no_event(ctx, 20);
	ck_assert_int_eq(io_cancel(ctx, &cb, NULL), -EINPROGRESS);
	reap_cancelled(&cb);
}
END_TEST

START_TEST(cancel_needs_key_zero)
{
	struct iocb cb;

	/* The kernel recognises its iocbs by aio_key, which it wants 0. */
	submit_poll(&cb, (void *)0x5);
	cb.key = 1;
	ck_assert_int_eq(io_cancel(ctx, &cb, NULL), -EINVAL);
	cb.key = 0;
	ck_assert_int_eq(io_cancel(ctx, &cb, NULL), -EINPROGRESS);
	reap_cancelled(&cb);
}
END_TEST

START_TEST(cancel_poll_with_no_events)
{
	struct iocb cb;

	/* Asks for nothing on a readable pipe: waits until cancelled. */
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	io_prep_poll(&cb, pfd[0], 0);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	expect_no_event(ctx, 20);
	ck_assert_int_eq(io_cancel(ctx, &cb, NULL), -EINPROGRESS);
	reap_cancelled(&cb);
}
END_TEST

START_TEST(cancel_read_is_refused)
{
	int dfd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);
	char *buf = aligned_buf(1 << 20, 0x3c);
	struct iocb cb;
	struct io_event result;

	ck_assert_int_eq(pwrite(dfd, buf, 1 << 20, 0), 1 << 20);
	io_prep_pread(&cb, dfd, buf, 1 << 20, 0);
	cb.data = (void *)0x6;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	/* In flight or done, a read cannot be cancelled: it completes in full. */
	ck_assert_int_eq(io_cancel(ctx, &cb, &result), -EINVAL);
	ck_assert_int_eq(reap_one(ctx, &cb), 1 << 20);
	free(buf);
	close(dfd);
}
END_TEST

START_TEST(cancel_write_and_fsync_are_refused)
{
	int f = tmpfile_in(NULL, 0, O_RDWR);
	char buf[4096] = { 0 };
	struct iocb w, s;

	io_prep_pwrite(&w, f, buf, sizeof(buf), 0);
	io_prep_fsync(&s, f);
	ck_assert_int_eq(submit_one(ctx, &w), 1);
	ck_assert_int_eq(io_cancel(ctx, &w, NULL), -EINVAL);
	ck_assert_int_eq(reap_one(ctx, &w), sizeof(buf));
	ck_assert_int_eq(submit_one(ctx, &s), 1);
	ck_assert_int_eq(io_cancel(ctx, &s, NULL), -EINVAL);
	ck_assert_int_eq(reap_one(ctx, &s), 0);
	close(f);
}
END_TEST

START_TEST(cancel_after_completion)
{
	struct iocb cb;

	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	submit_poll(&cb, (void *)0x7);
	ck_assert_int_eq(reap_one(ctx, &cb), POLLIN);
	ck_assert_int_eq(io_cancel(ctx, &cb, NULL), -EINVAL);
}
END_TEST

START_TEST(destroy_with_poll_in_flight)
{
	io_context_t c = NULL;
	struct iocb cb;

	ck_assert_int_eq(io_setup(4, &c), 0);
	io_prep_poll(&cb, pfd[0], POLLIN);
	ck_assert_int_eq(submit_one(c, &cb), 1);
	ck_assert_int_eq(io_destroy(c), 0);
	ck_assert_int_eq(io_cancel(c, &cb, NULL), -EINVAL);
}
END_TEST

/* The io_uring descriptors of this process, as a bit set of fd numbers below 1024. */
static void uring_fds(unsigned char set[128])
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	ck_assert_ptr_nonnull(d);
	memset(set, 0, 128);
	while ((de = readdir(d))) {
		char path[300], target[64];
		int fd = atoi(de->d_name);
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0 || fd >= 1024)
			continue;
		target[len] = '\0';
		if (!strcmp(target, "anon_inode:[io_uring]"))
			set[fd / 8] |= 1 << (fd % 8);
	}
	closedir(d);
}

/*
 * When the kernel refuses to take a poll's removal, io_destroy must not
 * wait for it for ever. Here it refuses every submission: the ring's
 * descriptor now names /dev/null, as after a program dup2()s over every
 * descriptor it finds.
 */
START_TEST(destroy_when_removal_is_refused)
{
	unsigned char before[128], after[128];
	io_context_t c = NULL;
	struct iocb cb;
	int ring = -1, null;

	uring_fds(before);
	ck_assert_int_eq(io_setup(4, &c), 0);
	if (!ctx_is_uring(c)) {
		ck_assert_int_eq(io_destroy(c), 0);
		return;
	}
	uring_fds(after);
	for (int fd = 0; fd < 1024 && ring < 0; fd++)
		if ((after[fd / 8] & ~before[fd / 8]) & (1 << (fd % 8)))
			ring = fd;
	ck_assert_int_ge(ring, 0);
	io_prep_poll(&cb, pfd[0], POLLIN);
	ck_assert_int_eq(submit_one(c, &cb), 1);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(null, 0);
	ck_assert_int_eq(dup2(null, ring), ring);
	close(null);
	ck_assert_int_ne(io_cancel(c, &cb, NULL), -EINPROGRESS);
	ck_assert_int_eq(io_destroy(c), 0);
}
END_TEST

/* The same calls on the kernel's own AIO context, or on the library's. */
struct side {
	bool kernel;
	unsigned long id;
	io_context_t ctx;
};

static int side_submit(struct side *s, struct iocb *cb)
{
	if (!s->kernel)
		return submit_one(s->ctx, cb);
	return syscall(SYS_io_submit, s->id, 1L, &cb) < 0 ? -errno : 1;
}

static int side_cancel(struct side *s, struct iocb *cb)
{
	struct io_event result;

	if (!s->kernel)
		return io_cancel(s->ctx, cb, &result);
	return syscall(SYS_io_cancel, s->id, cb, &result) < 0 ? -errno : 0;
}

/* Up to max events, waiting at most ms for the first. */
static int side_reap(struct side *s, struct io_event *ev, int max, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	if (!s->kernel)
		return io_getevents(s->ctx, 1, max, ev, &ts);
	return (int)syscall(SYS_io_getevents, s->id, 1L, (long)max, ev, &ts);
}

/* Appends the events that come, until none has for 100 ms, by their data. */
static void note_events(struct side *s, char *out, size_t len)
{
	struct io_event ev[4];
	int n = 0, got;

	while ((got = side_reap(s, ev + n, 4 - n, 100)) > 0)
		n += got;
	ck_assert_int_eq(got, 0);
	if (n == 2 && ev[0].data > ev[1].data) {
		struct io_event t = ev[0];

		ev[0] = ev[1];
		ev[1] = t;
	}
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), len - strlen(out), " event %lu:%ld",
			 (unsigned long)ev[i].data, (long)ev[i].res);
}

/*
 * One poll iocb submitted twice (data 1, then 2) and cancelled three
 * times, its events reaped after each io_cancel or only after the last;
 * then its pipe is made ready, and any poll still live would fire.
 */
static void cancel_twice_submitted(struct side *s, bool reap_each, char *out, size_t len)
{
	int fds[2];
	struct iocb cb;

	*out = 0;
	ck_assert_int_eq(pipe(fds), 0);
	if (s->kernel)
		ck_assert_int_eq(syscall(SYS_io_setup, 16, &s->id), 0);
	else
		ck_assert_int_eq(io_setup(16, &s->ctx), 0);
	io_prep_poll(&cb, fds[0], POLLIN);
	cb.data = (void *)1;
	ck_assert_int_eq(side_submit(s, &cb), 1);
	cb.data = (void *)2;
	ck_assert_int_eq(side_submit(s, &cb), 1);
	for (int i = 0; i < 3; i++) {
		snprintf(out + strlen(out), len - strlen(out), " cancel %d", side_cancel(s, &cb));
		if (reap_each)
			note_events(s, out, len);
	}
	note_events(s, out, len);
	ck_assert_int_eq(write(fds[1], "x", 1), 1);
	snprintf(out + strlen(out), len - strlen(out), " | ready:");
	note_events(s, out, len);
	if (s->kernel)
		ck_assert_int_eq(syscall(SYS_io_destroy, s->id), 0);
	else
		ck_assert_int_eq(io_destroy(s->ctx), 0);
	close(fds[0]);
	close(fds[1]);
}

/*
 * The kernel cancels the iocb's live polls one per io_cancel, the first
 * submitted first, each completing with res 0; then -EINVAL.
 */
START_TEST(cancel_iocb_submitted_twice)
{
	struct side kernel = { .kernel = true }, lib = { .kernel = false };
	char expected[256], got[256];

	cancel_twice_submitted(&kernel, _i, expected, sizeof(expected));
	cancel_twice_submitted(&lib, _i, got, sizeof(got));
	ck_assert_str_eq(got, expected);
}
END_TEST

static Suite *cancel_suite(void)
{
	Suite *s = suite_create("cancel");
	TCase *poll_tc = tcase_create("poll");
	TCase *other = tcase_create("not-cancellable");

	tcase_add_checked_fixture(poll_tc, ctx_up, ctx_down);
	tcase_add_checked_fixture(other, ctx_up, ctx_down);
	tcase_add_test(poll_tc, cancel_poll_in_flight);
	tcase_add_test(poll_tc, cancel_leaves_result_alone);
	tcase_add_test(poll_tc, cancel_null_result);
	tcase_add_test(poll_tc, cancel_twice);
	tcase_add_test(poll_tc, cancel_one_of_many);
	tcase_add_test(poll_tc, cancel_all);
	tcase_add_test(poll_tc, cancel_in_other_context);
	tcase_add_test(poll_tc, cancel_needs_key_zero);
	tcase_add_test(poll_tc, cancel_poll_with_no_events);
	tcase_add_loop_test(poll_tc, cancel_iocb_submitted_twice, 0, 2);
	tcase_add_test(other, cancel_read_is_refused);
	tcase_add_test(other, cancel_write_and_fsync_are_refused);
	tcase_add_test(other, cancel_after_completion);
	tcase_add_test(other, destroy_with_poll_in_flight);
	tcase_add_test(other, destroy_when_removal_is_refused);
	suite_add_tcase(s, poll_tc);
	suite_add_tcase(s, other);
	return s;
}

int main(void)
{
	return run_suite(cancel_suite(), "cancel");
}
