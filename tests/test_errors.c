/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bad input to io_submit, io_getevents and io_cancel: the kernel's error
 * codes, partial submission, the in-flight limit. Every iocb that was
 * accepted must complete exactly once: the fixture checks that nothing is
 * left over.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static io_context_t ctx;
static int fd; /* a 64 KiB file on tmpfs */
static char buf[4096];

static void ctx_up(void)
{
	ctx = NULL;
	ck_assert_int_eq(io_setup(32, &ctx), 0);
	fd = tmpfile_in(NULL, 65536, O_RDWR);
}

static void ctx_down(void)
{
	expect_no_event(ctx, 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fd);
}

static void prep_read(struct iocb *cb)
{
	io_prep_pread(cb, fd, buf, 512, 0);
}

START_TEST(submit_nr_negative)
{
	struct iocb cb, *list[1] = { &cb };

	/* The real libaio hands them to the kernel, through valgrind's io_submit wrapper. */
	if (UNDER_VALGRIND && !aio_compat_backend) {
		test_skip(NULL, "submit_nr_negative: a negative count to libaio, under valgrind "
				"(its io_submit wrapper reads them and crashes)");
		return;
	}
	prep_read(&cb);
	ck_assert_int_eq(io_submit(ctx, -1, list), -EINVAL);
	ck_assert_int_eq(io_submit(ctx, LONG_MIN, list), -EINVAL);
}
END_TEST

START_TEST(submit_nr_zero)
{
	ck_assert_int_eq(io_submit(ctx, 0, NULL), 0);
	ck_assert_int_eq(io_submit(ctx, 0, KERNEL_PTR), 0);
}
END_TEST

START_TEST(submit_bad_array)
{
	/* The real libaio hands them to the kernel, through valgrind's io_submit wrapper. */
	if (UNDER_VALGRIND && !aio_compat_backend) {
		test_skip(NULL,
			  "submit_bad_array: arrays at NULL and in the kernel half to libaio, "
			  "under valgrind (its io_submit wrapper reads them and crashes)");
		return;
	}
	ck_assert_int_eq(io_submit(ctx, 1, NULL), -EFAULT);
	ck_assert_int_eq(io_submit(ctx, 1, KERNEL_PTR), -EFAULT);
}
END_TEST

/*
 * The fault guard is off under ThreadSanitizer, whose runtime keeps
 * SIGSEGV to itself: a case that needs it skips there.
 */
static bool guard_off(const char *name)
{
	if (!UNDER_TSAN)
		return false;
	test_skip(NULL, "%s: the fault guard, off under ThreadSanitizer", name);
	return true;
}

/*
 * valgrind's io_submit wrapper reads each iocb before the kernel can
 * refuse it, and dies of one at NULL, in the kernel half or unmapped.
 */
#define VALGRIND_READS_IOCBS "under valgrind (its io_submit wrapper reads them and crashes)"

START_TEST(submit_bad_iocb_first)
{
	struct iocb *list[1] = { NULL };

	if (UNDER_VALGRIND) {
		test_skip(NULL, "submit_bad_iocb_first: iocbs at NULL and in the kernel "
				"half, " VALGRIND_READS_IOCBS);
		return;
	}
	ck_assert_int_eq(io_submit(ctx, 1, list), -EFAULT);
	list[0] = KERNEL_PTR;
	ck_assert_int_eq(io_submit(ctx, 1, list), -EFAULT);
}
END_TEST

/*
 * Memory that ends at a page with no access: an iocb there, one running
 * into it, the array there, and a slot of the array there after a good
 * one. The kernel answers -EFAULT for the first bad one, or the count
 * before it. (PROT_NONE rather than unmapped: ASan's memcpy reads the
 * shadow of the source first, which it drops for unmapped memory.)
 */
START_TEST(submit_unmapped_iocbs)
{
	long page = sysconf(_SC_PAGESIZE);
	char *mem =
	    mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iocb cb, *list[2], **edge, many[11], *many_list[11];
	struct io_event ev[10];

	if (guard_off("submit_unmapped_iocbs"))
		return;
	if (UNDER_VALGRIND) {
		test_skip(NULL, "submit_unmapped_iocbs: unmapped iocbs, " VALGRIND_READS_IOCBS);
		return;
	}
	ck_assert_ptr_ne(mem, MAP_FAILED);
	ck_assert_int_eq(mprotect(mem + page, page, PROT_NONE), 0);
	list[0] = (struct iocb *)(mem + page);
	ck_assert_int_eq(io_submit(ctx, 1, list), -EFAULT);
	list[0] = (struct iocb *)(mem + page - 16);
	ck_assert_int_eq(io_submit(ctx, 1, list), -EFAULT);
	ck_assert_int_eq(io_submit(ctx, 1, (struct iocb **)(mem + page)), -EFAULT);

	prep_read(&cb);
	list[0] = &cb;
	list[1] = (struct iocb *)(mem + page);
	ck_assert_int_eq(io_submit(ctx, 2, list), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 512);

	edge = (struct iocb **)(mem + page) - 1;
	edge[0] = &cb;
	ck_assert_int_eq(io_submit(ctx, 2, edge), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 512);

	/* Past the first few, which the library copies together. */
	for (int i = 0; i < 11; i++) {
		prep_read(&many[i]);
		many_list[i] = &many[i];
	}
	many_list[9] = (struct iocb *)(mem + page);
	ck_assert_int_eq(io_submit(ctx, 11, many_list), 9);
	reap_n(ctx, 9, ev, 2000);
	edge = (struct iocb **)(mem + page) - 10;
	memcpy(edge, many_list, 9 * sizeof(*edge));
	edge[9] = &many[10];
	ck_assert_int_eq(io_submit(ctx, 12, edge), 10);
	reap_n(ctx, 10, ev, 2000);
	munmap(mem, 2 * page);
}
END_TEST

/* The iocbs before a bad one are submitted; the count says how many. */
START_TEST(submit_partial)
{
	struct iocb cbs[2], bad, *list[3] = { &cbs[0], &cbs[1], NULL };
	struct io_event ev[2];

	prep_read(&cbs[0]);
	prep_read(&cbs[1]);
	if (UNDER_VALGRIND) {
		test_skip(
		    NULL,
		    "submit_partial: iocbs at NULL and in the kernel half, " VALGRIND_READS_IOCBS);
		/* It reads those after a refused one too. */
		list[2] = &cbs[1];
	} else {
		ck_assert_int_eq(io_submit(ctx, 3, list), 2);
		reap_n(ctx, 2, ev, 2000);
		ck_assert_ptr_ne(ev[0].obj, ev[1].obj);

		list[2] = KERNEL_PTR;
		ck_assert_int_eq(io_submit(ctx, 3, list), 2);
		reap_n(ctx, 2, ev, 2000);
	}

	prep_read(&bad);
	bad.aio_lio_opcode = 99;
	list[1] = &bad;
	ck_assert_int_eq(io_submit(ctx, 3, list), 1);
	ck_assert_int_eq(reap_one(ctx, &cbs[0]), 512);

	prep_read(&bad);
	bad.aio_fildes = -1;
	ck_assert_int_eq(io_submit(ctx, 3, list), 1);
	ck_assert_int_eq(reap_one(ctx, &cbs[0]), 512);
}
END_TEST

START_TEST(submit_kernel_buffer)
{
	struct iocb cb;

	io_prep_pread(&cb, fd, KERNEL_PTR, 512, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
	io_prep_pwrite(&cb, fd, KERNEL_PTR, 512, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
	/* A buffer that ends in the kernel half. */
	io_prep_pread(&cb, fd, (char *)KERNEL_PTR - 256, 512, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
}
END_TEST

START_TEST(submit_kernel_iovec)
{
	struct iovec v[2] = { { buf, 512 }, { KERNEL_PTR, 512 } };
	struct iocb cb;

	/*
	 * valgrind's io_submit wrapper reads the iovec array before the
	 * kernel can refuse it, and dies of one in the kernel half or at NULL.
	 */
	if (UNDER_VALGRIND) {
		test_skip(NULL, "submit_kernel_iovec: iovec arrays at NULL or in the kernel half, "
				"under valgrind (its io_submit wrapper reads them and crashes)");
	} else {
		io_prep_preadv(&cb, fd, KERNEL_PTR, 1, 0);
		ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
		io_prep_pwritev(&cb, fd, KERNEL_PTR, 1, 0);
		ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
		io_prep_preadv(&cb, fd, NULL, 1, 0);
		ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
	}
	io_prep_preadv(&cb, fd, v, 2, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
	io_prep_pwritev(&cb, fd, v, 2, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EFAULT);
}
END_TEST

START_TEST(submit_unknown_opcode)
{
	static const short ops[] = { 4, IO_CMD_NOOP, 9, 99, SHRT_MAX, -1 };
	struct iocb cb;

	for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		prep_read(&cb);
		cb.aio_lio_opcode = ops[i];
		ck_assert_msg(submit_one(ctx, &cb) == -EINVAL, "opcode %d", ops[i]);
	}
}
END_TEST

START_TEST(submit_bad_fd)
{
	struct iocb cb;

	io_prep_pread(&cb, -1, buf, 512, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EBADF);
	io_prep_pwrite(&cb, INT_MIN, buf, 512, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EBADF);
	io_prep_fsync(&cb, -1);
	ck_assert_int_eq(submit_one(ctx, &cb), -EBADF);
	io_prep_poll(&cb, -1, POLLIN);
	ck_assert_int_eq(submit_one(ctx, &cb), -EBADF);
}
END_TEST

START_TEST(submit_closed_fd)
{
	int closed = dup(fd);
	struct iocb cb;

	ck_assert_int_ge(closed, 0);
	close(closed);
	io_prep_pread(&cb, closed, buf, 512, 0);
	expect_error_at_submit_or_event(ctx, &cb, -EBADF);
	io_prep_pwrite(&cb, closed, buf, 512, 0);
	expect_error_at_submit_or_event(ctx, &cb, -EBADF);
	io_prep_fsync(&cb, closed);
	expect_error_at_submit_or_event(ctx, &cb, -EBADF);
}
END_TEST

START_TEST(submit_wrong_access_mode)
{
	char path[64];
	int ro, wo;
	struct iocb cb;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY);
	wo = open(path, O_WRONLY);
	ck_assert_int_ge(ro, 0);
	ck_assert_int_ge(wo, 0);
	io_prep_pwrite(&cb, ro, buf, 512, 0);
	expect_error_at_submit_or_event(ctx, &cb, -EBADF);
	io_prep_pread(&cb, wo, buf, 512, 0);
	expect_error_at_submit_or_event(ctx, &cb, -EBADF);
	close(ro);
	close(wo);
}
END_TEST

/* The native kernel's own answer for an iocb it refuses. */
static int kernel_refusal(struct iocb *cb)
{
	unsigned long kctx = 0;
	struct iocb copy = *cb, *one = &copy;
	int err;

	ck_assert_int_eq(syscall(__NR_io_setup, 1, &kctx), 0);
	ck_assert_int_eq(syscall(__NR_io_submit, kctx, 1L, &one), -1);
	err = -errno;
	syscall(__NR_io_destroy, kctx);
	return err;
}

/*
 * An iocb with several faults is refused for the one the kernel checks
 * first, some of which depend on the open file: its mode, whether it
 * takes RWF_NOWAIT (tmpfs does not, on some kernels).
 */
START_TEST(submit_first_fault_named)
{
	char path[64];
	int ro, wo, opath, dir, closed = dup(fd);
	struct iocb cbs[7];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY);
	wo = open(path, O_WRONLY);
	opath = open(path, O_PATH);
	dir = open("/", O_RDONLY | O_DIRECTORY);
	ck_assert(ro >= 0 && wo >= 0 && opath >= 0 && dir >= 0 && closed >= 0);
	close(closed);
	io_prep_pwrite(&cbs[0], ro, buf, 512, -1);
	io_prep_pread(&cbs[1], wo, (void *)0xffff800000000000UL, 512, 0);
	io_prep_pread(&cbs[2], opath, buf, 512, -1);
	io_prep_pread(&cbs[3], closed, buf, 512, -1);
	io_prep_pread(&cbs[4], dir, buf, 512, -1);
	io_prep_pread(&cbs[5], fd, buf, 512, -1);
	cbs[5].aio_rw_flags = RWF_NOWAIT;
	io_prep_fsync(&cbs[6], closed);
	cbs[6].u.c.nbytes = 1;
	for (int i = 0; i < 7; i++)
		ck_assert_int_eq(submit_one(ctx, &cbs[i]), kernel_refusal(&cbs[i]));
	/* Where only the file is wrong, io_uring learns it when it runs. */
	io_prep_pwrite(&cbs[0], ro, buf, 512, 0);
	cbs[0].aio_rw_flags = RWF_NOWAIT;
	expect_error_at_submit_or_event(ctx, &cbs[0], kernel_refusal(&cbs[0]));
	close(ro);
	close(wo);
	close(opath);
	close(dir);
}
END_TEST

START_TEST(submit_negative_offset)
{
	struct iovec v = { buf, 512 };
	struct iocb cb;

	/* io_uring would read at the file position for -1: never here. */
	io_prep_pread(&cb, fd, buf, 512, -1);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_pwrite(&cb, fd, buf, 512, -4096);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_preadv(&cb, fd, &v, 1, LLONG_MIN);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	/* An offset whose end overflows. */
	io_prep_pread(&cb, fd, buf, 512, LLONG_MAX);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
}
END_TEST

START_TEST(submit_huge_nbytes)
{
	struct iocb cb;

	io_prep_pread(&cb, fd, buf, (size_t)1 << 63, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_pwrite(&cb, fd, buf, (size_t)-1, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	/*
	 * For vectors nbytes is the count: -1 has the top bit set too.
	 * valgrind's io_submit wrapper walks that many iovecs, and crashes.
	 */
	if (UNDER_VALGRIND) {
		test_skip(NULL, "submit_huge_nbytes: an iovec count of -1, "
				"under valgrind (its io_submit wrapper reads them and crashes)");
		return;
	}
	io_prep_preadv(&cb, fd, (struct iovec *)buf, -1, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
}
END_TEST

START_TEST(submit_iovec_count)
{
	struct iovec *v = calloc(1025, sizeof(*v));
	struct iocb cb;

	for (int i = 0; i < 1025; i++)
		v[i] = (struct iovec){ buf + i % 64, 1 };
	io_prep_preadv(&cb, fd, v, 1025, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_pwritev(&cb, fd, v, 1025, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	/* UIO_MAXIOV itself is fine. */
	io_prep_preadv(&cb, fd, v, 1024, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 1024);
	free(v);
}
END_TEST

START_TEST(submit_fsync_with_fields)
{
	struct iocb cb;

	io_prep_fsync(&cb, fd);
	cb.u.c.buf = buf;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_fsync(&cb, fd);
	cb.u.c.offset = 4096;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_fdsync(&cb, fd);
	cb.u.c.nbytes = 1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_fdsync(&cb, fd);
	cb.aio_rw_flags = RWF_DSYNC;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
}
END_TEST

START_TEST(submit_reserved_field)
{
	int pfd[2];
	struct iocb cb;

	ck_assert_int_eq(pipe(pfd), 0);
	prep_read(&cb);
	cb.u.c.__pad3 = 1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_pwrite(&cb, fd, buf, 512, 0);
	cb.u.c.__pad3 = -1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_fsync(&cb, fd);
	cb.u.c.__pad3 = 1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_poll(&cb, pfd[1], POLLOUT);
	cb.u.c.__pad3 = 1;
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	close(pfd[0]);
	close(pfd[1]);
}
END_TEST

START_TEST(direct_misaligned)
{
	int dfd = tmpfile_in("/var/tmp", 65536, O_RDWR | O_DIRECT);
	char *ab = aligned_buf(8192, 0);
	struct iocb cb;

	/* Real blocks: a hole would be read as zeroes, aligned or not. */
	ck_assert_int_eq(pwrite(dfd, ab, 8192, 0), 8192);
	/* The kernel takes these and fails them in the event. */
	io_prep_pread(&cb, dfd, ab + 1, 4096, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), -EINVAL);
	io_prep_pread(&cb, dfd, ab, 4095, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), -EINVAL);
	io_prep_pread(&cb, dfd, ab, 4096, 1);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), -EINVAL);
	io_prep_pwrite(&cb, dfd, ab + 1, 4096, 0);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), -EINVAL);
	free(ab);
	close(dfd);
}
END_TEST

START_TEST(submit_unknown_ctx)
{
	long on_stack[512] = { 0 };
	struct iocb cb, *list[1] = { &cb };

	prep_read(&cb);
	ck_assert_int_eq(io_submit(NULL, 1, list), -EINVAL);
	ck_assert_int_eq(io_submit((io_context_t)0x1000, 1, list), -EINVAL);
	ck_assert_int_eq(io_submit((io_context_t)on_stack, 1, list), -EINVAL);
	ck_assert_int_eq(io_submit(KERNEL_PTR, 1, list), -EINVAL);
	/* The context is looked up before nr = 0 returns and before the array is read. */
	ck_assert_int_eq(io_submit((io_context_t)0x1000, 0, list), -EINVAL);
	ck_assert_int_eq(io_submit((io_context_t)0x1000, 1, NULL), -EINVAL);
}
END_TEST

/* Polls on a pipe nobody writes to stay in flight until the test writes. */
#define MAX_TRIES 400

START_TEST(too_many_in_flight)
{
	static struct iocb cbs[MAX_TRIES];
	static struct io_event ev[MAX_TRIES];
	int pfd[2], limit, n = 0, ret;
	io_context_t c = NULL;
	char *seen;

	/*
	 * The kernel hands out request slots to each CPU in batches: on one
	 * CPU the count is exact (120 for io_setup(32) on two CPUs).
	 */
	pin_to_cpu0();
	limit = kernel_inflight_limit(32);
	ck_assert_int_lt(limit, MAX_TRIES);
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(io_setup(32, &c), 0);
	for (; n < MAX_TRIES; n++) {
		io_prep_poll(&cbs[n], pfd[0], POLLIN);
		ret = submit_one(c, &cbs[n]);
		if (ret != 1)
			break;
	}
	ck_assert_int_eq(ret, -EAGAIN);
	ck_assert_int_eq(n, limit);
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	reap_n(c, n, ev, 2000);
	seen = calloc(n, 1);
	for (int i = 0; i < n; i++) {
		long k = ev[i].obj - cbs;

		ck_assert(k >= 0 && k < n && !seen[k]);
		seen[k] = 1;
		ck_assert_int_eq((long)ev[i].res & POLLIN, POLLIN);
	}
	expect_no_event(c, 20);
	free(seen);
	ck_assert_int_eq(io_destroy(c), 0);
	close(pfd[0]);
	close(pfd[1]);
}
END_TEST

START_TEST(batch_crossing_the_limit)
{
	static struct iocb cbs[MAX_TRIES];
	static struct iocb *list[MAX_TRIES];
	static struct io_event ev[MAX_TRIES];
	int pfd[2], limit;
	io_context_t c = NULL;

	pin_to_cpu0();
	limit = kernel_inflight_limit(32);
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(io_setup(32, &c), 0);
	for (int i = 0; i < limit + 10; i++) {
		io_prep_poll(&cbs[i], pfd[0], POLLIN);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(c, limit + 10, list), limit);
	ck_assert_int_eq(io_submit(c, 10, list + limit), -EAGAIN);
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	reap_n(c, limit, ev, 2000);
	expect_no_event(c, 20);
	ck_assert_int_eq(io_destroy(c), 0);
	close(pfd[0]);
	close(pfd[1]);
}
END_TEST

START_TEST(getevents_bad_counts)
{
	struct io_event ev[2];

	/* A real timeout: with none, libaio answers an empty ring without the kernel. */
	ck_assert_int_eq(getevents_ms(ctx, 2, 1, ev, 10), -EINVAL);
	ck_assert_int_eq(getevents_ms(ctx, -1, 1, ev, 10), -EINVAL);
	ck_assert_int_eq(getevents_ms(ctx, 0, -1, ev, 10), -EINVAL);
	ck_assert_int_eq(io_getevents(ctx, 2, 1, ev, NULL), -EINVAL);
	ck_assert_int_eq(io_getevents(ctx, LONG_MIN, 1, ev, NULL), -EINVAL);
}
END_TEST

START_TEST(getevents_bad_events_pointer)
{
	struct iocb cb;

	prep_read(&cb);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, NULL, 1000), -EFAULT);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, KERNEL_PTR, 1000), -EFAULT);
	/* The event was not lost. */
	ck_assert_int_eq(reap_one(ctx, &cb), 512);
}
END_TEST

/* A page the process cannot write: none (PROT_NONE) or read-only. */
static void *page_without_write(int prot)
{
	void *p = mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

/*
 * Mapped addresses the kernel cannot use: an events array without access
 * or read-only, an iovec array and a timeout without access. The kernel
 * answers -EFAULT and keeps the event. The native backend passes most of
 * them to the kernel; the uring backend reads and writes them itself.
 */
START_TEST(unusable_pointers_answer_efault)
{
	struct io_event *none, *ro;
	struct iocb cb, *list[1] = { &cb };

	if (guard_off("unusable_pointers_answer_efault"))
		return;
	none = page_without_write(PROT_NONE);
	ro = page_without_write(PROT_READ);
	prep_read(&cb);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, none, 1000), -EFAULT);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, ro, 1000), -EFAULT);
	/* libaio reads the timeout itself (its empty-ring check): it faults. */
	if (strcmp(test_backend(), "libaio"))
		ck_assert_int_eq(
		    io_getevents(ctx, 1, 1, &(struct io_event){ 0 }, (struct timespec *)none),
		    -EFAULT);
	/* The event was not lost. */
	ck_assert_int_eq(reap_one(ctx, &cb), 512);
	if (UNDER_VALGRIND) {
		test_skip(NULL, "unusable_pointers_answer_efault: an iovec array without access, "
				"under valgrind (its io_submit wrapper reads it and crashes)");
	} else {
		io_prep_preadv(&cb, fd, (struct iovec *)none, 1, 0);
		ck_assert_int_eq(io_submit(ctx, 1, list), -EFAULT);
	}
	munmap(none, 4096);
	munmap(ro, 4096);
}
END_TEST

/* Two pages, the second without access: its address, and the array's. */
static char *page_then_hole(void)
{
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(mprotect(p + 4096, 4096, PROT_NONE), 0);
	return p + 4096;
}

/*
 * io_submit's iocb array or an iocb the kernel cannot read: -EFAULT for
 * the first, else the count of those before it, which complete. Behind a
 * write and a sync too, which the fsync rule reads.
 */
START_TEST(unmapped_iocbs_answer_efault)
{
	struct iocb rd, wr, sync, *bad, *list[3] = { &rd };
	struct iocb **edge;
	struct io_event ev[2];
	char *hole;

	if (guard_off("unmapped_iocbs_answer_efault"))
		return;
	if (UNDER_VALGRIND) {
		test_skip(NULL, "unmapped_iocbs_answer_efault: iocbs and arrays without "
				"access, " VALGRIND_READS_IOCBS);
		return;
	}
	hole = page_then_hole();
	bad = (struct iocb *)hole;
	list[1] = bad;
	edge = (struct iocb **)hole - 2;
	prep_read(&rd);
	io_prep_pwrite(&wr, fd, buf, 512, 0);
	io_prep_fsync(&sync, fd);
	ck_assert_int_eq(io_submit(ctx, 1, (struct iocb **)hole), -EFAULT);
	ck_assert_int_eq(io_submit(ctx, 1, &bad), -EFAULT);
	ck_assert_int_eq(io_submit(ctx, 2, list), 1);
	ck_assert_int_eq(reap_one(ctx, &rd), 512);
	list[0] = &wr;
	ck_assert_int_eq(io_submit(ctx, 2, list), 1);
	ck_assert_int_eq(reap_one(ctx, &wr), 512);
	/* The array's third entry is in the hole. */
	edge[0] = &wr;
	edge[1] = &sync;
	ck_assert_int_eq(io_submit(ctx, 3, edge), 2);
	reap_n(ctx, 2, ev, 5000);
	ck_assert_int_eq(ev[0].res + ev[1].res, 512);
	munmap(hole - 4096, 8192);
}
END_TEST

START_TEST(getevents_unknown_ctx)
{
	long on_stack[512] = { 0 };
	struct io_event ev;
	io_context_t gone = NULL;

	ck_assert_int_eq(getevents_ms(NULL, 0, 1, &ev, 10), -EINVAL);
	ck_assert_int_eq(getevents_ms((io_context_t)on_stack, 0, 1, &ev, 10), -EINVAL);
	/* libaio itself reads the ring a handle points at: only ours looks it up. */
	if (!aio_compat_backend)
		return;
	ck_assert_int_eq(getevents_ms((io_context_t)0x1000, 0, 1, &ev, 10), -EINVAL);
	ck_assert_int_eq(getevents_ms(KERNEL_PTR, 0, 1, &ev, 10), -EINVAL);
	ck_assert_int_eq(io_setup(1, &gone), 0);
	ck_assert_int_eq(io_destroy(gone), 0);
	ck_assert_int_eq(getevents_ms(gone, 0, 1, &ev, 10), -EINVAL);
	ck_assert_int_eq(getevents_ms(gone, 0, 1, &ev, 0), -EINVAL);
}
END_TEST

START_TEST(cancel_bad_input)
{
	long on_stack[512] = { 0 };
	struct iocb cb;
	struct io_event ev;

	prep_read(&cb);
	ck_assert_int_eq(io_cancel((io_context_t)0x1000, &cb, &ev), -EINVAL);
	ck_assert_int_eq(io_cancel((io_context_t)on_stack, &cb, &ev), -EINVAL);
	ck_assert_int_eq(io_cancel(NULL, &cb, &ev), -EINVAL);
	ck_assert_int_eq(io_cancel(ctx, NULL, &ev), -EFAULT);
	ck_assert_int_eq(io_cancel(ctx, KERNEL_PTR, &ev), -EFAULT);
	/* The iocb is read before the context is looked up. */
	ck_assert_int_eq(io_cancel((io_context_t)0x1000, NULL, &ev), -EFAULT);
	/* Never submitted, and submitted but finished. */
	ck_assert_int_eq(io_cancel(ctx, &cb, &ev), -EINVAL);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 512);
	ck_assert_int_eq(io_cancel(ctx, &cb, &ev), -EINVAL);
}
END_TEST

/*
 * The program's own faults, in a process of their own that has made no
 * io_setup before (this program, run again): what the library's guard
 * does not catch must end the process as it would have, or reach the
 * program's handler. Each scenario first checks that the guard answers
 * -EFAULT for an unmapped iocb array, then faults.
 */
static char *own_fault_addr;

static void own_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	_exit(sig == SIGSEGV && si->si_addr == own_fault_addr ? 42 : 6);
}

static int fault_child(const char *scenario)
{
	struct sigaction sa = { .sa_sigaction = own_handler, .sa_flags = SA_SIGINFO };
	char *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	io_context_t c = NULL;

	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	own_fault_addr = bad;
	if (!strcmp(scenario, "own-handler"))
		sigaction(SIGSEGV, &sa, NULL);
	if (strcmp(scenario, "no-setup")) {
		if (io_setup(1, &c))
			return 3;
		if (io_submit(c, 1, (struct iocb **)bad) != -EFAULT)
			return 4;
	}
	if (!strcmp(scenario, "sent"))
		raise(SIGSEGV);
	else
		*(volatile char *)bad = 1;
	return 5;
}

/* Under valgrind /proc/self/exe is valgrind's own tool, not this program. */
#define VALGRIND_REEXEC "this program run again through /proc/self/exe, under valgrind"

static int run_fault_child(const char *scenario)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (!pid) {
		/* A sanitizer's report of the fault is expected: not the suite's. */
		dup2(open("/dev/null", O_WRONLY), 2);
		execl("/proc/self/exe", "test_errors", "fault-child", scenario, (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

/*
 * Killed by SIGSEGV as without the library (a sanitizer's own handler
 * ends it its way: the same as in a process that made no io_setup).
 */
START_TEST(program_faults_still_kill)
{
	int plain;

	if (guard_off("program_faults_still_kill"))
		return;
	if (UNDER_VALGRIND) {
		test_skip(NULL, "program_faults_still_kill: " VALGRIND_REEXEC);
		return;
	}
	plain = run_fault_child("no-setup");
	if (!UNDER_ASAN)
		ck_assert(WIFSIGNALED(plain) && WTERMSIG(plain) == SIGSEGV);
	ck_assert_int_eq(run_fault_child("fault"), plain);
	ck_assert_int_eq(run_fault_child("sent"), run_fault_child("no-setup"));
}
END_TEST

/* A handler the program installed before its first io_setup gets its faults. */
START_TEST(program_handler_still_called)
{
	int status;

	if (guard_off("program_handler_still_called"))
		return;
	if (UNDER_VALGRIND) {
		test_skip(NULL, "program_handler_still_called: " VALGRIND_REEXEC);
		return;
	}
	status = run_fault_child("own-handler");
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 42);
}
END_TEST

static Suite *errors_suite(void)
{
	Suite *s = suite_create("errors");
	TCase *submit = tcase_create("submit");
	TCase *limit = tcase_create("limit");
	TCase *reap = tcase_create("getevents-cancel");
	TCase *all[] = { submit, limit, reap };

	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		tcase_add_checked_fixture(all[i], ctx_up, ctx_down);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(submit, submit_nr_negative);
	tcase_add_test(submit, submit_nr_zero);
	tcase_add_test(submit, submit_bad_array);
	tcase_add_test(submit, submit_bad_iocb_first);
	tcase_add_test(submit, submit_unmapped_iocbs);
	tcase_add_test(submit, submit_partial);
	tcase_add_test(submit, submit_kernel_buffer);
	tcase_add_test(submit, submit_kernel_iovec);
	tcase_add_test(submit, submit_unknown_opcode);
	tcase_add_test(submit, submit_bad_fd);
	tcase_add_test(submit, submit_closed_fd);
	tcase_add_test(submit, submit_wrong_access_mode);
	tcase_add_test(submit, submit_first_fault_named);
	tcase_add_test(submit, submit_negative_offset);
	tcase_add_test(submit, submit_huge_nbytes);
	tcase_add_test(submit, submit_iovec_count);
	tcase_add_test(submit, submit_fsync_with_fields);
	tcase_add_test(submit, submit_reserved_field);
	tcase_add_test(submit, direct_misaligned);
	tcase_add_test(submit, submit_unknown_ctx);
	tcase_add_test(limit, too_many_in_flight);
	tcase_add_test(limit, batch_crossing_the_limit);
	tcase_add_test(reap, getevents_bad_counts);
	tcase_add_test(reap, getevents_bad_events_pointer);
	tcase_add_test(reap, unusable_pointers_answer_efault);
	tcase_add_test(submit, unmapped_iocbs_answer_efault);
	tcase_add_test(submit, program_faults_still_kill);
	tcase_add_test(submit, program_handler_still_called);
	tcase_add_test(reap, getevents_unknown_ctx);
	tcase_add_test(reap, cancel_bad_input);
	return s;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "fault-child"))
		return fault_child(argv[2]);
	return run_suite(errors_suite(), "errors");
}
