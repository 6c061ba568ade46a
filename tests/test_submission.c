/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Submissions the kernel does not take whole. Without
 * IORING_SETUP_SUBMIT_ALL (before 5.18) io_uring stops at an SQE it fails
 * at submission, posts that one's CQE and leaves the rest of the batch in
 * its queue. Whatever io_submit accepted must still complete, each iocb
 * once, with its own result.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/ioprio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define IOCB_FLAG_IOPRIO (1 << 1)
#define BATCH 8
#define REFUSED 2 /* the iocb in the batch that asks for a real-time priority */

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
	int fd = tmpfile_in(NULL, 0, O_RDWR), seen = 0, accepted;
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

static Suite *submission_suite(void)
{
	Suite *s = suite_create("submission");
	TCase *partial = tcase_create("partial");

	tcase_add_test(partial, batch_with_an_sqe_refused_at_submission);
	suite_add_tcase(s, partial);
	return s;
}

int main(void)
{
	return run_suite(submission_suite(), "submission");
}
