/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One context, files of every kind at once: tmpfs, buffered ext4 and
 * O_DIRECT; on auto, reads of an ext4 file whose pages are on the disk
 * (a cold file) go through io_uring, the rest to native AIO. Each check
 * holds on every backend; on auto it runs both paths at once.
 */
#include "aio-ring.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#define BLOCK 4096
#define FILES 3
#define PER_FILE 8

static io_context_t ctx;
static int files[FILES];
static const char *const where[FILES] = { "/dev/shm", "/var/tmp", "/var/tmp" };
static const int how[FILES] = { 0, 0, O_DIRECT };

static void ctx_up(void)
{
	ctx = NULL;
	ck_assert_int_eq(io_setup(128, &ctx), 0);
	for (int i = 0; i < FILES; i++)
		files[i] = tmpfile_in(where[i], PER_FILE * BLOCK, how[i]);
}

static void ctx_down(void)
{
	expect_no_event(ctx, 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	for (int i = 0; i < FILES; i++)
		close(files[i]);
}

/* The io-wq workers io_uring runs blocking requests on, in this process. */
static int io_wq_workers(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		char path[300], comm[32] = "";
		int fd;

		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		if (read(fd, comm, sizeof(comm) - 1) > 0 && !strncmp(comm, "iou-wrk", 7))
			n++;
		close(fd);
	}
	closedir(d);
	return n;
}

/* The io_urings this process holds. */
static int io_uring_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		char path[300], target[64];
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = 0;
			n += !strcmp(target, "anon_inode:[io_uring]");
		}
	}
	closedir(d);
	return n;
}

/* Reads of tmpfs on an auto context are done by native AIO: no worker. */
START_TEST(tmpfs_reads_need_no_worker)
{
	struct io_event ev[PER_FILE];
	struct iocb cbs[PER_FILE], *list[PER_FILE];
	char *buf;

	if (strcmp(test_backend(), "auto"))
		return;
	buf = aligned_buf(BLOCK, 0);
	for (int round = 0; round < 16; round++) {
		for (int i = 0; i < PER_FILE; i++) {
			io_prep_pread(&cbs[i], files[0], buf, BLOCK, i * BLOCK);
			list[i] = &cbs[i];
		}
		ck_assert_int_eq(io_submit(ctx, PER_FILE, list), PER_FILE);
		reap_n(ctx, PER_FILE, ev, 2000);
		for (int i = 0; i < PER_FILE; i++)
			ck_assert_int_eq((long)ev[i].res, BLOCK);
	}
	ck_assert_int_eq(io_wq_workers(), 0);
	ck_assert_int_eq(io_uring_fds(), 0);
	free(buf);
}
END_TEST

#define COLD_SIZE (4 << 20)

/* A buffered file on the disk, filled with its offsets' low bytes and written out. */
static int cold_file(void)
{
	int fd = tmpfile_in("/var/tmp", 0, 0);
	char *buf = aligned_buf(COLD_SIZE, 0);
	struct statfs fs;

	ck_assert_int_eq(fstatfs(fd, &fs), 0);
	if (fs.f_type == 0x01021994) { /* TMPFS_MAGIC: no disk here */
		close(fd);
		free(buf);
		return -1;
	}
	for (int i = 0; i < COLD_SIZE; i++)
		buf[i] = (char)(i / BLOCK);
	ck_assert_int_eq(pwrite(fd, buf, COLD_SIZE, 0), COLD_SIZE);
	ck_assert_int_eq(fdatasync(fd), 0);
	free(buf);
	return fd;
}

/*
 * Batches of scattered 4 KiB reads whose pages are dropped first keep
 * io_submit waiting on the disk, until the library judges the file cold:
 * then its io_uring appears. False if it never does.
 */
static bool make_cold(io_context_t c, int fd)
{
	char *buf = aligned_buf(BLOCK * PER_FILE, 0);
	struct iocb cbs[PER_FILE], *list[PER_FILE];
	struct io_event ev[PER_FILE];

	for (int round = 0; round < 64 && !io_uring_fds(); round++) {
		ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
		for (int i = 0; i < PER_FILE; i++) {
			io_prep_pread(&cbs[i], fd, buf + i * BLOCK, BLOCK,
				      (off_t)((round * PER_FILE + i) * 113 % 1024) * BLOCK);
			list[i] = &cbs[i];
		}
		ck_assert_int_eq(io_submit(c, PER_FILE, list), PER_FILE);
		reap_n(c, PER_FILE, ev, 5000);
	}
	free(buf);
	return io_uring_fds() > 0;
}

/* The cold file on an auto context, or why not (a SKIP line). */
static int cold_or_skip(io_context_t c)
{
	int fd;

	if (strcmp(test_backend(), "auto"))
		return -1;
	fd = cold_file();
	if (fd < 0) {
		test_skip(NULL, "cold reads: /var/tmp is on tmpfs, no file can be cold");
		return -1;
	}
	if (!make_cold(c, fd)) {
		test_skip(NULL, "cold reads: reads from the disk never kept io_submit waiting");
		close(fd);
		return -1;
	}
	return fd;
}

static void check_block(const char *buf, int block)
{
	ck_assert_int_eq(buf[0], (char)block);
	ck_assert_int_eq(buf[BLOCK - 1], (char)block);
}

/*
 * Reads of a cold file with an eventfd, beside tmpfs reads and a sync held
 * behind a write: each event names its iocb, with the bytes the kernel
 * read and the eventfd counted once each; the ring the handle points at
 * holds them, as native AIO's does.
 */
START_TEST(cold_reads_through_io_uring)
{
	struct iocb cbs[PER_FILE * 2 + 2], *list[PER_FILE * 2 + 2];
	struct io_event ev[PER_FILE * 2 + 2];
	int fd = cold_or_skip(ctx), efd, n = 0;
	uint64_t count = 0, seen;
	char *bufs, *one;

	if (fd < 0)
		return;
	bufs = aligned_buf(BLOCK * PER_FILE * 2, 0);
	one = aligned_buf(BLOCK, 'w');
	efd = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	for (int i = 0; i < PER_FILE; i++) {
		io_prep_pread(&cbs[n], fd, bufs + n * BLOCK, BLOCK, (off_t)(i * 97 % 1024) * BLOCK);
		io_set_eventfd(&cbs[n], efd);
		cbs[n].data = (void *)(long)(i * 97 % 1024);
		list[n] = &cbs[n];
		n++;
		io_prep_pread(&cbs[n], files[0], bufs + n * BLOCK, BLOCK, i * BLOCK);
		cbs[n].data = (void *)-1L;
		list[n] = &cbs[n];
		n++;
	}
	io_prep_pwrite(&cbs[n], files[1], one, BLOCK, 0);
	cbs[n].data = (void *)-2L;
	list[n] = &cbs[n];
	n++;
	io_prep_fsync(&cbs[n], files[1]);
	cbs[n].data = (void *)-3L;
	list[n] = &cbs[n];
	n++;
	ck_assert_int_eq(io_submit(ctx, n, list), n);
	ck_assert_int_eq(io_cancel(ctx, &cbs[0], &ev[0]), -EINVAL);
	while (count < PER_FILE) {
		struct pollfd p = { .fd = efd, .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_eq(read(efd, &seen, sizeof(seen)), sizeof(seen));
		count += seen;
	}
	ck_assert_uint_eq(count, PER_FILE);
	reap_n(ctx, n, ev, 5000);
	for (int i = 0; i < n; i++) {
		long block = (long)ev[i].data;

		ck_assert_int_eq((long)ev[i].res, block == -3 ? 0 : BLOCK);
		if (block >= 0)
			check_block(ev[i].obj->u.c.buf, (int)block);
	}
	ck_assert_uint_eq(((struct aio_ring *)ctx)->head, ((struct aio_ring *)ctx)->tail);
	close(efd);
	close(fd);
	free(one);
	free(bufs);
}
END_TEST

#define COLD_THREADS 2

struct cold_reads {
	struct iocb cbs[PER_FILE];
	char buf[BLOCK * PER_FILE];
};

static void *cold_reader_main(void *arg)
{
	int fd = (int)(long)arg;
	struct cold_reads *r = calloc(1, sizeof(*r));
	struct iocb *list[PER_FILE];

	for (int i = 0; i < PER_FILE; i++) {
		io_prep_pread(&r->cbs[i], fd, r->buf + i * BLOCK, BLOCK,
			      (off_t)(i * 131 % 1024) * BLOCK);
		list[i] = &r->cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, PER_FILE, list), PER_FILE);
	/* The thread ends with its reads in flight: they are still done. */
	return r;
}

/* Threads that submit cold reads and exit; the main thread reaps them all. */
START_TEST(cold_reads_outlive_their_thread)
{
	pthread_t threads[COLD_THREADS];
	struct io_event ev[PER_FILE * COLD_THREADS];
	void *bufs[COLD_THREADS];
	int fd = cold_or_skip(ctx);

	if (fd < 0)
		return;
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	for (long t = 0; t < COLD_THREADS; t++)
		ck_assert_int_eq(
		    pthread_create(&threads[t], NULL, cold_reader_main, (void *)(long)fd), 0);
	for (int t = 0; t < COLD_THREADS; t++)
		ck_assert_int_eq(pthread_join(threads[t], &bufs[t]), 0);
	reap_n(ctx, PER_FILE * COLD_THREADS, ev, 5000);
	for (int i = 0; i < PER_FILE * COLD_THREADS; i++) {
		ck_assert_int_eq((long)ev[i].res, BLOCK);
		check_block(ev[i].obj->u.c.buf, (int)(ev[i].obj->u.c.offset / BLOCK));
	}
	for (int t = 0; t < COLD_THREADS; t++)
		free(bufs[t]);
	close(fd);
}
END_TEST

#define COLD_ROUNDS 3000
#define ROUND_TRIPPERS 4

struct round_trips {
	int fd;
	/*
	 * An iocb per read, and buffers kept until every thread is done: a
	 * read whose event another thread reaped may still be in flight.
	 */
	struct iocb *cbs;
	char *buf;
	long rounds; /* reaped whole */
};

/*
 * Rounds of cold reads, each reaped before the next, within 5 seconds.
 * Most are found in memory, done within the fetcher's submission, leaving
 * it nothing else to wake for; the pages are dropped every 8 rounds,
 * before 256 reads in a row were found in memory and the file turned
 * warm. The threads reap each other's events too.
 */
static void *cold_round_trips(void *arg)
{
	struct round_trips *t = arg;
	struct iocb *list[PER_FILE];
	struct io_event ev[PER_FILE];

	for (t->rounds = 0; t->rounds < COLD_ROUNDS; t->rounds++) {
		int got = 0, ret = 1;

		if (!(t->rounds % 8))
			posix_fadvise(t->fd, 0, 0, POSIX_FADV_DONTNEED);
		for (int i = 0; i < PER_FILE; i++) {
			list[i] = &t->cbs[t->rounds * PER_FILE + i];
			io_prep_pread(list[i], t->fd, t->buf + i * BLOCK, BLOCK,
				      (off_t)((t->rounds % 8 * PER_FILE + i) * 97 % 1024) * BLOCK);
		}
		if (io_submit(ctx, PER_FILE, list) != PER_FILE)
			break;
		while (got < PER_FILE && ret > 0) {
			ret = getevents_ms(ctx, 1, PER_FILE - got, ev, 5000);
			got += ret > 0 ? ret : 0;
		}
		if (got < PER_FILE)
			break;
	}
	return NULL;
}

/*
 * Threads that submit cold reads while the fetcher sends earlier ones,
 * each waiting for as many events as it submitted: none is left unsent.
 */
START_TEST(cold_reads_while_others_are_sent)
{
	struct round_trips trips[ROUND_TRIPPERS];
	pthread_t threads[ROUND_TRIPPERS];
	int fd = cold_or_skip(ctx);

	if (fd < 0)
		return;
	for (int t = 0; t < ROUND_TRIPPERS; t++) {
		trips[t] = (struct round_trips){ .fd = fd };
		trips[t].cbs = calloc(COLD_ROUNDS * PER_FILE, sizeof(struct iocb));
		trips[t].buf = aligned_buf(BLOCK * PER_FILE, 0);
		ck_assert_int_eq(pthread_create(&threads[t], NULL, cold_round_trips, &trips[t]), 0);
	}
	for (int t = 0; t < ROUND_TRIPPERS; t++)
		ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
	for (int t = 0; t < ROUND_TRIPPERS; t++) {
		ck_assert_int_eq(trips[t].rounds, COLD_ROUNDS);
		free(trips[t].cbs);
		free(trips[t].buf);
	}
	close(fd);
}
END_TEST

/*
 * A wait for every cold read in flight, with no timeout and no signal,
 * gets them all, as on libaio: io_uring's task work for them interrupts
 * no thread of the program's.
 */
START_TEST(cold_reads_leave_waits_whole)
{
	struct iocb cbs[PER_FILE + 1], *list[PER_FILE + 1];
	struct io_event ev[PER_FILE + 1];
	char *buf = aligned_buf(BLOCK * (PER_FILE + 1), 0);
	int fd = cold_or_skip(ctx);

	if (fd < 0) {
		free(buf);
		return;
	}
	for (int round = 0; round < 16; round++) {
		ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
		/* First a tmpfs read, whose event is in the ring when the wait starts. */
		io_prep_pread(&cbs[0], files[0], buf, BLOCK, 0);
		list[0] = &cbs[0];
		for (int i = 1; i <= PER_FILE; i++) {
			io_prep_pread(&cbs[i], fd, buf + i * BLOCK, BLOCK,
				      (off_t)((round * PER_FILE + i) * 89 % 1024) * BLOCK);
			list[i] = &cbs[i];
		}
		ck_assert_int_eq(io_submit(ctx, PER_FILE + 1, list), PER_FILE + 1);
		ck_assert_int_eq(io_getevents(ctx, PER_FILE + 1, PER_FILE + 1, ev, NULL),
				 PER_FILE + 1);
		for (int i = 0; i <= PER_FILE; i++)
			ck_assert_int_eq((long)ev[i].res, BLOCK);
	}
	close(fd);
	free(buf);
}
END_TEST

/*
 * Cold reads read the file their fd named at io_submit, as native AIO
 * does, though io_uring is handed them later: the number given at once to
 * a tmpfs file changes nothing. A read on the number once closed is
 * refused with the kernel's -EBADF.
 */
START_TEST(cold_reads_keep_their_file)
{
	struct iocb cbs[PER_FILE], *list[PER_FILE];
	struct io_event ev[PER_FILE];
	int fd = cold_or_skip(ctx), kept;
	char *buf;

	if (fd < 0)
		return;
	buf = aligned_buf(BLOCK * PER_FILE, 0);
	kept = dup(fd);
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	/* Past the end of the tmpfs file: read there, each would read 0 bytes. */
	for (int i = 0; i < PER_FILE; i++) {
		io_prep_pread(&cbs[i], fd, buf + i * BLOCK, BLOCK, (off_t)(100 + i * 61) * BLOCK);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, PER_FILE, list), PER_FILE);
	ck_assert_int_eq(dup2(files[0], fd), fd);
	reap_n(ctx, PER_FILE, ev, 5000);
	for (int i = 0; i < PER_FILE; i++) {
		ck_assert_int_eq((long)ev[i].res, BLOCK);
		check_block(ev[i].obj->u.c.buf, (int)(ev[i].obj->u.c.offset / BLOCK));
	}
	ck_assert_int_eq(close(fd), 0);
	io_prep_pread(&cbs[0], fd, buf, BLOCK, 0);
	ck_assert_int_eq(io_submit(ctx, 1, list), -EBADF);
	close(kept);
	free(buf);
}
END_TEST

/*
 * Cold reads whose iocbs the program unmaps (0, PROT_NONE) or makes
 * read-only (1) while they are in flight, which libaio allows: the library
 * cannot show the kernel the iocb at the program's address when it posts
 * them, and a copy of its own carries each. Every read completes once,
 * with its bytes, and its event names the program's iocb.
 */
START_TEST(cold_reads_with_iocbs_unmapped)
{
	static const int prot[] = { PROT_NONE, PROT_READ };
	size_t page = (size_t)getpagesize();
	struct iocb *cbs =
	    mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iocb *list[PER_FILE];
	struct io_event ev[PER_FILE];
	bool seen[PER_FILE] = { false };
	int fd;
	char *buf;

	ck_assert_ptr_ne(cbs, MAP_FAILED);
	if (strcmp(test_backend(), "auto")) {
		munmap(cbs, page);
		return;
	}
	if (UNDER_TSAN) {
		test_skip(NULL, "cold reads with iocbs unmapped: the fault guard, off under "
				"ThreadSanitizer");
		munmap(cbs, page);
		return;
	}
	if (!_i && UNDER_VALGRIND) {
		test_skip(NULL, "cold reads with iocbs unmapped: valgrind reads the iocb of "
				"each event io_getevents returns, and dies on these");
		munmap(cbs, page);
		return;
	}
	fd = cold_or_skip(ctx);
	if (fd < 0) {
		munmap(cbs, page);
		return;
	}
	buf = aligned_buf(BLOCK * PER_FILE, 0);
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	for (int i = 0; i < PER_FILE; i++) {
		io_prep_pread(&cbs[i], fd, buf + i * BLOCK, BLOCK, (off_t)(i * 89 % 1024) * BLOCK);
		cbs[i].data = (void *)(long)(i * 89 % 1024);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, PER_FILE, list), PER_FILE);
	ck_assert_int_eq(mprotect(cbs, page, prot[_i]), 0);
	reap_n(ctx, PER_FILE, ev, 5000);
	ck_assert_int_eq(mprotect(cbs, page, PROT_READ | PROT_WRITE), 0);
	for (int i = 0; i < PER_FILE; i++) {
		long k = ev[i].obj - cbs, block = (long)ev[i].data;

		ck_assert_msg(k >= 0 && k < PER_FILE, "event %d names iocb %p, not one submitted",
			      i, (void *)ev[i].obj);
		ck_assert_msg(!seen[k], "iocb %ld: a second event", k);
		seen[k] = true;
		ck_assert_int_eq(block, k * 89 % 1024);
		ck_assert_int_eq((long)ev[i].res, BLOCK);
		check_block(buf + k * BLOCK, (int)block);
	}
	close(fd);
	free(buf);
	munmap(cbs, page);
}
END_TEST

/* The descriptors of this process that name the file st describes. */
static int descriptors_of(const struct stat *st)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		char path[300];
		struct stat at;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n += !stat(path, &at) && at.st_dev == st->st_dev && at.st_ino == st->st_ino;
	}
	closedir(d);
	return n;
}

/*
 * A cold file is held by the library while it is cold; once the program
 * closes it, the hold is let go at an io_submit a second or so later, so
 * that a deleted file's blocks are freed as they would be on libaio.
 */
/* A cold file, which the library holds a descriptor of too, or -1 (SKIP). */
static int cold_and_held(struct stat *st)
{
	int fd = cold_or_skip(ctx);

	if (fd < 0)
		return -1;
	ck_assert_int_eq(fstat(fd, st), 0);
	ck_assert_int_eq(descriptors_of(st), 2);
	return fd;
}

/* PER_FILE reads of fd's blocks from first on (of 1024) into buf, reaped. */
static void read_round(int fd, char *buf, int first)
{
	struct iocb cbs[PER_FILE], *list[PER_FILE];
	struct io_event ev[PER_FILE];

	for (int i = 0; i < PER_FILE; i++) {
		io_prep_pread(&cbs[i], fd, buf + i * BLOCK, BLOCK,
			      (off_t)((first + i) % 1024) * BLOCK);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, PER_FILE, list), PER_FILE);
	reap_n(ctx, PER_FILE, ev, 2000);
}

START_TEST(cold_file_let_go_once_closed)
{
	struct stat st;
	int fd = cold_and_held(&st);
	char *buf;

	if (fd < 0)
		return;
	buf = aligned_buf(BLOCK * PER_FILE, 0);
	close(fd);
	for (int round = 0; round < 40 && descriptors_of(&st); round++) {
		for (int i = 0; i < 16; i++)
			read_round(files[0], buf, 0);
		usleep(100 * 1000);
	}
	ck_assert_int_eq(descriptors_of(&st), 0);
	free(buf);
}
END_TEST

/*
 * A cold file whose pages are all in memory turns warm: its reads, found
 * in memory within the submission that sent them, go back to native AIO,
 * and the library lets its hold of the file go. Which of the library's
 * threads takes a read from io_uring changes nothing.
 */
START_TEST(cached_cold_file_turns_warm)
{
	struct stat st;
	int fd = cold_and_held(&st);
	char *buf;

	if (fd < 0)
		return;
	buf = aligned_buf(COLD_SIZE, 0);
	ck_assert_int_eq(pread(fd, buf, COLD_SIZE, 0), COLD_SIZE);
	for (int round = 0; round < 1024 && descriptors_of(&st) > 1; round++)
		read_round(fd, buf, round * PER_FILE);
	ck_assert_msg(descriptors_of(&st) == 1,
		      "8192 reads found in memory, and the file is still held as cold");
	close(fd);
	free(buf);
}
END_TEST

/* io_destroy with cold reads in flight returns once they are done. */
START_TEST(destroy_with_cold_reads_in_flight)
{
	struct iocb cbs[PER_FILE], *list[PER_FILE];
	char *buf = aligned_buf(BLOCK * PER_FILE, 0);
	io_context_t doomed = NULL;
	int fd;

	ck_assert_int_eq(io_setup(64, &doomed), 0);
	fd = cold_or_skip(doomed);
	if (fd < 0) {
		ck_assert_int_eq(io_destroy(doomed), 0);
		free(buf);
		return;
	}
	ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	for (int i = 0; i < PER_FILE; i++) {
		io_prep_pread(&cbs[i], fd, buf + i * BLOCK, BLOCK, (off_t)(i * 61 % 1024) * BLOCK);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(doomed, PER_FILE, list), PER_FILE);
	ck_assert_int_eq(io_destroy(doomed), 0);
	/* Done before io_destroy returned: nothing writes the buffers after. */
	for (int i = 0; i < PER_FILE; i++)
		check_block(buf + i * BLOCK, i * 61 % 1024);
	close(fd);
	free(buf);
}
END_TEST

/*
 * Writes and vectored writes to all three files in one batch, each file's
 * sync behind them; then reads and vectored reads of all of it in one
 * batch. The sync of each file arrives after every write to it.
 */
START_TEST(every_kind_in_one_batch)
{
	struct iocb cbs[FILES * (PER_FILE + 1)], *list[FILES * (PER_FILE + 1)];
	struct io_event ev[FILES * (PER_FILE + 1)];
	struct iovec iov[FILES * PER_FILE][2];
	char *bufs[FILES * PER_FILE];
	int n = 0, writes_seen[FILES] = { 0 };

	for (int f = 0; f < FILES; f++) {
		for (int i = 0; i < PER_FILE; i++) {
			int k = f * PER_FILE + i;

			bufs[k] = aligned_buf(BLOCK, 'a' + k);
			if (i % 2) {
				iov[k][0] = (struct iovec){ bufs[k], BLOCK / 2 };
				iov[k][1] = (struct iovec){ bufs[k] + BLOCK / 2, BLOCK / 2 };
				io_prep_pwritev(&cbs[n], files[f], iov[k], 2, i * BLOCK);
			} else {
				io_prep_pwrite(&cbs[n], files[f], bufs[k], BLOCK, i * BLOCK);
			}
			cbs[n].data = (void *)(long)k;
			list[n] = &cbs[n];
			n++;
		}
		io_prep_fsync(&cbs[n], files[f]);
		cbs[n].data = (void *)(long)-1 - f;
		list[n] = &cbs[n];
		n++;
	}
	ck_assert_int_eq(io_submit(ctx, n, list), n);
	reap_n(ctx, n, ev, 5000);
	for (int i = 0; i < n; i++) {
		long k = (long)ev[i].data;

		if (k < 0) {
			ck_assert_int_eq((long)ev[i].res, 0);
			ck_assert_int_eq(writes_seen[-1 - k], PER_FILE);
			continue;
		}
		ck_assert_int_eq((long)ev[i].res, BLOCK);
		writes_seen[k / PER_FILE]++;
	}

	n = 0;
	for (int f = 0; f < FILES; f++) {
		for (int i = 0; i < PER_FILE; i++) {
			int k = f * PER_FILE + i;

			memset(bufs[k], 0, BLOCK);
			if (i % 2)
				io_prep_preadv(&cbs[n], files[f], iov[k], 2, i * BLOCK);
			else
				io_prep_pread(&cbs[n], files[f], bufs[k], BLOCK, i * BLOCK);
			list[n] = &cbs[n];
			n++;
		}
	}
	ck_assert_int_eq(io_submit(ctx, n, list), n);
	reap_n(ctx, n, ev, 5000);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq((long)ev[i].res, BLOCK);
	for (int k = 0; k < FILES * PER_FILE; k++) {
		ck_assert_int_eq(bufs[k][0], 'a' + k);
		ck_assert_int_eq(bufs[k][BLOCK - 1], 'a' + k);
		free(bufs[k]);
	}
}
END_TEST

/* Every request of a batch over all files signals its eventfd once. */
START_TEST(eventfd_counts_both_paths)
{
	struct iocb cbs[FILES * 2], *list[FILES * 2];
	struct io_event ev[FILES * 2];
	char *buf = aligned_buf(BLOCK, 'x');
	int efd = eventfd(0, EFD_CLOEXEC), n = 0;
	uint64_t count = 0;

	ck_assert_int_ge(efd, 0);
	for (int f = 0; f < FILES; f++) {
		io_prep_pwrite(&cbs[n], files[f], buf, BLOCK, 0);
		io_set_eventfd(&cbs[n], efd);
		list[n] = &cbs[n];
		n++;
	}
	ck_assert_int_eq(io_submit(ctx, n, list), n);
	reap_n(ctx, n, ev, 5000);
	for (int f = 0; f < FILES; f++) {
		io_prep_pread(&cbs[n], files[f], buf, BLOCK, 0);
		io_set_eventfd(&cbs[n], efd);
		list[n] = &cbs[n];
		n++;
	}
	ck_assert_int_eq(io_submit(ctx, FILES, list + FILES), FILES);
	/* Counted before they are reaped: the eventfd is how programs wait. */
	for (uint64_t seen = 0; count < (uint64_t)n; count += seen) {
		struct pollfd p = { .fd = efd, .events = POLLIN };

		ck_assert_int_eq(poll(&p, 1, 5000), 1);
		ck_assert_int_eq(read(efd, &seen, sizeof(seen)), sizeof(seen));
	}
	ck_assert_uint_eq(count, (uint64_t)n);
	reap_n(ctx, FILES, ev, 2000);
	for (int i = 0; i < FILES; i++)
		ck_assert_int_eq((long)ev[i].res, BLOCK);
	close(efd);
	free(buf);
}
END_TEST

/* A poll waits among reads of every file; cancelled, it reports 0. */
START_TEST(poll_and_cancel_among_reads)
{
	struct iocb poll_cb, cbs[FILES], *list[FILES + 1];
	struct io_event ev[FILES + 1], result;
	char *buf = aligned_buf(BLOCK, 0);
	int pipefd[2], polls = 0;

	ck_assert_int_eq(pipe(pipefd), 0);
	io_prep_poll(&poll_cb, pipefd[0], POLLIN);
	list[0] = &poll_cb;
	for (int f = 0; f < FILES; f++) {
		io_prep_pread(&cbs[f], files[f], buf, BLOCK, 0);
		list[f + 1] = &cbs[f];
	}
	ck_assert_int_eq(io_submit(ctx, FILES + 1, list), FILES + 1);
	reap_n(ctx, FILES, ev, 5000);
	for (int i = 0; i < FILES; i++)
		ck_assert_ptr_ne(ev[i].obj, &poll_cb);
	ck_assert_int_eq(io_cancel(ctx, &poll_cb, &result), -EINPROGRESS);
	reap_n(ctx, 1, ev, 2000);
	ck_assert_ptr_eq(ev[0].obj, &poll_cb);
	ck_assert_int_eq((long)ev[0].res, polls);
	close(pipefd[0]);
	close(pipefd[1]);
	free(buf);
}
END_TEST

#define THREADS FILES
#define ROUNDS 64

/* Each thread writes its file block by block; the main thread reaps. */
static void *writer_main(void *arg)
{
	int f = (int)(long)arg;
	char *buf = aligned_buf(BLOCK, 'A' + f);
	static struct iocb cbs[THREADS][ROUNDS];

	for (int round = 0; round < ROUNDS; round++) {
		struct iocb *cb = &cbs[f][round];

		io_prep_pwrite(cb, files[f], buf, BLOCK, (round % PER_FILE) * BLOCK);
		cb->data = (void *)(long)f;
		while (io_submit(ctx, 1, &cb) == -EAGAIN)
			sched_yield();
	}
	return buf;
}

START_TEST(threads_submit_to_every_file)
{
	pthread_t threads[THREADS];
	struct io_event ev[32];
	int seen[THREADS] = { 0 }, total = 0;
	char *check = aligned_buf(BLOCK, 0);

	for (long t = 0; t < THREADS; t++)
		ck_assert_int_eq(pthread_create(&threads[t], NULL, writer_main, (void *)t), 0);
	while (total < THREADS * ROUNDS) {
		int n = getevents_ms(ctx, 1, 32, ev, 5000);

		ck_assert_int_gt(n, 0);
		for (int i = 0; i < n; i++) {
			ck_assert_int_eq((long)ev[i].res, BLOCK);
			seen[(long)ev[i].data]++;
		}
		total += n;
	}
	for (int t = 0; t < THREADS; t++) {
		void *buf;

		ck_assert_int_eq(pthread_join(threads[t], &buf), 0);
		free(buf);
		ck_assert_int_eq(seen[t], ROUNDS);
		ck_assert_int_eq(pread(files[t], check, BLOCK, 0), BLOCK);
		ck_assert_int_eq(check[0], 'A' + t);
	}
	free(check);
}
END_TEST

/* io_destroy with reads of every file and a poll in flight returns. */
START_TEST(destroy_in_flight)
{
	struct iocb poll_cb, cbs[FILES * PER_FILE], *list[FILES * PER_FILE + 1];
	char *buf = aligned_buf(BLOCK * FILES * PER_FILE, 0);
	io_context_t doomed = NULL;
	int pipefd[2], n = 0;

	ck_assert_int_eq(pipe(pipefd), 0);
	ck_assert_int_eq(io_setup(64, &doomed), 0);
	io_prep_poll(&poll_cb, pipefd[0], POLLIN);
	list[n++] = &poll_cb;
	for (int f = 0; f < FILES; f++)
		for (int i = 0; i < PER_FILE; i++) {
			io_prep_pread(&cbs[n - 1], files[f], buf + (n - 1) * BLOCK, BLOCK,
				      i * BLOCK);
			list[n] = &cbs[n - 1];
			n++;
		}
	ck_assert_int_eq(io_submit(doomed, n, list), n);
	ck_assert_int_eq(io_destroy(doomed), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	free(buf);
}
END_TEST

/*
 * A number closed and opened again at once on an O_DIRECT file: the reads
 * that follow read the new file, and their events come.
 */
START_TEST(number_reused_for_another_file)
{
	char *buf = aligned_buf(BLOCK * PER_FILE, 0);
	struct iocb cbs[PER_FILE], *list[PER_FILE];
	struct io_event ev[PER_FILE];
	int direct = tmpfile_in("/var/tmp", PER_FILE * BLOCK, O_DIRECT);

	/* Blocks on the disk, so that O_DIRECT reads go to the device. */
	memset(buf, 'd', BLOCK * PER_FILE);
	ck_assert_int_eq(pwrite(direct, buf, BLOCK * PER_FILE, 0), BLOCK * PER_FILE);
	ck_assert_int_eq(fsync(direct), 0);
	io_prep_pread(&cbs[0], files[0], buf, BLOCK, 0);
	ck_assert_int_eq(submit_one(ctx, &cbs[0]), 1);
	ck_assert_int_eq(reap_one(ctx, &cbs[0]), BLOCK);
	ck_assert_int_eq(dup2(direct, files[0]), files[0]);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < PER_FILE; i++) {
			io_prep_pread(&cbs[i], files[0], buf + i * BLOCK, BLOCK, i * BLOCK);
			list[i] = &cbs[i];
		}
		ck_assert_int_eq(io_submit(ctx, PER_FILE, list), PER_FILE);
		/* Without a timeout: a completion that wakes no one hangs the check. */
		ck_assert_int_eq(io_getevents(ctx, PER_FILE, PER_FILE, ev, NULL), PER_FILE);
		for (int i = 0; i < PER_FILE; i++) {
			ck_assert_int_eq((long)ev[i].res, BLOCK);
			ck_assert_int_eq(((char *)ev[i].obj->u.c.buf)[0], 'd');
		}
		memset(buf, 0, BLOCK * PER_FILE);
	}
	close(direct);
	free(buf);
}
END_TEST

/* A thread asleep in io_getevents is woken by reads another thread submits. */
START_TEST(sleeper_woken_by_reads_done_in_submit)
{
	struct waiter w = { .ctx = ctx, .min_nr = PER_FILE };
	char *buf = aligned_buf(BLOCK * PER_FILE, 0);
	struct iocb cbs[PER_FILE], *list[PER_FILE];
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, waiter_main, &w), 0);
	usleep(50000);
	for (int i = 0; i < PER_FILE; i++) {
		io_prep_pread(&cbs[i], files[0], buf + i * BLOCK, BLOCK, i * BLOCK);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, PER_FILE, list), PER_FILE);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.ret, PER_FILE);
	free(buf);
}
END_TEST

static Suite *mixed_suite(void)
{
	Suite *s = suite_create("mixed");
	TCase *tc = tcase_create("one context, every kind of file");

	tcase_add_checked_fixture(tc, ctx_up, ctx_down);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, tmpfs_reads_need_no_worker);
	tcase_add_test(tc, every_kind_in_one_batch);
	tcase_add_test(tc, eventfd_counts_both_paths);
	tcase_add_test(tc, poll_and_cancel_among_reads);
	tcase_add_test(tc, threads_submit_to_every_file);
	tcase_add_test(tc, destroy_in_flight);
	tcase_add_test(tc, number_reused_for_another_file);
	tcase_add_test(tc, sleeper_woken_by_reads_done_in_submit);
	tcase_add_test(tc, cold_reads_through_io_uring);
	tcase_add_test(tc, cold_reads_outlive_their_thread);
	tcase_add_test(tc, cold_reads_leave_waits_whole);
	tcase_add_test(tc, cold_reads_while_others_are_sent);
	tcase_add_test(tc, cold_reads_keep_their_file);
	tcase_add_loop_test(tc, cold_reads_with_iocbs_unmapped, 0, 2);
	tcase_add_test(tc, cold_file_let_go_once_closed);
	tcase_add_test(tc, cached_cold_file_turns_warm);
	tcase_add_test(tc, destroy_with_cold_reads_in_flight);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(mixed_suite(), "mixed");
}
