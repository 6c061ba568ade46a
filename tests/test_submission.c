/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Submissions the kernel does not take whole. Without
 * IORING_SETUP_SUBMIT_ALL (before 5.18) io_uring stops at an SQE it fails
 * at submission, posts that one's CQE and leaves the rest of the batch in
 * its queue. Whatever io_submit accepted must still complete, each iocb
 * once, with its own result.
 *
 * And contexts at their limit: many polls cancelled at once, events left
 * unreaped. io_submit answers at once (-EAGAIN at the limit, as the
 * kernel does) and every event arrives once. io_uring's CQ has room for
 * every CQE that can wait in it: on older kernels a CQ that overflowed
 * failed every submission until a reap.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/ioprio.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define IOCB_FLAG_IOPRIO (1 << 1)
#define BATCH 8
#define REFUSED 2     /* the iocb in the batch that asks for a real-time priority */
#define MAXEVENTS 256 /* more than 128 requests in flight: 632 on two CPUs */
#define MAX_POLLS 2048

/* The capabilities a real-time I/O priority needs, dropped or given back. */
static void rt_priority_allowed(bool allowed)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	const int caps[] = { CAP_SYS_ADMIN, CAP_SYS_NICE };

	ck_assert_int_eq(syscall(SYS_capget, &hdr, data), 0);
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		__u32 bit = 1u << (caps[i] % 32);
		struct __user_cap_data_struct *d = &data[caps[i] / 32];

		d->effective = allowed ? d->effective | (d->permitted & bit) : d->effective & ~bit;
	}
	ck_assert_int_eq(syscall(SYS_capset, &hdr, data), 0);
}

/*
 * A batch of reads, one of them with a priority class this thread may not
 * ask for: io_uring refuses that SQE at submission (native AIO refuses the
 * iocb in io_submit). On uring, as a kernel before 5.18 sets rings up, the
 * batch is accepted whole and the refusal is that iocb's event.
 */
START_TEST(batch_with_an_sqe_refused_at_submission)
{
	static struct iocb cbs[BATCH];
	struct iocb *list[BATCH];
	struct io_event ev[BATCH];
	char bufs[BATCH][512];
	bool set_env = !getenv("AIO_COMPAT_URING_EMULATE");
	/* Not tmpfs, whose reads would go to io-wq on uring. */
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR), seen = 0, accepted;
	io_context_t ctx = NULL;

	for (int i = 0; i < BATCH; i++) {
		memset(bufs[i], 'a' + i, sizeof(bufs[i]));
		ck_assert_int_eq(pwrite(fd, bufs[i], sizeof(bufs[i]), i * 512), 512);
		memset(bufs[i], 0, sizeof(bufs[i]));
		io_prep_pread(&cbs[i], fd, bufs[i], sizeof(bufs[i]), i * 512);
		list[i] = &cbs[i];
	}
	cbs[REFUSED].u.c.flags = IOCB_FLAG_IOPRIO;
	cbs[REFUSED].aio_reqprio = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0);
	if (set_env)
		setenv("AIO_COMPAT_URING_EMULATE", "5.10", 1);
	ck_assert_int_eq(io_setup(BATCH * 2, &ctx), 0);
	rt_priority_allowed(false);

	accepted = io_submit(ctx, BATCH, list);
	ck_assert_int_eq(accepted, ctx_is_uring(ctx) ? BATCH : REFUSED);
	ck_assert_int_eq(getevents_ms(ctx, accepted, accepted, ev, 2000), accepted);
	for (int i = 0; i < accepted; i++) {
		long k = ev[i].obj - cbs;

		ck_assert(k >= 0 && k < BATCH && !(seen & 1 << k));
		seen |= 1 << k;
		if (k == REFUSED) {
			ck_assert_int_eq((long)ev[i].res, -EPERM);
			continue;
		}
		ck_assert_int_eq((long)ev[i].res, 512);
		ck_assert_int_eq(bufs[k][0], 'a' + k);
		ck_assert_int_eq(bufs[k][511], 'a' + k);
	}
	if (accepted == REFUSED)
		ck_assert_int_eq(submit_one(ctx, &cbs[REFUSED]), -EPERM);
	expect_no_event(ctx, 20);

	rt_priority_allowed(true);
	ck_assert_int_eq(io_destroy(ctx), 0);
	if (set_env)
		unsetenv("AIO_COMPAT_URING_EMULATE");
	close(fd);
}
END_TEST

static struct iocb polls[MAX_POLLS];
static struct iocb *poll_list[MAX_POLLS];
static struct io_event events[MAX_POLLS];
static char seen[MAX_POLLS];

/* The CQ size of the process's only io_uring ring, from its fdinfo. */
static unsigned cq_entries(void)
{
	char path[64], link[64], line[128];
	unsigned mask = 0, rings = 0;
	FILE *f;

	for (int fd = 0; fd < 1024; fd++) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < 0)
			continue;
		link[len] = 0;
		if (strcmp(link, "anon_inode:[io_uring]"))
			continue;
		rings++;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		while (fgets(line, sizeof(line), f))
			sscanf(line, "CqMask: %x", &mask);
		fclose(f);
	}
	ck_assert_uint_eq(rings, 1);
	return mask + 1;
}

/* Polls on fd submitted one io_submit at a time until the limit: how many. */
static int polls_to_the_limit(io_context_t ctx, int fd, int first)
{
	int n = first, ret;

	for (;; n++) {
		ck_assert_int_lt(n, MAX_POLLS);
		io_prep_poll(&polls[n], fd, POLLIN);
		poll_list[n] = &polls[n];
		ret = submit_one(ctx, &polls[n]);
		if (ret != 1)
			break;
	}
	ck_assert_int_eq(ret, -EAGAIN);
	return n - first;
}

/* n events, each poll's once, with res 0 if cancelled, else POLLIN. */
static void reap_polls(io_context_t ctx, int n, int cancelled_from)
{
	memset(seen, 0, sizeof(seen));
	reap_n(ctx, n, events, 5000);
	for (int i = 0; i < n; i++) {
		long k = events[i].obj - polls;

		ck_assert(k >= 0 && k < n && !seen[k]);
		seen[k] = 1;
		if (k >= cancelled_from)
			ck_assert_int_eq((long)events[i].res, 0);
		else
			ck_assert_int_eq((long)events[i].res & POLLIN, POLLIN);
	}
	expect_no_event(ctx, 20);
}

/*
 * At the limit, half the polls fire and their events stay unreaped while
 * the other half are cancelled, each once; io_submit answers -EAGAIN while
 * the events hold their slots, and takes requests again once they are
 * reaped. The native kernel counts only what its own ring holds, which the
 * library empties into the program's: there the bound is the ring's size.
 */
START_TEST(polls_cancelled_at_the_limit)
{
	int fired[2], waiting[2], limit, half, extra;
	io_context_t ctx = NULL;

	/* The kernel hands out request slots per CPU: on one the count is exact. */
	pin_to_cpu0();
	limit = kernel_inflight_limit(MAXEVENTS);
	ck_assert_int_gt(limit, 128);
	ck_assert_int_eq(pipe(fired), 0);
	ck_assert_int_eq(pipe(waiting), 0);
	ck_assert_int_eq(io_setup(MAXEVENTS, &ctx), 0);
	if (ctx_is_uring(ctx))
		ck_assert_uint_ge(cq_entries(), 2u * limit);

	half = limit / 2;
	for (int i = 0; i < half; i++) {
		io_prep_poll(&polls[i], fired[0], POLLIN);
		poll_list[i] = &polls[i];
	}
	ck_assert_int_eq(io_submit(ctx, half, poll_list), half);
	ck_assert_int_eq(polls_to_the_limit(ctx, waiting[0], half), limit - half);
	ck_assert_int_eq(write(fired[1], "x", 1), 1);
	for (int i = half; i < limit; i++)
		ck_assert_int_eq(io_cancel(ctx, &polls[i], NULL), -EINPROGRESS);
	for (int i = half; i < limit; i++)
		ck_assert_int_eq(io_cancel(ctx, &polls[i], NULL), -EINVAL);
	extra = polls_to_the_limit(ctx, waiting[0], limit);
	ck_assert_int_le(limit + extra, ((struct aio_ring *)ctx)->nr - 1);
	if (ctx_is_uring(ctx))
		ck_assert_int_eq(extra, 0);
	for (int i = limit; i < limit + extra; i++)
		ck_assert_int_eq(io_cancel(ctx, &polls[i], NULL), -EINPROGRESS);

	reap_polls(ctx, limit + extra, half);
	ck_assert_int_eq(polls_to_the_limit(ctx, waiting[0], 0), limit);
	ck_assert_int_eq(io_destroy(ctx), 0);
	for (int i = 0; i < 2; i++) {
		close(fired[i]);
		close(waiting[i]);
	}
}
END_TEST

/* io_destroy cancels every poll at the limit at once, and returns. */
START_TEST(destroy_cancels_polls_at_the_limit)
{
	io_context_t ctx = NULL;
	int pfd[2], limit;

	pin_to_cpu0();
	limit = kernel_inflight_limit(MAXEVENTS);
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(io_setup(MAXEVENTS, &ctx), 0);
	ck_assert_int_eq(polls_to_the_limit(ctx, pfd[0], 0), limit);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(pfd[0]);
	close(pfd[1]);
}
END_TEST

static Suite *submission_suite(void)
{
	Suite *s = suite_create("submission");
	TCase *partial = tcase_create("partial");
	TCase *full = tcase_create("full");

	tcase_add_test(partial, batch_with_an_sqe_refused_at_submission);
	tcase_add_test(full, polls_cancelled_at_the_limit);
	tcase_add_test(full, destroy_cancels_polls_at_the_limit);
	suite_add_tcase(s, partial);
	suite_add_tcase(s, full);
	return s;
}

int main(void)
{
	return run_suite(submission_suite(), "submission");
}
