/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Faults from below: a full filesystem, the file-size limit, descriptors
 * closed under in-flight I/O, RWF_NOWAIT, contexts torn down with I/O in
 * flight or with a thread waiting on them, signals that are not delivered.
 * The results asserted are the kernel's native AIO results, measured with
 * the real libaio on this kernel; make check runs the suite on -laio too.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static long elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static io_context_t new_ctx(int maxevents)
{
	io_context_t ctx = NULL;

	ck_assert_int_eq(io_setup(maxevents, &ctx), 0);
	return ctx;
}

/* Submits one iocb and returns its event's res. */
static long run_one(io_context_t ctx, struct iocb *cb)
{
	ck_assert_int_eq(submit_one(ctx, cb), 1);
	return reap_one(ctx, cb);
}

/*
 * A small filesystem: ext2 on a loop device, or where this machine gives
 * no loop device (many containers), a tmpfs of the same size. The mount
 * lives in an unchecked fixture, run by the parent process, so that it is
 * unmounted and its loop device released even when a test fails.
 */
static char mnt_dir[] = "/tmp/aio-compat-enospc-XXXXXX";
static char img_path[] = "/tmp/aio-compat-enospc-img-XXXXXX";
static const char *small_fs;   /* what is mounted there, if anything */
static char small_fs_why[128]; /* else why not */

static int sh(const char *cmd)
{
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void small_fs_up(void)
{
	char cmd[512];
	int fd;

	if (geteuid() != 0)
		return;
	fd = mkstemp(img_path);
	if (fd < 0 || !mkdtemp(mnt_dir)) {
		snprintf(small_fs_why, sizeof(small_fs_why), "mkstemp: %s", strerror(errno));
		return;
	}
	close(fd);
	/* 1 MiB, 1 KiB blocks, no reserved blocks: root fills it to the end. */
	snprintf(cmd, sizeof(cmd),
		 "truncate -s 1M %s && mkfs.ext2 -q -F -b 1024 -m 0 %s >/dev/null 2>&1 && "
		 "mount -o loop %s %s 2>/dev/null",
		 img_path, img_path, img_path, mnt_dir);
	if (sh(cmd) == 0)
		small_fs = "ext2 on a loop device";
	else if (!mount("aio-compat-enospc", mnt_dir, "tmpfs", 0, "size=1m"))
		small_fs = "tmpfs (no loop device here)";
	else
		snprintf(small_fs_why, sizeof(small_fs_why),
			 "no loop device, and mount -t tmpfs: %s", strerror(errno));
}

static void small_fs_down(void)
{
	if (small_fs)
		umount2(mnt_dir, MNT_DETACH); /* -o loop frees the loop device */
	small_fs = NULL;
	rmdir(mnt_dir);
	unlink(img_path);
}

static int open_on_small_fs(const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", mnt_dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	return fd;
}

static int skip_unless_mounted(void)
{
	if (geteuid() != 0) {
		test_skip("loop", "enospc: needs root to mount a small filesystem");
		return 1;
	}
	if (!small_fs) {
		test_skip("loop", "enospc: %s", small_fs_why);
		return 1;
	}
	printf("test_faults: enospc on %s\n", small_fs);
	return 0;
}

/*
 * A write that fits succeeds whole; one that crosses the end of free
 * space is short, and every byte it reports is on the file; the next one,
 * on the full filesystem, gets -ENOSPC. Reads still work.
 */
START_TEST(enospc_short_then_enospc)
{
	enum {
		BIG = 2 << 20
	}; /* twice the whole filesystem */
	io_context_t ctx;
	char *buf = aligned_buf(BIG, 0x5a), *back = aligned_buf(BIG, 0);
	struct iocb cb;
	long res, end;
	int fd;

	if (skip_unless_mounted())
		return;
	ctx = new_ctx(8);
	fd = open_on_small_fs("fill");
	io_prep_pwrite(&cb, fd, buf, CHUNK, 0);
	ck_assert_int_eq(run_one(ctx, &cb), CHUNK);
	io_prep_pwrite(&cb, fd, buf + CHUNK, BIG - CHUNK, CHUNK);
	res = run_one(ctx, &cb);
	ck_assert_msg(res > 0 && res < BIG - 2 * CHUNK, "write across the end of space: res %ld",
		      res);
	end = CHUNK + res;
	/*
	 * ext2 can end a large write short well before the last block (seen:
	 * 448 KiB of a 2 MiB write with 900 KiB free): small writes take what
	 * is left, one may be short, then -ENOSPC.
	 */
	for (int i = 0; i < 300; i++) {
		io_prep_pwrite(&cb, fd, buf + end, 4096, end);
		res = run_one(ctx, &cb);
		if (res == -ENOSPC)
			break;
		ck_assert_msg(res > 0 && res <= 4096, "small write after the short one: %ld", res);
		end += res;
	}
	ck_assert_int_eq(res, -ENOSPC);
	io_prep_pwrite(&cb, fd, buf + end, 4096, end);
	ck_assert_int_eq(run_one(ctx, &cb), -ENOSPC);
	ck_assert_int_eq(lseek(fd, 0, SEEK_END), end);

	io_prep_pread(&cb, fd, back, BIG, 0);
	ck_assert_int_eq(run_one(ctx, &cb), end);
	ck_assert_mem_eq(back, buf, end);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fd);
	free(buf);
	free(back);
}
END_TEST

/*
 * RLIMIT_FSIZE: a write across the limit is cut at it, one at or past it
 * gets -EFBIG. SIGXFSZ is ignored, as by a program that handles the
 * limit itself; the process must survive and nothing past the limit may
 * be on the file.
 */
START_TEST(file_size_limit)
{
	enum {
		LIMIT = 10000
	};
	struct rlimit rl = { LIMIT, RLIM_INFINITY };
	io_context_t ctx = new_ctx(8);
	char *buf = aligned_buf(8192, 0x33);
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR);
	struct iocb cb;
	struct stat st;

	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	io_prep_pwrite(&cb, fd, buf, 4096, 0);
	ck_assert_int_eq(run_one(ctx, &cb), 4096);
	io_prep_pwrite(&cb, fd, buf, 8192, 4096);
	ck_assert_int_eq(run_one(ctx, &cb), LIMIT - 4096);
	io_prep_pwrite(&cb, fd, buf, 8192, LIMIT);
	ck_assert_int_eq(run_one(ctx, &cb), -EFBIG);
	io_prep_pwrite(&cb, fd, buf, 512, 1 << 20);
	ck_assert_int_eq(run_one(ctx, &cb), -EFBIG);
	/* Reads are not limited. */
	io_prep_pread(&cb, fd, buf, 8192, 4096);
	ck_assert_int_eq(run_one(ctx, &cb), LIMIT - 4096);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, LIMIT);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fd);
	free(buf);
}
END_TEST

/*
 * A request holds its own reference to the file: closing the descriptor
 * while a poll waits does not end the poll, which still sees the pipe
 * become readable; and a new file given the same descriptor number is not
 * the one polled.
 */
START_TEST(fd_closed_while_poll_in_flight)
{
	io_context_t ctx = new_ctx(8);
	int fds[2], other;
	struct iocb cb;
	long res;

	ck_assert_int_eq(pipe(fds), 0);
	io_prep_poll(&cb, fds[0], POLLIN);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	close(fds[0]);
	other = tmpfile_in(NULL, 0, O_RDWR);
	ck_assert_int_eq(other, fds[0]);
	expect_no_event(ctx, 50);
	ck_assert_int_eq(write(fds[1], "x", 1), 1);
	res = reap_one(ctx, &cb);
	ck_assert_msg(res & POLLIN, "poll res %#lx", res);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fds[1]);
	close(other);
}
END_TEST

/* O_DIRECT reads and writes whose fd is closed right after io_submit. */
START_TEST(fd_closed_while_direct_io_in_flight)
{
	enum {
		NR = 32
	};
	io_context_t ctx = new_ctx(NR);
	char *buf = aligned_buf(NR * CHUNK, 0);
	struct iocb cbs[NR], *ios[NR];
	struct io_event ev[NR];
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);
	int check = dup(fd);

	for (int i = 0; i < NR; i++) {
		memset(buf + i * CHUNK, 'a' + i % 26, CHUNK);
		io_prep_pwrite(&cbs[i], fd, buf + i * CHUNK, CHUNK, (long long)i * CHUNK);
		ios[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, NR, ios), NR);
	close(fd);
	reap_n(ctx, NR, ev, 5000);
	for (int i = 0; i < NR; i++)
		ck_assert_int_eq((long)ev[i].res, CHUNK);

	fd = dup(check);
	memset(buf, 0, NR * CHUNK);
	for (int i = 0; i < NR; i++)
		io_prep_pread(&cbs[i], fd, buf + i * CHUNK, CHUNK, (long long)i * CHUNK);
	ck_assert_int_eq(io_submit(ctx, NR, ios), NR);
	close(fd);
	reap_n(ctx, NR, ev, 5000);
	for (int i = 0; i < NR; i++) {
		ck_assert_int_eq((long)ev[i].res, CHUNK);
		for (int j = 0; j < CHUNK; j += 4096)
			ck_assert_int_eq(buf[i * CHUNK + j], 'a' + i % 26);
	}
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(check);
	free(buf);
}
END_TEST

/* RWF_NOWAIT on an empty pipe: the event says -EAGAIN, on both backends. */
START_TEST(nowait_empty_pipe)
{
	io_context_t ctx = new_ctx(8);
	char buf[16] = { 0 };
	struct iocb cb;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	io_prep_pread(&cb, fds[0], buf, sizeof(buf), 0);
	cb.aio_rw_flags = RWF_NOWAIT;
	ck_assert_int_eq(run_one(ctx, &cb), -EAGAIN);
	/* With data there, the same request reads it. */
	ck_assert_int_eq(write(fds[1], "hello", 5), 5);
	ck_assert_int_eq(run_one(ctx, &cb), 5);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/*
 * A read of an empty O_NONBLOCK pipe: native AIO answers -EAGAIN at once
 * (measured with libaio). io_uring waits for data instead, and the uring
 * backend says so among its differences: finding out would cost a system
 * call per read.
 */
START_TEST(nonblocking_pipe_read)
{
	io_context_t ctx = new_ctx(8);
	char buf[16];
	struct iocb cb;
	int fds[2];

	ck_assert_int_eq(pipe2(fds, O_NONBLOCK), 0);
	io_prep_pread(&cb, fds[0], buf, sizeof(buf), 0);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	if (ctx_is_uring(ctx)) {
		/* io_uring waits for the data instead (README, differences). */
		expect_no_event(ctx, 50);
		ck_assert_int_eq(write(fds[1], "x", 1), 1);
		ck_assert_int_eq(reap_one(ctx, &cb), 1);
	} else {
		ck_assert_int_eq(reap_one(ctx, &cb), -EAGAIN);
	}
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/*
 * Drops a clean page from the page cache. POSIX_FADV_DONTNEED skips pages
 * still in a per-CPU LRU batch, so it is retried until mincore agrees.
 */
static void drop_cached_page(int fd, off_t off)
{
	long page = sysconf(_SC_PAGESIZE);
	void *map = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, off);
	unsigned char resident = 1;

	ck_assert_ptr_ne(map, MAP_FAILED);
	for (int i = 0; i < 50 && resident; i++) {
		ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
		ck_assert_int_eq(mincore(map, page, &resident), 0);
		resident &= 1;
		if (resident)
			usleep(10 * 1000);
	}
	munmap(map, page);
	ck_assert_msg(!resident, "the page stays in the page cache");
}

/*
 * RWF_NOWAIT on a disk file whose page is not cached: -EAGAIN. The kernel
 * starts readahead before it gives up, and on a fast disk the page can be
 * there in time, so a round may read it: each round gives -EAGAIN or the
 * data, and at least one of ten gives -EAGAIN (measured with libaio: about
 * one round in eight reads the page).
 */
START_TEST(nowait_uncached_file)
{
	io_context_t ctx = new_ctx(8);
	char *buf = aligned_buf(CHUNK, 0x44), *back = aligned_buf(4096, 0);
	int eagain = 0, fd = -1;
	struct iocb cb;

	/* A new file each round: a file's readahead state outlives the drop. */
	for (int i = 0; i < 10; i++) {
		long res;

		if (fd >= 0)
			close(fd);
		fd = tmpfile_in("/var/tmp", 0, O_RDWR);
		ck_assert_int_eq(pwrite(fd, buf, CHUNK, 0), CHUNK);
		ck_assert_int_eq(fsync(fd), 0);
		drop_cached_page(fd, CHUNK / 2);
		memset(back, 0, 4096);
		io_prep_pread(&cb, fd, back, 4096, CHUNK / 2);
		cb.aio_rw_flags = RWF_NOWAIT;
		res = run_one(ctx, &cb);
		ck_assert_msg(res == -EAGAIN || res == 4096, "round %d: res %ld", i, res);
		if (res == 4096)
			ck_assert_mem_eq(back, buf, 4096);
		eagain += res == -EAGAIN;
	}
	ck_assert_int_gt(eagain, 0);
	/* Once cached, NOWAIT reads it. */
	io_prep_pread(&cb, fd, back, 4096, CHUNK / 2);
	ck_assert_int_eq(run_one(ctx, &cb), 4096);
	cb.aio_rw_flags = RWF_NOWAIT;
	ck_assert_int_eq(run_one(ctx, &cb), 4096);
	ck_assert_mem_eq(back, buf, 4096);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fd);
	free(buf);
	free(back);
}
END_TEST

/*
 * io_destroy with O_DIRECT writes in flight waits for them, as the kernel
 * does: when it returns the data is on the file and the buffers are the
 * caller's again (freed at once: ASan and valgrind see any later touch).
 */
START_TEST(destroy_waits_for_writes)
{
	enum {
		NR = 64
	};
	io_context_t ctx;
	struct iocb *cbs[NR];
	char *bufs[NR], *back = aligned_buf(CHUNK, 0);
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);
	int fds = count_fds();

	ctx = new_ctx(NR);
	for (int i = 0; i < NR; i++) {
		bufs[i] = aligned_buf(CHUNK, i + 1);
		cbs[i] = malloc(sizeof(*cbs[i]));
		io_prep_pwrite(cbs[i], fd, bufs[i], CHUNK, (long long)i * CHUNK);
	}
	ck_assert_int_eq(io_submit(ctx, NR, cbs), NR);
	ck_assert_int_eq(io_destroy(ctx), 0);
	for (int i = 0; i < NR; i++) {
		free(cbs[i]);
		free(bufs[i]);
	}
	ck_assert_int_eq(count_fds(), fds);
	for (int i = 0; i < NR; i++) {
		ck_assert_int_eq(pread(fd, back, CHUNK, (off_t)i * CHUNK), CHUNK);
		ck_assert_int_eq(back[0], i + 1);
		ck_assert_int_eq(back[CHUNK - 1], i + 1);
	}
	close(fd);
	free(back);
}
END_TEST

/*
 * io_destroy while another thread waits in io_getevents with nothing in
 * the ring: the kernel marks the context dead before it cancels the poll
 * in flight, and the waiter returns -EINVAL at once (measured with libaio).
 */
START_TEST(destroy_while_thread_waits)
{
	struct waiter w = { .ctx = new_ctx(8), .min_nr = 1 };
	struct iocb cb;
	pthread_t t;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	io_prep_poll(&cb, fds[0], POLLIN);
	ck_assert_int_eq(submit_one(w.ctx, &cb), 1);
	ck_assert_int_eq(pthread_create(&t, NULL, waiter_main, &w), 0);
	usleep(100 * 1000);
	ck_assert_int_eq(io_destroy(w.ctx), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.ret, -EINVAL);
	ck_assert_msg(w.ms < 2000, "the waiter returned after %ld ms", w.ms);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

static volatile sig_atomic_t handled;

static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

/*
 * Signals that reach no handler do not interrupt a wait: an ignored one,
 * one blocked by the thread, and SIGCHLD at its default disposition
 * (a child exiting). io_getevents and io_queue_wait run to their timeout.
 */
START_TEST(undelivered_signals_do_not_interrupt)
{
	io_context_t ctx = new_ctx(8);
	struct timespec ts = { 0, 300 * 1000 * 1000 }, start;
	struct io_event ev;
	struct iocb cb;
	sigset_t usr2, old;
	pid_t child;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	io_prep_poll(&cb, fds[0], POLLIN);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGUSR2, on_signal);
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &usr2, &old), 0);

	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		pid_t parent = getppid();

		for (int i = 0; i < 5; i++) {
			usleep(20 * 1000);
			kill(parent, SIGUSR1);
			kill(parent, SIGUSR2);
		}
		_exit(0);
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	ck_assert_int_eq(io_getevents(ctx, 1, 1, &ev, &ts), 0);
	ck_assert_int_ge(elapsed_ms(&start), 250);
	if (aio_compat_backend) {
		clock_gettime(CLOCK_MONOTONIC, &start);
		ck_assert_int_eq(io_queue_wait(ctx, &ts), 0);
		ck_assert_int_ge(elapsed_ms(&start), 250);
	}
	ck_assert_int_eq(waitpid(child, NULL, 0), child);
	ck_assert_int_eq(handled, 0);
	/* Unblocked, the pending SIGUSR2 is delivered now, not before. */
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
	ck_assert_int_eq(handled, 1);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/*
 * A hundred contexts (the kernel's io_destroy waits an RCU grace period
 * per context with a request outstanding), each torn down with a poll in flight and a
 * completion nobody reaped: descriptors return to where they were.
 */
START_TEST(many_contexts_torn_down_busy)
{
	char buf[512] = { 0 };
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	int fds[2], before;

	ck_assert_int_eq(pipe(fds), 0);
	before = count_fds();
	for (int i = 0; i < 100; i++) {
		io_context_t ctx = new_ctx(4);
		struct iocb poll_cb, write_cb, *ios[2] = { &poll_cb, &write_cb };

		io_prep_poll(&poll_cb, fds[0], POLLIN);
		io_prep_pwrite(&write_cb, fd, buf, sizeof(buf), (long long)i * 512);
		ck_assert_int_eq(io_submit(ctx, 2, ios), 2);
		if (i % 2)
			ck_assert_int_eq(io_destroy(ctx), 0);
		else
			ck_assert_int_eq(io_queue_release(ctx), 0);
	}
	ck_assert_int_eq(count_fds(), before);
	close(fds[0]);
	close(fds[1]);
	close(fd);
}
END_TEST

static Suite *faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *space = tcase_create("space");
	TCase *fds = tcase_create("descriptors");
	TCase *teardown = tcase_create("teardown");

	tcase_add_unchecked_fixture(space, small_fs_up, small_fs_down);
	tcase_set_timeout(space, 20);
	tcase_add_test(space, enospc_short_then_enospc);
	tcase_add_test(space, file_size_limit);
	tcase_add_test(fds, fd_closed_while_poll_in_flight);
	tcase_add_test(fds, fd_closed_while_direct_io_in_flight);
	tcase_add_test(fds, nowait_empty_pipe);
	tcase_add_test(fds, nonblocking_pipe_read);
	tcase_add_test(fds, nowait_uncached_file);
	tcase_set_timeout(teardown, 30);
	tcase_add_test(teardown, destroy_waits_for_writes);
	tcase_add_test(teardown, destroy_while_thread_waits);
	tcase_add_test(teardown, undelivered_signals_do_not_interrupt);
	tcase_add_test(teardown, many_contexts_torn_down_busy);
	suite_add_tcase(s, space);
	suite_add_tcase(s, fds);
	suite_add_tcase(s, teardown);
	return s;
}

int main(void)
{
	return run_suite(faults_suite(), "faults");
}
