/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* fork(): a context belongs to the process that set it up. */
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* libaio.so.1 exports it (LIBAIO_0.4) but <libaio.h> leaves it commented out. */
int io_queue_wait(io_context_t ctx, struct timespec *timeout);

#define BLOCK 512
#define MAX_RESULTS 16

/* What the child measured, sent back to the parent through a pipe. */
struct child_report {
	int nr;
	const char *names[MAX_RESULTS];
	long values[MAX_RESULTS];
};

struct parent_ctx {
	io_context_t ctx;
	int fd;
	void *buf;
	int pipefd[2];
	struct iocb poll_iocb;
};

static void report(struct child_report *r, const char *name, long value)
{
	if (r->nr < MAX_RESULTS) {
		r->names[r->nr] = name;
		r->values[r->nr] = value;
		r->nr++;
	}
}

/*
 * Runs fn in a child and returns what it reported. The child never calls
 * ck_assert: it only measures. The names are string literals, whose
 * addresses the child shares with the parent.
 */
static void in_child(void (*fn)(struct parent_ctx *, struct child_report *), struct parent_ctx *p,
		     struct child_report *r)
{
	int pipefd[2], status;
	size_t got = 0;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pipefd[0]);
		fn(p, r);
		_exit(write(pipefd[1], r, sizeof(*r)) == sizeof(*r) ? 0 : 1);
	}
	close(pipefd[1]);
	while (got < sizeof(*r)) {
		ssize_t n = read(pipefd[0], (char *)r + got, sizeof(*r) - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(pipefd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child did not exit cleanly (status 0x%x)", status);
	ck_assert_uint_eq(got, sizeof(*r));
}

static void expect(const struct child_report *r, const char *name, long want)
{
	for (int i = 0; i < r->nr; i++) {
		if (strcmp(r->names[i], name) == 0) {
			ck_assert_msg(r->values[i] == want,
				      "in the child, %s returned %ld, not %ld", name, r->values[i],
				      want);
			return;
		}
	}
	ck_abort_msg("the child did not report %s", name);
}

/* A context with a poll in flight that only the parent can complete. */
static void parent_setup(struct parent_ctx *p)
{
	struct iocb *ios[1] = { &p->poll_iocb };

	p->ctx = NULL;
	ck_assert_int_eq(io_setup(8, &p->ctx), 0);
	p->fd = tmpfile_in(NULL, 0, 0);
	p->buf = aligned_buf(BLOCK, 0x5c);
	ck_assert_int_eq(pipe(p->pipefd), 0);
	io_prep_poll(&p->poll_iocb, p->pipefd[0], POLLIN);
	ck_assert_int_eq(io_submit(p->ctx, 1, ios), 1);
}

/* The parent's context still works: the old poll fires, new I/O runs. */
static void parent_still_works(struct parent_ctx *p)
{
	struct iocb iocb, *ios[1] = { &iocb };
	struct io_event ev;
	unsigned char back[BLOCK];

	ck_assert_int_eq(write(p->pipefd[1], "x", 1), 1);
	ck_assert_int_eq(getevents_ms(p->ctx, 1, 1, &ev, 2000), 1);
	ck_assert_ptr_eq(ev.obj, &p->poll_iocb);
	ck_assert_int_ne((long)ev.res & POLLIN, 0);

	io_prep_pwrite(&iocb, p->fd, p->buf, BLOCK, 0);
	ck_assert_int_eq(io_submit(p->ctx, 1, ios), 1);
	ck_assert_int_eq(getevents_ms(p->ctx, 1, 1, &ev, 2000), 1);
	ck_assert_ptr_eq(ev.obj, &iocb);
	ck_assert_int_eq((long)ev.res, BLOCK);
	ck_assert_int_eq(pread(p->fd, back, BLOCK, 0), BLOCK);
	ck_assert_int_eq(memcmp(back, p->buf, BLOCK), 0);

	ck_assert_int_eq(io_destroy(p->ctx), 0);
	close(p->pipefd[0]);
	close(p->pipefd[1]);
	close(p->fd);
	free(p->buf);
}

static void use_parent_ctx(struct parent_ctx *p, struct child_report *r)
{
	struct iocb iocb, *ios[1] = { &iocb };
	struct io_event ev[4];
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	io_prep_pwrite(&iocb, p->fd, p->buf, BLOCK, 0);
	report(r, "io_submit", io_submit(p->ctx, 1, ios));
	report(r, "io_getevents (10 ms)", io_getevents(p->ctx, 1, 4, ev, &ts));
	report(r, "io_pgetevents (10 ms)", io_pgetevents(p->ctx, 1, 4, ev, &ts, NULL));
	report(r, "io_cancel", io_cancel(p->ctx, &p->poll_iocb, ev));
	report(r, "io_getevents (no timeout)", io_getevents(p->ctx, 1, 4, ev, NULL));
	report(r, "io_destroy", io_destroy(p->ctx));
	report(r, "io_queue_release", io_queue_release(p->ctx));
}

START_TEST(test_child_calls_fail)
{
	struct parent_ctx p;
	struct child_report r;

	parent_setup(&p);
	in_child(use_parent_ctx, &p, &r);
	expect(&r, "io_submit", -EINVAL);
	expect(&r, "io_getevents (10 ms)", -EINVAL);
	/* valgrind does not know io_pgetevents, which the real libaio hands it (-ENOSYS). */
	if (UNDER_VALGRIND && !aio_compat_backend)
		test_skip(NULL, "test_child_calls_fail: io_pgetevents on libaio, under valgrind "
				"(which does not know it)");
	else
		expect(&r, "io_pgetevents (10 ms)", -EINVAL);
	expect(&r, "io_cancel", -EINVAL);
	expect(&r, "io_getevents (no timeout)", -EINVAL);
	expect(&r, "io_destroy", -EINVAL);
	expect(&r, "io_queue_release", -EINVAL);
	parent_still_works(&p);
}
END_TEST

static int callbacks_run;

static void count_cb(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	(void)ctx;
	(void)iocb;
	(void)res2;
	if (res == BLOCK)
		callbacks_run++;
}

static void reap_parent_events(struct parent_ctx *p, struct child_report *r)
{
	struct io_event ev[4];
	struct timespec zero = { 0, 0 };

	report(r, "io_queue_run", io_queue_run(p->ctx));
	report(r, "io_getevents (zero timeout, event ready)",
	       io_getevents(p->ctx, 0, 4, ev, &zero));
	report(r, "callbacks run", callbacks_run);
}

START_TEST(test_child_cannot_take_parent_events)
{
	struct parent_ctx p;
	struct child_report r;
	struct iocb iocb, *ios[1] = { &iocb };
	struct timespec ts = { 2, 0 };

	parent_setup(&p);
	callbacks_run = 0;
	io_prep_pwrite(&iocb, p.fd, p.buf, BLOCK, 0);
	io_set_callback(&iocb, count_cb);
	ck_assert_int_eq(io_submit(p.ctx, 1, ios), 1);
	/* The write has completed and waits in the ring when the child starts. */
	ck_assert_int_eq(io_queue_wait(p.ctx, &ts), 0);
	in_child(reap_parent_events, &p, &r);
	expect(&r, "io_queue_run", -EINVAL);
	expect(&r, "io_getevents (zero timeout, event ready)", -EINVAL);
	expect(&r, "callbacks run", 0);

	/* The completion is still the parent's, delivered once. */
	ck_assert_int_eq(io_queue_run(p.ctx), 0);
	ck_assert_int_eq(callbacks_run, 1);
	ck_assert_int_eq(io_queue_run(p.ctx), 0);
	ck_assert_int_eq(callbacks_run, 1);
	parent_still_works(&p);
}
END_TEST

static void own_ctx(struct parent_ctx *p, struct child_report *r)
{
	io_context_t ctx = NULL, qctx = NULL;
	struct iocb iocb, *ios[1] = { &iocb };
	struct io_event ev;

	report(r, "io_setup", io_setup(4, &ctx));
	io_prep_pwrite(&iocb, p->fd, p->buf, BLOCK, BLOCK);
	report(r, "io_submit", io_submit(ctx, 1, ios));
	report(r, "io_getevents", getevents_ms(ctx, 1, 1, &ev, 2000));
	report(r, "event matches iocb", ev.obj == &iocb);
	report(r, "event res", (long)ev.res);
	report(r, "io_destroy", io_destroy(ctx));

	callbacks_run = 0;
	report(r, "io_queue_init", io_queue_init(4, &qctx));
	io_prep_pwrite(&iocb, p->fd, p->buf, BLOCK, 2 * BLOCK);
	io_set_callback(&iocb, count_cb);
	report(r, "io_submit on io_queue_init's", io_submit(qctx, 1, ios));
	for (int i = 0; i < 2000 && callbacks_run == 0; i++) {
		int ret = io_queue_run(qctx);

		if (ret != 0) {
			report(r, "io_queue_run", ret);
			break;
		}
		usleep(1000);
	}
	report(r, "callbacks run", callbacks_run);
	report(r, "io_queue_release", io_queue_release(qctx));
}

START_TEST(test_child_sets_up_its_own)
{
	struct parent_ctx p;
	struct child_report r;
	unsigned char back[BLOCK];

	/*
	 * ThreadSanitizer refuses to start threads in the child of a threaded
	 * process. AddressSanitizer's allocator is not fork-safe while other
	 * threads use it: the library's helper, started in the child, was seen
	 * to hang on its lock (as in test_posix's child_after_fork).
	 */
	if ((UNDER_TSAN || UNDER_ASAN) && aio_compat_backend) {
		test_skip(NULL,
			  "test_child_sets_up_its_own: the library's threads in a child "
			  "after fork with threads, under %s",
			  UNDER_ASAN ? "AddressSanitizer" : "ThreadSanitizer");
		return;
	}
	parent_setup(&p);
	in_child(own_ctx, &p, &r);
	expect(&r, "io_setup", 0);
	expect(&r, "io_submit", 1);
	expect(&r, "io_getevents", 1);
	expect(&r, "event matches iocb", 1);
	expect(&r, "event res", BLOCK);
	expect(&r, "io_destroy", 0);
	expect(&r, "io_queue_init", 0);
	expect(&r, "io_submit on io_queue_init's", 1);
	expect(&r, "callbacks run", 1);
	expect(&r, "io_queue_release", 0);
	/* What the child wrote through its own contexts is on the file. */
	ck_assert_int_eq(pread(p.fd, back, BLOCK, 2 * BLOCK), BLOCK);
	ck_assert_int_eq(memcmp(back, p.buf, BLOCK), 0);
	parent_still_works(&p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fork");
	TCase *tc = tcase_create("fork");

	tcase_add_test(tc, test_child_calls_fail);
	tcase_add_test(tc, test_child_cannot_take_parent_events);
	tcase_add_test(tc, test_child_sets_up_its_own);
	suite_add_tcase(s, tc);
	return run_suite(s, "fork");
}
