/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The io_queue_* dispatcher: io_callback_t run from the completions. */
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* libaio.so.1 exports it (LIBAIO_0.4) but <libaio.h> leaves it commented out. */
int io_queue_wait(io_context_t ctx, struct timespec *timeout);

#define BLOCK 512
#define MAX_CALLS 64

struct call {
	io_context_t ctx;
	struct iocb *iocb;
	long res;
	long res2;
};

/* Every callback run in this test process, in the order they ran. */
static struct call calls[MAX_CALLS];
static int nr_calls;

/* A handle that was never set up: readable memory without a ring in it. */
static char never_set_up[4096] __attribute__((aligned(4096)));

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The real libaio has no extensions, and its io_queue_wait never waits. */
static int is_compat(void)
{
	return aio_compat_queue_run != NULL;
}

static void record_cb(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	ck_assert_int_lt(nr_calls, MAX_CALLS);
	calls[nr_calls++] = (struct call){ ctx, iocb, res, res2 };
}

static int calls_for(struct iocb *iocb)
{
	int n = 0;

	for (int i = 0; i < nr_calls; i++)
		n += calls[i].iocb == iocb;
	return n;
}

static const struct call *call_for(struct iocb *iocb)
{
	for (int i = 0; i < nr_calls; i++)
		if (calls[i].iocb == iocb)
			return &calls[i];
	return NULL;
}

/* io_queue_run until want callbacks ran; every call must return 0. */
static void run_until(io_context_t ctx, int want)
{
	double deadline = now_ms() + 2000;

	for (;;) {
		ck_assert_int_eq(io_queue_run(ctx), 0);
		if (nr_calls >= want)
			break;
		ck_assert_msg(now_ms() < deadline, "%d of %d callbacks ran in 2 s", nr_calls, want);
		usleep(1000);
	}
	ck_assert_int_eq(nr_calls, want);
}

static void setup_ctx(io_context_t *ctx, int maxevents)
{
	*ctx = NULL;
	ck_assert_int_eq(io_queue_init(maxevents, ctx), 0);
	ck_assert_ptr_nonnull(*ctx);
	nr_calls = 0;
}

static void check_block(int fd, off_t off, size_t len, int pattern)
{
	unsigned char buf[4 * BLOCK];

	ck_assert_uint_le(len, sizeof(buf));
	ck_assert_int_eq(pread(fd, buf, len, off), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		ck_assert_msg(buf[i] == pattern, "byte %zu at offset %lld: 0x%02x, wrote 0x%02x", i,
			      (long long)off, buf[i], pattern);
}

START_TEST(test_init_and_release)
{
	io_context_t ctx = (io_context_t)0x1234;

	/* io_queue_init clears *ctxp itself, where io_setup would refuse it. */
	ck_assert_int_eq(io_queue_init(4, &ctx), 0);
	ck_assert_ptr_ne(ctx, (io_context_t)0x1234);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	ck_assert_int_eq(io_queue_release(ctx), -EINVAL);

	ctx = NULL;
	ck_assert_int_eq(io_queue_init(0, &ctx), -EINVAL);
	ck_assert_int_eq(io_queue_init(-1, &ctx), -EINVAL);
	ck_assert_int_eq(io_queue_release(NULL), -EINVAL);
	ck_assert_int_eq(io_queue_release((io_context_t)never_set_up), -EINVAL);
}
END_TEST

START_TEST(test_release_with_io_in_flight)
{
	io_context_t ctx;
	struct iocb poll_iocb, write_iocb, *ios[2] = { &poll_iocb, &write_iocb };
	int fd = tmpfile_in(NULL, 0, 0);
	void *buf = aligned_buf(BLOCK, 0x11);
	int pipefd[2];

	ck_assert_int_eq(pipe(pipefd), 0);
	setup_ctx(&ctx, 4);
	io_prep_poll(&poll_iocb, pipefd[0], POLLIN);
	io_set_callback(&poll_iocb, record_cb);
	io_prep_pwrite(&write_iocb, fd, buf, BLOCK, 0);
	io_set_callback(&write_iocb, record_cb);
	ck_assert_int_eq(io_submit(ctx, 2, ios), 2);
	/* A poll that never fires and a completion nobody reaped. */
	ck_assert_int_eq(io_queue_release(ctx), 0);
	ck_assert_int_eq(nr_calls, 0);
	close(pipefd[0]);
	close(pipefd[1]);
	close(fd);
	free(buf);
}
END_TEST

START_TEST(test_run_calls_each_once)
{
	enum {
		NR = 8
	};
	io_context_t ctx;
	struct iocb iocbs[NR], *ios[NR];
	void *bufs[NR];
	int fd = tmpfile_in(NULL, 0, 0);

	setup_ctx(&ctx, NR);
	for (int i = 0; i < NR; i++) {
		/* Distinct lengths, so each res tells which iocb it belongs to. */
		bufs[i] = aligned_buf((size_t)(i % 4 + 1) * BLOCK, 0x40 + i);
		io_prep_pwrite(&iocbs[i], fd, bufs[i], (size_t)(i % 4 + 1) * BLOCK,
			       (long long)i * 4 * BLOCK);
		io_set_callback(&iocbs[i], record_cb);
		ios[i] = &iocbs[i];
	}
	ck_assert_int_eq(io_queue_run(ctx), 0);
	ck_assert_int_eq(io_submit(ctx, NR, ios), NR);
	run_until(ctx, NR);

	for (int i = 0; i < NR; i++) {
		const struct call *c = call_for(&iocbs[i]);

		ck_assert_msg(calls_for(&iocbs[i]) == 1, "iocb %d: %d callbacks", i,
			      calls_for(&iocbs[i]));
		ck_assert_ptr_eq(c->ctx, ctx);
		ck_assert_int_eq(c->res, (i % 4 + 1) * BLOCK);
		ck_assert_int_eq(c->res2, 0);
		check_block(fd, (off_t)i * 4 * BLOCK, (size_t)(i % 4 + 1) * BLOCK, 0x40 + i);
		free(bufs[i]);
	}
	/* Nothing left: 0 again and no callback runs twice. */
	ck_assert_int_eq(io_queue_run(ctx), 0);
	ck_assert_int_eq(nr_calls, NR);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(fd);
}
END_TEST

START_TEST(test_run_dispatches_all_ready_in_one_call)
{
	enum {
		NR = 8
	};
	io_context_t ctx;
	struct iocb iocbs[NR], *ios[NR];
	void *buf = aligned_buf(BLOCK, 0x5a);
	int fd = tmpfile_in(NULL, 0, 0);
	struct timespec ts = { 2, 0 };

	setup_ctx(&ctx, NR);
	for (int i = 0; i < NR; i++) {
		io_prep_pwrite(&iocbs[i], fd, buf, BLOCK, (long long)i * BLOCK);
		io_set_callback(&iocbs[i], record_cb);
		ios[i] = &iocbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, NR, ios), NR);
	ck_assert_int_eq(io_queue_wait(ctx, &ts), 0);
	/* Writes to tmpfs finish in far less than this. */
	usleep(100 * 1000);
	/* Like libaio's: one call runs everything ready, and says 0, not 8. */
	ck_assert_int_eq(io_queue_run(ctx), 0);
	ck_assert_int_eq(nr_calls, NR);
	for (int i = 0; i < NR; i++)
		ck_assert_int_eq(calls_for(&iocbs[i]), 1);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(fd);
	free(buf);
}
END_TEST

START_TEST(test_run_bad_ctx)
{
	ck_assert_int_eq(io_queue_run(NULL), -EINVAL);
	ck_assert_int_eq(io_queue_run((io_context_t)never_set_up), -EINVAL);
	if (!is_compat())
		return;
	ck_assert_int_eq(aio_compat_queue_run(NULL), -EINVAL);
	ck_assert_int_eq(aio_compat_queue_run((io_context_t)never_set_up), -EINVAL);
}
END_TEST

START_TEST(test_compat_queue_run_counts)
{
	enum {
		NR = 5
	};
	io_context_t ctx;
	struct iocb iocbs[NR], *ios[NR];
	void *buf;
	double deadline;
	int total = 0, fd;

	if (!aio_compat_queue_run)
		return;
	buf = aligned_buf(BLOCK, 0x33);
	fd = tmpfile_in(NULL, 0, 0);
	setup_ctx(&ctx, NR);
	ck_assert_int_eq(aio_compat_queue_run(ctx), 0);
	for (int i = 0; i < NR; i++) {
		io_prep_pwrite(&iocbs[i], fd, buf, BLOCK, (long long)i * BLOCK);
		io_set_callback(&iocbs[i], record_cb);
		ios[i] = &iocbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, NR, ios), NR);
	deadline = now_ms() + 2000;
	while (total < NR) {
		int ret = aio_compat_queue_run(ctx);

		ck_assert_int_ge(ret, 0);
		total += ret;
		/* The count is exactly the callbacks this call ran. */
		ck_assert_int_eq(nr_calls, total);
		ck_assert_msg(now_ms() < deadline, "%d of %d callbacks ran in 2 s", total, NR);
		if (total < NR)
			usleep(1000);
	}
	ck_assert_int_eq(total, NR);
	ck_assert_int_eq(aio_compat_queue_run(ctx), 0);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(fd);
	free(buf);
}
END_TEST

/* A chain of writes: each callback submits the next one. */
#define CHAIN 5
static struct iocb chain[CHAIN];
static void *chain_bufs[CHAIN];
static int chain_fd;

static void chain_cb(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	long next = iocb - chain + 1;
	struct iocb *p;

	record_cb(ctx, iocb, res, res2);
	if (next == CHAIN)
		return;
	p = &chain[next];
	io_prep_pwrite(p, chain_fd, chain_bufs[next], BLOCK, next * BLOCK);
	io_set_callback(p, chain_cb);
	ck_assert_int_eq(io_submit(ctx, 1, &p), 1);
}

START_TEST(test_callback_submits)
{
	io_context_t ctx;
	struct iocb *first = &chain[0];

	chain_fd = tmpfile_in(NULL, 0, 0);
	for (int i = 0; i < CHAIN; i++)
		chain_bufs[i] = aligned_buf(BLOCK, 0x70 + i);
	setup_ctx(&ctx, 2);
	io_prep_pwrite(first, chain_fd, chain_bufs[0], BLOCK, 0);
	io_set_callback(first, chain_cb);
	ck_assert_int_eq(io_submit(ctx, 1, &first), 1);
	run_until(ctx, CHAIN);
	for (int i = 0; i < CHAIN; i++) {
		ck_assert_ptr_eq(calls[i].iocb, &chain[i]);
		ck_assert_int_eq(calls[i].res, BLOCK);
		check_block(chain_fd, (off_t)i * BLOCK, BLOCK, 0x70 + i);
		free(chain_bufs[i]);
	}
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(chain_fd);
}
END_TEST

static void free_cb(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	record_cb(ctx, iocb, res, res2);
	free(iocb);
}

START_TEST(test_callback_frees_iocb)
{
	enum {
		NR = 16
	};
	io_context_t ctx;
	struct iocb *ios[NR];
	void *buf = aligned_buf(BLOCK, 0x21);
	int fd = tmpfile_in(NULL, 0, 0);

	setup_ctx(&ctx, NR);
	for (int i = 0; i < NR; i++) {
		ios[i] = malloc(sizeof(*ios[i]));
		ck_assert_ptr_nonnull(ios[i]);
		io_prep_pwrite(ios[i], fd, buf, BLOCK, (long long)i * BLOCK);
		io_set_callback(ios[i], free_cb);
	}
	ck_assert_int_eq(io_submit(ctx, NR, ios), NR);
	run_until(ctx, NR);
	/* Compares addresses only: the iocbs themselves are gone. */
	for (int i = 0; i < NR; i++) {
		ck_assert_int_eq(calls_for(ios[i]), 1);
		ck_assert_int_eq(call_for(ios[i])->res, BLOCK);
	}
	ck_assert_int_eq(io_queue_run(ctx), 0);
	ck_assert_int_eq(nr_calls, NR);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	for (int i = 0; i < NR; i++)
		check_block(fd, (off_t)i * BLOCK, BLOCK, 0x21);
	close(fd);
	free(buf);
}
END_TEST

START_TEST(test_fsync_fdsync_callbacks)
{
	io_context_t ctx;
	struct iocb write_iocb, fsync_iocb, fdsync_iocb, *wp = &write_iocb;
	void *buf = aligned_buf(4 * BLOCK, 0x66);
	int fd = tmpfile_in("/var/tmp", 0, 0);

	setup_ctx(&ctx, 4);
	io_prep_pwrite(&write_iocb, fd, buf, 4 * BLOCK, 0);
	io_set_callback(&write_iocb, record_cb);
	ck_assert_int_eq(io_submit(ctx, 1, &wp), 1);
	ck_assert_int_eq(io_fsync(ctx, &fsync_iocb, record_cb, fd), 1);
	ck_assert_int_eq(io_fdsync(ctx, &fdsync_iocb, record_cb, fd), 1);
	ck_assert_int_eq(fsync_iocb.aio_lio_opcode, IO_CMD_FSYNC);
	ck_assert_int_eq(fdsync_iocb.aio_lio_opcode, IO_CMD_FDSYNC);
	run_until(ctx, 3);

	ck_assert_int_eq(calls_for(&write_iocb), 1);
	ck_assert_int_eq(calls_for(&fsync_iocb), 1);
	ck_assert_int_eq(calls_for(&fdsync_iocb), 1);
	ck_assert_int_eq(call_for(&write_iocb)->res, 4 * BLOCK);
	ck_assert_int_eq(call_for(&fsync_iocb)->res, 0);
	ck_assert_int_eq(call_for(&fsync_iocb)->res2, 0);
	ck_assert_int_eq(call_for(&fdsync_iocb)->res, 0);
	ck_assert_int_eq(call_for(&fdsync_iocb)->res2, 0);
	ck_assert_ptr_eq(call_for(&fsync_iocb)->ctx, ctx);
	check_block(fd, 0, 4 * BLOCK, 0x66);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(fd);
	free(buf);
}
END_TEST

START_TEST(test_wait_idle_returns_at_once)
{
	io_context_t ctx;
	struct timespec ts = { 2, 0 };
	double t0;

	setup_ctx(&ctx, 4);
	t0 = now_ms();
	ck_assert_int_eq(io_queue_wait(ctx, &ts), 0);
	/* Nothing in flight: no reason to sleep out the 2 s. */
	ck_assert_double_lt(now_ms() - t0, 1000);
	t0 = now_ms();
	ck_assert_int_eq(io_queue_wait(ctx, NULL), 0);
	ck_assert_double_lt(now_ms() - t0, 1000);
	ck_assert_int_eq(nr_calls, 0);
	ck_assert_int_eq(io_queue_release(ctx), 0);
}
END_TEST

START_TEST(test_wait_bad_ctx)
{
	struct timespec ts = { 0, 0 };

	ck_assert_int_eq(io_queue_wait(NULL, &ts), -EINVAL);
	ck_assert_int_eq(io_queue_wait((io_context_t)never_set_up, &ts), -EINVAL);
	ck_assert_int_eq(io_queue_wait((io_context_t)never_set_up, NULL), -EINVAL);
}
END_TEST

START_TEST(test_wait_does_not_consume)
{
	io_context_t ctx;
	struct iocb iocb, *p = &iocb;
	void *buf = aligned_buf(BLOCK, 0x44);
	int fd = tmpfile_in(NULL, 0, 0);
	struct timespec ts = { 2, 0 };

	setup_ctx(&ctx, 4);
	io_prep_pwrite(&iocb, fd, buf, BLOCK, 0);
	io_set_callback(&iocb, record_cb);
	ck_assert_int_eq(io_submit(ctx, 1, &p), 1);
	ck_assert_int_eq(io_queue_wait(ctx, &ts), 0);
	ck_assert_int_eq(io_queue_wait(ctx, &ts), 0);
	ck_assert_int_eq(nr_calls, 0);
	/* The event io_queue_wait saw is still there for the dispatcher. */
	ck_assert_int_eq(io_queue_run(ctx), 0);
	ck_assert_int_eq(nr_calls, 1);
	ck_assert_ptr_eq(calls[0].iocb, &iocb);
	ck_assert_int_eq(calls[0].res, BLOCK);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(fd);
	free(buf);
}
END_TEST

struct delayed_write {
	int fd;
	long delay_ms;
};

static void *write_later(void *arg)
{
	struct delayed_write *dw = arg;

	usleep((useconds_t)dw->delay_ms * 1000);
	return (void *)(intptr_t)write(dw->fd, "x", 1);
}

START_TEST(test_wait_until_completion)
{
	io_context_t ctx;
	struct iocb iocb, *p = &iocb;
	struct timespec ts = { 2, 0 };
	int pipefd[2];
	struct delayed_write dw;
	pthread_t thread;
	void *written;
	double t0, waited;

	ck_assert_int_eq(pipe(pipefd), 0);
	setup_ctx(&ctx, 4);
	io_prep_poll(&iocb, pipefd[0], POLLIN);
	io_set_callback(&iocb, record_cb);
	ck_assert_int_eq(io_submit(ctx, 1, &p), 1);
	dw = (struct delayed_write){ pipefd[1], 100 };
	t0 = now_ms();
	ck_assert_int_eq(pthread_create(&thread, NULL, write_later, &dw), 0);
	ck_assert_int_eq(io_queue_wait(ctx, &ts), 0);
	waited = now_ms() - t0;
	ck_assert_int_eq(nr_calls, 0);
	if (is_compat()) {
		/* It slept until the poll fired, and left the event in place. */
		ck_assert_msg(waited >= 99, "io_queue_wait returned after %.1f ms", waited);
		ck_assert_int_eq(io_queue_run(ctx), 0);
		ck_assert_int_eq(nr_calls, 1);
	} else {
		run_until(ctx, 1);
	}
	ck_assert_ptr_eq(calls[0].iocb, &iocb);
	ck_assert_int_ne(calls[0].res & POLLIN, 0);
	ck_assert_int_eq(pthread_join(thread, &written), 0);
	ck_assert_int_eq((intptr_t)written, 1);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

START_TEST(test_wait_times_out)
{
	io_context_t ctx;
	struct iocb iocb, *p = &iocb;
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	int pipefd[2];
	double t0, waited;

	ck_assert_int_eq(pipe(pipefd), 0);
	setup_ctx(&ctx, 4);
	io_prep_poll(&iocb, pipefd[0], POLLIN);
	io_set_callback(&iocb, record_cb);
	ck_assert_int_eq(io_submit(ctx, 1, &p), 1);
	t0 = now_ms();
	ck_assert_int_eq(io_queue_wait(ctx, &ts), 0);
	waited = now_ms() - t0;
	if (is_compat())
		ck_assert_msg(waited >= 49, "io_queue_wait returned after %.1f ms", waited);
	ck_assert_int_eq(io_queue_run(ctx), 0);
	ck_assert_int_eq(nr_calls, 0);

	ck_assert_int_eq(write(pipefd[1], "x", 1), 1);
	run_until(ctx, 1);
	ck_assert_int_eq(io_queue_release(ctx), 0);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queue");
	TCase *init = tcase_create("init");
	TCase *run = tcase_create("run");
	TCase *callbacks = tcase_create("callbacks");
	TCase *wait = tcase_create("wait");

	tcase_add_test(init, test_init_and_release);
	tcase_add_test(init, test_release_with_io_in_flight);
	suite_add_tcase(s, init);

	tcase_add_test(run, test_run_calls_each_once);
	tcase_add_test(run, test_run_dispatches_all_ready_in_one_call);
	tcase_add_test(run, test_run_bad_ctx);
	tcase_add_test(run, test_compat_queue_run_counts);
	suite_add_tcase(s, run);

	tcase_add_test(callbacks, test_callback_submits);
	tcase_add_test(callbacks, test_callback_frees_iocb);
	tcase_add_test(callbacks, test_fsync_fdsync_callbacks);
	suite_add_tcase(s, callbacks);

	tcase_add_test(wait, test_wait_idle_returns_at_once);
	tcase_add_test(wait, test_wait_bad_ctx);
	tcase_add_test(wait, test_wait_does_not_consume);
	tcase_add_test(wait, test_wait_until_completion);
	tcase_add_test(wait, test_wait_times_out);
	suite_add_tcase(s, wait);

	return run_suite(s, "queue");
}
