/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Every opcode, the RWF_* flags and IOCB_FLAG_IOPRIO, and the events they give. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/ioprio.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define IOCB_FLAG_IOPRIO (1 << 1)
#define BLOCK 4096

/* Newer than some <linux/fs.h>; the kernel that runs the tests judges them. */
#ifndef RWF_ATOMIC
#define RWF_ATOMIC 0x00000040
#endif
#ifndef RWF_NOSIGNAL
#define RWF_NOSIGNAL 0x00000100
#endif

static io_context_t ctx;

static void ctx_up(void)
{
	ctx = NULL;
	ck_assert_int_eq(io_setup(64, &ctx), 0);
}

static void ctx_down(void)
{
	expect_no_event(ctx, 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
}

/* Submits cb alone and checks its event field by field; returns res. */
static long run_one(struct iocb *cb, void *cookie)
{
	struct io_event ev;

	cb->data = cookie;
	ck_assert_int_eq(submit_one(ctx, cb), 1);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, &ev, 2000), 1);
	ck_assert_ptr_eq(ev.data, cookie);
	ck_assert_ptr_eq(ev.obj, cb);
	ck_assert_int_eq((long)ev.res2, 0);
	return (long)ev.res;
}

static void fill(char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(seed + i * 7 + i / 251);
}

/* Write then read back through PWRITE/PREAD on fd (buffered or O_DIRECT). */
static void write_read_back(int fd)
{
	char *out = aligned_buf(4 * BLOCK, 0);
	char *in = aligned_buf(4 * BLOCK, 0xee);
	struct iocb cb;

	fill(out, 4 * BLOCK, 3);
	io_prep_pwrite(&cb, fd, out, 4 * BLOCK, BLOCK);
	ck_assert_int_eq(run_one(&cb, (void *)0x1001), 4 * BLOCK);
	io_prep_pread(&cb, fd, in, 4 * BLOCK, BLOCK);
	ck_assert_int_eq(run_one(&cb, (void *)0x1002), 4 * BLOCK);
	ck_assert_mem_eq(in, out, 4 * BLOCK);
	/* And the kernel agrees about what is in the file. */
	memset(in, 0, 4 * BLOCK);
	ck_assert_int_eq(pread(fd, in, 2 * BLOCK, 2 * BLOCK), 2 * BLOCK);
	ck_assert_mem_eq(in, out + BLOCK, 2 * BLOCK);
	free(out);
	free(in);
}

/* PWRITEV of three pieces, PREADV back in a different split. */
static void writev_readv_back(int fd)
{
	char *out = aligned_buf(6 * BLOCK, 0);
	char *in = aligned_buf(6 * BLOCK, 0xee);
	struct iovec wv[3] = { { out, BLOCK },
			       { out + BLOCK, 3 * BLOCK },
			       { out + 4 * BLOCK, 2 * BLOCK } };
	struct iovec rv[3] = { { in, 2 * BLOCK },
			       { in + 2 * BLOCK, BLOCK },
			       { in + 3 * BLOCK, 3 * BLOCK } };
	struct iocb cb;

	fill(out, 6 * BLOCK, 11);
	io_prep_pwritev(&cb, fd, wv, 3, 2 * BLOCK);
	ck_assert_int_eq(run_one(&cb, (void *)0x2001), 6 * BLOCK);
	io_prep_preadv(&cb, fd, rv, 3, 2 * BLOCK);
	ck_assert_int_eq(run_one(&cb, (void *)0x2002), 6 * BLOCK);
	ck_assert_mem_eq(in, out, 6 * BLOCK);
	free(out);
	free(in);
}

START_TEST(pwrite_pread_buffered)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);

	write_read_back(fd);
	close(fd);
}
END_TEST

START_TEST(pwrite_pread_direct)
{
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);

	write_read_back(fd);
	close(fd);
}
END_TEST

START_TEST(pwritev_preadv_buffered)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);

	writev_readv_back(fd);
	close(fd);
}
END_TEST

START_TEST(pwritev_preadv_direct)
{
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);

	writev_readv_back(fd);
	close(fd);
}
END_TEST

START_TEST(small_unaligned_buffered)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	char out[7] = "abcdefg", in[7] = { 0 };
	struct iocb cb;

	io_prep_pwrite(&cb, fd, out, sizeof(out), 3);
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(out));
	io_prep_pread(&cb, fd, in, sizeof(in), 3);
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(in));
	ck_assert_mem_eq(in, out, sizeof(out));
	close(fd);
}
END_TEST

START_TEST(batch_of_mixed_opcodes)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	int pfd[2];
	char a[512], b[512];
	struct iovec v = { b, sizeof(b) };
	struct iocb cbs[4], *list[4] = { &cbs[0], &cbs[1], &cbs[2], &cbs[3] };
	struct io_event ev[4];
	int seen = 0;

	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 2);
	io_prep_pwrite(&cbs[0], fd, a, sizeof(a), 0);
	io_prep_pwritev(&cbs[1], fd, &v, 1, sizeof(a));
	io_prep_fdsync(&cbs[2], fd);
	io_prep_poll(&cbs[3], pfd[0], POLLIN);
	for (int i = 0; i < 4; i++)
		cbs[i].data = (void *)(long)(i + 1);
	ck_assert_int_eq(io_submit(ctx, 4, list), 4);
	reap_n(ctx, 4, ev, 2000);
	for (int i = 0; i < 4; i++) {
		int k = (int)(ev[i].obj - cbs);

		ck_assert_int_ge(k, 0);
		ck_assert_int_lt(k, 4);
		ck_assert_ptr_eq(ev[i].data, (void *)(long)(k + 1));
		ck_assert_int_eq((long)ev[i].res, k < 2 ? 512 : k == 2 ? 0 : POLLIN);
		ck_assert_int_eq((long)ev[i].res2, 0);
		seen |= 1 << k;
	}
	ck_assert_int_eq(seen, 0xf);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
}
END_TEST

START_TEST(fsync_and_fdsync)
{
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR);
	char buf[BLOCK];
	struct iocb cb;

	fill(buf, sizeof(buf), 5);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), sizeof(buf));
	io_prep_fsync(&cb, fd);
	ck_assert_int_eq(run_one(&cb, (void *)0x3001), 0);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), BLOCK), sizeof(buf));
	io_prep_fdsync(&cb, fd);
	ck_assert_int_eq(run_one(&cb, (void *)0x3002), 0);
	/* tmpfs has nothing to sync and says so with success. */
	close(fd);
	fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	io_prep_fsync(&cb, fd);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	io_prep_fdsync(&cb, fd);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	close(fd);
}
END_TEST

START_TEST(poll_pipe_ready_and_not_yet)
{
	int pfd[2];
	struct iocb cb;
	long res;

	ck_assert_int_eq(pipe(pfd), 0);
	io_prep_poll(&cb, pfd[0], POLLIN);
	cb.data = (void *)0x4001;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	expect_no_event(ctx, 30);
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	/*
	 * Woken by the write, native AIO reports the pipe's whole wake mask
	 * (POLLIN | POLLRDNORM), or only the requested bits when it had to poll
	 * the file again from a worker.
	 */
	res = reap_one(ctx, &cb);
	ck_assert_msg(res == POLLIN || res == (POLLIN | POLLRDNORM), "res %ld", res);
	/* Already readable: completes at once with the requested bits. */
	io_prep_poll(&cb, pfd[0], POLLIN);
	ck_assert_int_eq(run_one(&cb, (void *)0x4002), POLLIN);
	io_prep_poll(&cb, pfd[1], POLLOUT);
	ck_assert_int_eq(run_one(&cb, (void *)0x4003), POLLOUT);
	close(pfd[0]);
	close(pfd[1]);
}
END_TEST

START_TEST(poll_eventfd)
{
	int efd = eventfd(0, EFD_CLOEXEC);
	struct iocb cb;

	ck_assert_int_ge(efd, 0);
	io_prep_poll(&cb, efd, POLLIN);
	cb.data = (void *)0x4101;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	expect_no_event(ctx, 30);
	ck_assert_int_eq(eventfd_write(efd, 1), 0);
	ck_assert_int_eq(reap_one(ctx, &cb), POLLIN);
	close(efd);
}
END_TEST

/* Reads of a 1000-byte file at and beyond its end. */
START_TEST(read_past_eof_buffered)
{
	int fd = tmpfile_in(NULL, 1000, O_RDWR);
	char buf[512];
	struct iocb cb;

	io_prep_pread(&cb, fd, buf, sizeof(buf), 900);
	ck_assert_int_eq(run_one(&cb, NULL), 100);
	io_prep_pread(&cb, fd, buf, sizeof(buf), 1000);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	io_prep_pread(&cb, fd, buf, sizeof(buf), 1 << 20);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	close(fd);
}
END_TEST

START_TEST(read_past_eof_direct)
{
	int fd = tmpfile_in("/var/tmp", 2 * BLOCK, O_RDWR | O_DIRECT);
	char *buf = aligned_buf(4 * BLOCK, 0);
	struct iovec v[2] = { { buf, BLOCK }, { buf + BLOCK, 2 * BLOCK } };
	struct iocb cb;

	io_prep_pread(&cb, fd, buf, 4 * BLOCK, BLOCK);
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	io_prep_preadv(&cb, fd, v, 2, 0);
	ck_assert_int_eq(run_one(&cb, NULL), 2 * BLOCK);
	io_prep_pread(&cb, fd, buf, BLOCK, 2 * BLOCK);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	free(buf);
	close(fd);
}
END_TEST

START_TEST(zero_length_io)
{
	int fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	int dfd = tmpfile_in("/var/tmp", BLOCK, O_RDWR | O_DIRECT);
	char *buf = aligned_buf(BLOCK, 0);
	struct iovec v = { buf, 0 };
	struct iocb cb;
	struct stat st;

	io_prep_pread(&cb, fd, buf, 0, 0);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	io_prep_pwrite(&cb, fd, buf, 0, 2 * BLOCK);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	io_prep_preadv(&cb, fd, &v, 0, 0);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	io_prep_pwritev(&cb, fd, &v, 1, 0);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	io_prep_pread(&cb, dfd, buf, 0, 0);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	io_prep_pwrite(&cb, dfd, buf, 0, 0);
	ck_assert_int_eq(run_one(&cb, NULL), 0);
	/* A zero-length write past the end does not grow the file. */
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, BLOCK);
	free(buf);
	close(fd);
	close(dfd);
}
END_TEST

START_TEST(read_into_unmapped_buffer)
{
	int fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	struct iocb cb;

	/* A user-half address passes io_submit; the copy fails in the event. */
	io_prep_pread(&cb, fd, (void *)0x1000, 512, 0);
	ck_assert_int_eq(run_one(&cb, NULL), -EFAULT);
	close(fd);
}
END_TEST

START_TEST(rw_nowait_tmpfs)
{
	int fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	char buf[512] = { 0 }; /* written: its bytes are defined */
	struct iocb cb;

	/* tmpfs cannot promise not to block: the kernel refuses RWF_NOWAIT. */
	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	cb.aio_rw_flags = RWF_NOWAIT;
	expect_error_at_submit_or_event(ctx, &cb, -EOPNOTSUPP);
	io_prep_pwrite(&cb, fd, buf, sizeof(buf), 0);
	cb.aio_rw_flags = RWF_NOWAIT;
	expect_error_at_submit_or_event(ctx, &cb, -EOPNOTSUPP);
	close(fd);
}
END_TEST

START_TEST(rw_nowait_direct_read)
{
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);
	char *out = aligned_buf(BLOCK, 0x5a), *in = aligned_buf(BLOCK, 0);
	struct iocb cb;

	ck_assert_int_eq(pwrite(fd, out, BLOCK, 0), BLOCK);
	io_prep_pread(&cb, fd, in, BLOCK, 0);
	cb.aio_rw_flags = RWF_NOWAIT;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	ck_assert_mem_eq(in, out, BLOCK);
	free(out);
	free(in);
	close(fd);
}
END_TEST

START_TEST(rw_hipri_is_ignored)
{
	int fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	int dfd = tmpfile_in("/var/tmp", BLOCK, O_RDWR | O_DIRECT);
	char *buf = aligned_buf(BLOCK, 0x11);
	struct iovec v = { buf, BLOCK };
	struct iocb cb;

	/* Native AIO drops RWF_HIPRI: nobody polls for its completions. */
	io_prep_pwrite(&cb, fd, buf, BLOCK, 0);
	cb.aio_rw_flags = RWF_HIPRI;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	io_prep_preadv2(&cb, fd, &v, 1, 0, RWF_HIPRI);
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	io_prep_pwrite(&cb, dfd, buf, BLOCK, 0);
	cb.aio_rw_flags = RWF_HIPRI;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	io_prep_pread(&cb, dfd, buf, BLOCK, 0);
	cb.aio_rw_flags = RWF_HIPRI;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	free(buf);
	close(fd);
	close(dfd);
}
END_TEST

START_TEST(rw_dsync_and_sync)
{
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR);
	int dfd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);
	char *out = aligned_buf(BLOCK, 0), *in = aligned_buf(BLOCK, 0);
	struct iovec v = { out, BLOCK };
	struct iocb cb;

	fill(out, BLOCK, 9);
	io_prep_pwrite(&cb, fd, out, BLOCK, 0);
	cb.aio_rw_flags = RWF_DSYNC;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	io_prep_pwritev2(&cb, fd, &v, 1, BLOCK, RWF_SYNC);
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	io_prep_pwrite(&cb, dfd, out, BLOCK, 0);
	cb.aio_rw_flags = RWF_SYNC;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	io_prep_pwrite(&cb, dfd, out, BLOCK, BLOCK);
	cb.aio_rw_flags = RWF_DSYNC;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	ck_assert_int_eq(pread(fd, in, BLOCK, BLOCK), BLOCK);
	ck_assert_mem_eq(in, out, BLOCK);
	ck_assert_int_eq(pread(dfd, in, BLOCK, BLOCK), BLOCK);
	ck_assert_mem_eq(in, out, BLOCK);
	/* A read with a sync flag is a plain read. */
	io_prep_pread(&cb, fd, in, BLOCK, 0);
	cb.aio_rw_flags = RWF_SYNC | RWF_DSYNC;
	ck_assert_int_eq(run_one(&cb, NULL), BLOCK);
	free(out);
	free(in);
	close(fd);
	close(dfd);
}
END_TEST

START_TEST(rw_append)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	char head[BLOCK], tail[512], in[512];
	struct iovec v = { tail, sizeof(tail) };
	struct iocb cb;
	struct stat st;

	fill(head, sizeof(head), 1);
	fill(tail, sizeof(tail), 77);
	ck_assert_int_eq(pwrite(fd, head, sizeof(head), 0), sizeof(head));
	/* RWF_APPEND writes at the end of the file whatever the offset says. */
	io_prep_pwrite(&cb, fd, tail, sizeof(tail), 0);
	cb.aio_rw_flags = RWF_APPEND;
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(tail));
	io_prep_pwritev2(&cb, fd, &v, 1, 100, RWF_APPEND);
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(tail));
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, sizeof(head) + 2 * sizeof(tail));
	ck_assert_int_eq(pread(fd, in, sizeof(in), 0), sizeof(in));
	ck_assert_mem_eq(in, head, sizeof(in));
	ck_assert_int_eq(pread(fd, in, sizeof(in), sizeof(head)), sizeof(in));
	ck_assert_mem_eq(in, tail, sizeof(in));
	ck_assert_int_eq(pread(fd, in, sizeof(in), sizeof(head) + sizeof(tail)), sizeof(in));
	ck_assert_mem_eq(in, tail, sizeof(in));
	/* On a read it means nothing. */
	io_prep_pread(&cb, fd, in, sizeof(in), 0);
	cb.aio_rw_flags = RWF_APPEND;
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(in));
	close(fd);
}
END_TEST

START_TEST(rw_unknown_flag)
{
	int fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	char buf[512] = { 0 }; /* written: its bytes are defined */
	struct iocb cb;

	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	cb.aio_rw_flags = 0x40000000;
	ck_assert_int_eq(submit_one(ctx, &cb), -EOPNOTSUPP);
	io_prep_pwrite(&cb, fd, buf, sizeof(buf), 0);
	cb.aio_rw_flags = 0x40000000;
	ck_assert_int_eq(submit_one(ctx, &cb), -EOPNOTSUPP);
	close(fd);
}
END_TEST

START_TEST(ioprio_flag)
{
	int fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	char buf[512] = { 0 }; /* written: its bytes are defined */
	struct iocb cb;

	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	cb.u.c.flags = IOCB_FLAG_IOPRIO;
	cb.aio_reqprio = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 4);
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(buf));
	io_prep_pwrite(&cb, fd, buf, sizeof(buf), 0);
	cb.u.c.flags = IOCB_FLAG_IOPRIO;
	cb.aio_reqprio = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0);
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(buf));
	if (geteuid() == 0) {
		io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
		cb.u.c.flags = IOCB_FLAG_IOPRIO;
		cb.aio_reqprio = IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0);
		ck_assert_int_eq(run_one(&cb, NULL), sizeof(buf));
	}
	/* A class the kernel does not know. */
	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	cb.u.c.flags = IOCB_FLAG_IOPRIO;
	cb.aio_reqprio = IOPRIO_PRIO_VALUE(7, 4);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	/* Without the flag aio_reqprio is not looked at. */
	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	cb.aio_reqprio = IOPRIO_PRIO_VALUE(7, 4);
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(buf));
	close(fd);
}
END_TEST

/* What native AIO makes of cb on a context of its own: the refusal, or the event's res. */
static void kernel_answers(const struct iocb *cb, int *ret, long *res)
{
	unsigned long kctx = 0;
	struct iocb copy = *cb, *one = &copy;
	struct timespec ts = { 2, 0 };
	struct io_event ev;

	ck_assert_int_eq(syscall(SYS_io_setup, 1, &kctx), 0);
	*ret = (int)syscall(SYS_io_submit, kctx, 1L, &one);
	if (*ret < 0)
		*ret = -errno;
	if (*ret == 1) {
		ck_assert_int_eq(syscall(SYS_io_getevents, kctx, 1L, 1L, &ev, &ts), 1);
		*res = (long)ev.res;
	}
	ck_assert_int_eq(syscall(SYS_io_destroy, kctx), 0);
}

/* The library must answer cb as native AIO does, at submission or in the event. */
static void judged_as_kernel(struct iocb *cb, const char *what)
{
	long expected_res = 0, res;
	int expected, ret;

	kernel_answers(cb, &expected, &expected_res);
	ret = submit_one(ctx, cb);
	ck_assert_msg(ret == expected, "%s: io_submit %d, the kernel's %d", what, ret, expected);
	if (ret != 1)
		return;
	res = reap_one(ctx, cb);
	ck_assert_msg(res == expected_res, "%s: res %ld, the kernel's %ld", what, res,
		      expected_res);
}

enum judged_file {
	REGULAR,
	READ_ONLY,
	DIRECTORY,
	EVENTFD,
	PROC_MEM,
	PROC_PAGEMAP,
	PROC_ENVIRON,
	PATH_ONLY,
};

static const struct judged_case {
	const char *what;
	int opcode;
	enum judged_file file;
	int rw_flags;
} judged_cases[] = {
	{ "read with RWF_NOSIGNAL", IO_CMD_PREAD, REGULAR, RWF_NOSIGNAL },
	{ "write with RWF_NOSIGNAL", IO_CMD_PWRITEV, REGULAR, RWF_NOSIGNAL },
	{ "read with a bit no kernel has", IO_CMD_PREAD, REGULAR, 0x40000000 },
	{ "write with RWF_APPEND | RWF_NOAPPEND", IO_CMD_PWRITE, REGULAR,
	  RWF_APPEND | RWF_NOAPPEND },
	{ "read with RWF_ATOMIC", IO_CMD_PREAD, REGULAR, RWF_ATOMIC },
	{ "read of a directory", IO_CMD_PREAD, DIRECTORY, 0 },
	{ "readv of a directory", IO_CMD_PREADV, DIRECTORY, 0 },
	{ "write to an eventfd", IO_CMD_PWRITE, EVENTFD, 0 },
	{ "read of /proc/self/mem", IO_CMD_PREAD, PROC_MEM, 0 },
	{ "read of /proc/self/pagemap", IO_CMD_PREAD, PROC_PAGEMAP, 0 },
	{ "read of /proc/self/environ", IO_CMD_PREAD, PROC_ENVIRON, 0 },
	{ "read of an O_PATH fd", IO_CMD_PREAD, PATH_ONLY, 0 },
	{ "fsync of an O_PATH fd", IO_CMD_FSYNC, PATH_ONLY, 0 },
	{ "poll of an O_PATH fd", IO_CMD_POLL, PATH_ONLY, 0 },
	{ "write to a file open for reading", IO_CMD_PWRITE, READ_ONLY, 0 },
	{ "read with RWF_NOWAIT of a directory", IO_CMD_PREAD, DIRECTORY, RWF_NOWAIT },
};

static int judged_open(int fd, enum judged_file file)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	switch (file) {
	case REGULAR:
		return dup(fd);
	case READ_ONLY:
		return open(path, O_RDONLY);
	case DIRECTORY:
		return open("/", O_RDONLY | O_DIRECTORY);
	case EVENTFD:
		return eventfd(0, EFD_NONBLOCK);
	case PROC_MEM:
		return open("/proc/self/mem", O_RDONLY);
	case PROC_PAGEMAP:
		return open("/proc/self/pagemap", O_RDONLY);
	case PROC_ENVIRON:
		return open("/proc/self/environ", O_RDONLY);
	case PATH_ONLY:
		return open(path, O_PATH);
	}
	return -1;
}

/*
 * Files and flags that native AIO refuses at submission and io_uring only
 * when the request runs, or not at all; and flags newer than some
 * libraries know. Each twice: what the library remembers of a file must
 * not change the second answer.
 */
START_TEST(files_and_flags_judged_as_kernel)
{
	const struct judged_case *c = &judged_cases[_i];
	int file = tmpfile_in(NULL, BLOCK, O_RDWR);
	int fd = judged_open(file, c->file);
	static char buf[BLOCK];
	uint64_t one = 1;
	struct iovec v = { buf, 8 };
	struct iocb cb;

	ck_assert_int_ge(fd, 0);
	memcpy(buf, &one, sizeof(one));
	for (int round = 0; round < 2; round++) {
		switch (c->opcode) {
		case IO_CMD_PREAD:
			io_prep_pread(&cb, fd, buf, 8, 0);
			break;
		case IO_CMD_PWRITE:
			io_prep_pwrite(&cb, fd, buf, 8, 0);
			break;
		case IO_CMD_PREADV:
			io_prep_preadv(&cb, fd, &v, 1, 0);
			break;
		case IO_CMD_PWRITEV:
			io_prep_pwritev(&cb, fd, &v, 1, 0);
			break;
		case IO_CMD_FSYNC:
			io_prep_fsync(&cb, fd);
			break;
		default:
			io_prep_poll(&cb, fd, POLLIN);
			break;
		}
		cb.aio_rw_flags = c->rw_flags;
		judged_as_kernel(&cb, c->what);
	}
	close(fd);
	close(file);
}
END_TEST

/*
 * What the library remembers of an fd goes with the number: reopened on a
 * directory, its first read may go to io_uring, which answers in the
 * event (-EISDIR); that event sends the next to native AIO, which refuses
 * it at submission, as it refuses the first on the native backend.
 */
START_TEST(fd_number_reopened_on_a_directory)
{
	int fd = tmpfile_in(NULL, BLOCK, O_RDWR);
	int dir = open("/", O_RDONLY | O_DIRECTORY);
	char buf[8];
	struct iocb cb;
	int expected, ret;
	long res = 0;

	ck_assert_int_ge(dir, 0);
	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	ck_assert_int_eq(run_one(&cb, NULL), sizeof(buf));
	ck_assert_int_eq(dup2(dir, fd), fd);
	io_prep_pread(&cb, fd, buf, sizeof(buf), 0);
	kernel_answers(&cb, &expected, &res);
	ck_assert_int_eq(expected, -EINVAL);
	ret = submit_one(ctx, &cb);
	if (ctx_is_uring(ctx) && ret == 1)
		ck_assert_int_eq(reap_one(ctx, &cb), -EISDIR);
	else
		ck_assert_int_eq(ret, expected);
	ck_assert_int_eq(submit_one(ctx, &cb), expected);
	close(dir);
	close(fd);
}
END_TEST

static Suite *opcodes_suite(void)
{
	Suite *s = suite_create("opcodes");
	TCase *rw = tcase_create("read-write");
	TCase *other = tcase_create("sync-poll");
	TCase *edges = tcase_create("edges");
	TCase *flags = tcase_create("flags");
	TCase *all[] = { rw, other, edges, flags };

	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		tcase_add_checked_fixture(all[i], ctx_up, ctx_down);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(rw, pwrite_pread_buffered);
	tcase_add_test(rw, pwrite_pread_direct);
	tcase_add_test(rw, pwritev_preadv_buffered);
	tcase_add_test(rw, pwritev_preadv_direct);
	tcase_add_test(rw, small_unaligned_buffered);
	tcase_add_test(rw, batch_of_mixed_opcodes);
	tcase_add_test(other, fsync_and_fdsync);
	tcase_add_test(other, poll_pipe_ready_and_not_yet);
	tcase_add_test(other, poll_eventfd);
	tcase_add_test(edges, read_past_eof_buffered);
	tcase_add_test(edges, read_past_eof_direct);
	tcase_add_test(edges, zero_length_io);
	tcase_add_test(edges, read_into_unmapped_buffer);
	tcase_add_test(flags, rw_nowait_tmpfs);
	tcase_add_test(flags, rw_nowait_direct_read);
	tcase_add_test(flags, rw_hipri_is_ignored);
	tcase_add_test(flags, rw_dsync_and_sync);
	tcase_add_test(flags, rw_append);
	tcase_add_test(flags, rw_unknown_flag);
	tcase_add_test(flags, ioprio_flag);
	tcase_add_loop_test(flags, files_and_flags_judged_as_kernel, 0,
			    sizeof(judged_cases) / sizeof(judged_cases[0]));
	tcase_add_test(flags, fd_number_reopened_on_a_directory);
	return s;
}

int main(void)
{
	return run_suite(opcodes_suite(), "opcodes");
}
