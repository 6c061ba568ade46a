/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cold reads, on an auto context (native.c): buffered reads of a file on
 * disk whose pages are not in memory. Native AIO reads them inside
 * io_submit, one after another, the caller blocked on the disk; io_uring
 * starts them all without blocking. So the reads of a file seen to block
 * go to an io_uring of the context's own, made at the first such file,
 * and each one it finished is posted to the kernel's context by native.c.
 *
 * A file is judged cold when an io_submit that read it took long (native.c
 * times one call in SAMPLE_EVERY), and warm again once COLD_HITS of its
 * reads in a row finished inside io_uring's submission: native AIO reads
 * pages in memory at once, and cheaper. Only a regular file that is not
 * itself in memory, open for reading and not O_DIRECT, is ever cold.
 *
 * A cold file is held (fd_hold()) from its judgement until it is warm
 * again and no read of it is in flight, and every read goes to that hold:
 * the file read is the one the number named at io_submit, whatever the
 * program does with the number before the fetcher sends it. The number is
 * asked once per io_submit call whether it still names the hold's file
 * (fd_same(), one fcntl that changes no descriptor table); if not, the
 * file is warm.
 * So is a file the program closed without reading it again, at the first
 * sweep (prefetch_sweep()), so that its hold keeps no deleted file's
 * blocks.
 *
 * The reads are sent to the kernel by native.c's fetcher thread, never by
 * the program's: io_uring finishes a buffered read that waited for a page
 * with task work on the thread that sent it, and that interrupts whatever
 * the thread waits in (TIF_NOTIFY_SIGNAL). The program's io_getevents
 * would end short of min_nr, and its epoll_wait with EINTR, with no signal.
 * They are posted as they finish by native.c's poster thread, so that the
 * fetcher goes on sending meanwhile.
 *
 * Everything here runs under the context's lock but prefetch_send(), the
 * waits, prefetch_wake() and prefetch_stop().
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "valgrind.h"

#define COLD_HITS 256
#define SUBMIT_TRIES 4

struct cold_file {
	int held;	/* the library's descriptor of it, or -1 */
	unsigned users; /* reads sent on held, not yet posted */
	uint16_t hits;	/* reads in a row found in memory */
	bool cold;
	uint64_t asked; /* the io_submit call that last found the number names held */
};

struct prefetch {
	struct io_uring ring;
	int null_fd;	/* /dev/null: what a fetched read is posted as */
	int wake_fd;	/* an eventfd: the fetcher has reads to send, or must end */
	int stop_fd;	/* an eventfd, written once: the poster must end */
	uint32_t round; /* the submissions so far */
	bool sending;	/* the last round's submission is not yet reaped */
	time_t swept;	/* the second of the last prefetch_sweep() */
	unsigned nr_files, cold_nr;
	struct cold_file *files; /* by the program's fd number */
};

/* fd moved among the library's own numbers (fd_hold()), or -1. */
static int held(int fd)
{
	int ret = fd < 0 ? -1 : fd_hold(fd);

	if (fd >= 0)
		close_nocancel(fd);
	return ret < 0 ? -1 : ret;
}

struct prefetch *prefetch_new(unsigned entries)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE };
	struct prefetch *pf = calloc(1, sizeof(*pf));

	if (!pf)
		return NULL;
	p.cq_entries = entries > PREFETCH_SQ ? entries : PREFETCH_SQ;
	pf->null_fd = held(open("/dev/null", O_WRONLY | O_CLOEXEC));
	pf->wake_fd = held(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	pf->stop_fd = held(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (pf->null_fd < 0 || pf->wake_fd < 0 || pf->stop_fd < 0 ||
	    io_uring_queue_init_params(PREFETCH_SQ, &pf->ring, &p)) {
		int fds[] = { pf->null_fd, pf->wake_fd, pf->stop_fd };

		for (int i = 0; i < 3; i++)
			if (fds[i] >= 0)
				close_nocancel(fds[i]);
		free(pf);
		return NULL;
	}
	/* SQ slot i holds SQE i, as prefetch_read() fills them. */
	for (unsigned i = 0; i < pf->ring.sq.ring_entries; i++)
		pf->ring.sq.array[i] = i;
	return pf;
}

void prefetch_free(struct prefetch *pf)
{
	io_uring_queue_exit(&pf->ring);
	close_nocancel(pf->null_fd);
	close_nocancel(pf->wake_fd);
	close_nocancel(pf->stop_fd);
	for (unsigned fd = 0; fd < pf->nr_files; fd++)
		if (pf->files[fd].held >= 0)
			close_nocancel(pf->files[fd].held);
	free(pf->files);
	free(pf);
}

int prefetch_null_fd(const struct prefetch *pf)
{
	return pf->null_fd;
}

bool prefetch_any_cold(const struct prefetch *pf)
{
	return pf && pf->cold_nr;
}

bool prefetch_cold(const struct prefetch *pf, int fd)
{
	return (unsigned)fd < pf->nr_files && pf->files[fd].cold;
}

/* Its hold is let go once no read of it is in flight. */
static void file_let_go(struct cold_file *f)
{
	if (!f->cold && !f->users && f->held >= 0) {
		close_nocancel(f->held);
		f->held = -1;
	}
}

static void file_warm(struct prefetch *pf, int fd)
{
	if (prefetch_cold(pf, fd)) {
		pf->files[fd].cold = false;
		pf->cold_nr--;
		file_let_go(&pf->files[fd]);
	}
}

/* A regular file whose pages can be away on a disk, read through the page cache. */
bool prefetch_can_be_cold(int fd)
{
	struct statfs fs;
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fl & (O_DIRECT | O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
		return false;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || fstatfs(fd, &fs))
		return false;
	return fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC;
}

/*
 * fd, not cold, which prefetch_can_be_cold() found can be: it is, and
 * held. Not while reads of what it named before are in flight on the
 * hold of that file: it stays warm until a later look.
 */
void prefetch_judge(struct prefetch *pf, int fd)
{
	int held;

	if ((unsigned)fd >= pf->nr_files) {
		unsigned n = pf->nr_files ? pf->nr_files : 64;
		struct cold_file *files;

		while (n <= (unsigned)fd)
			n *= 2;
		files = realloc(pf->files, n * sizeof(*files));
		if (!files)
			return;
		for (unsigned i = pf->nr_files; i < n; i++)
			files[i] = (struct cold_file){ .held = -1 };
		pf->files = files;
		pf->nr_files = n;
	}
	if (pf->files[fd].held >= 0)
		return;
	held = fd_hold(fd);
	if (held < 0)
		return;
	pf->files[fd] = (struct cold_file){ .held = held, .cold = true };
	pf->cold_nr++;
}

/*
 * The hold a read of cold fd is sent on, taken once more; -1 if the number
 * names another file now (the file is then warm, and native AIO reads it).
 * The number is asked once per io_submit call (call, counted from 1): the
 * kernel too looks each iocb's number up as it comes to it, so a program
 * that closes it on another thread during the call races the kernel as
 * much as the library.
 */
int prefetch_take(struct prefetch *pf, const struct aio_ctx *ctx, int fd, uint64_t call)
{
	struct cold_file *f = &pf->files[fd];

	if (f->asked != call && unlikely(!fd_same(ctx, fd, f->held))) {
		file_warm(pf, fd);
		return -1;
	}
	f->asked = call;
	f->users++;
	return f->held;
}

/* A read prefetch_take() sent on fd's hold is posted. */
void prefetch_put(struct prefetch *pf, int fd)
{
	struct cold_file *f = &pf->files[fd];

	f->users--;
	file_let_go(f);
}

/*
 * Once a second at most: the cold files whose numbers the program closed
 * or gave to other files are warm, and let go.
 */
void prefetch_sweep(struct prefetch *pf, const struct aio_ctx *ctx)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	if (!pf->cold_nr || now.tv_sec == pf->swept)
		return;
	pf->swept = now.tv_sec;
	for (unsigned fd = 0; fd < pf->nr_files; fd++)
		if (pf->files[fd].cold && !fd_same(ctx, (int)fd, pf->files[fd].held))
			file_warm(pf, (int)fd);
}

/*
 * Queues req's read for the fetcher to send; false if the SQ is full. It
 * is in the kernel's SQ at once, for prefetch_send() to hand over without
 * the lock: the fetcher alone enters the ring, and the kernel consumes
 * nothing outside io_uring_enter (no SQPOLL).
 */
bool prefetch_read(struct prefetch *pf, struct req *req)
{
	struct io_uring_sq *sq = &pf->ring.sq;
	unsigned tail = sq->sqe_tail;
	struct io_uring_sqe *sqe;

	if (tail - io_uring_smp_load_acquire(sq->khead) >= sq->ring_entries)
		return false;
	sqe = &sq->sqes[tail & sq->ring_mask];
	io_uring_prep_read(sqe, req_fd(req), (void *)(uintptr_t)req->kiocb.u.c.buf,
			   (unsigned)req->kiocb.u.c.nbytes, (uint64_t)req->kiocb.u.c.offset);
	io_uring_sqe_set_data(sqe, req);
	req->round = pf->round;
	sq->sqe_head = sq->sqe_tail = tail + 1;
	io_uring_smp_store_release(sq->ktail, tail + 1);
	return true;
}

/*
 * Under the lock, before prefetch_send(): the reads queued from now on are
 * the next round's. Those of this round reaped before prefetch_sent()
 * finished inside the submission.
 */
void prefetch_round_end(struct prefetch *pf)
{
	pf->round++;
	pf->sending = true;
}

/* Under the lock, once what the submission finished is reaped. */
void prefetch_sent(struct prefetch *pf)
{
	pf->sending = false;
}

/*
 * Without the context's lock: hands the kernel the reads queued until now.
 * False if it turned them away (-EAGAIN, -EBUSY) SUBMIT_TRIES times: then
 * prefetch_withdraw() takes them back, for native AIO to read.
 */
bool prefetch_send(struct prefetch *pf)
{
	struct io_uring_sq *sq = &pf->ring.sq;
	unsigned tail = io_uring_smp_load_acquire(sq->ktail), head;
	int tries = 0;

	while ((head = io_uring_smp_load_acquire(sq->khead)) != tail)
		if (io_uring_enter(pf->ring.ring_fd, tail - head, 0, 0, NULL) <= 0 &&
		    ++tries == SUBMIT_TRIES)
			return false;
	return true;
}

/* Under the lock: the reads the kernel has not taken, withdrawn into left[]. */
int prefetch_withdraw(struct prefetch *pf, struct req **left)
{
	struct io_uring_sq *sq = &pf->ring.sq;
	unsigned head = io_uring_smp_load_acquire(sq->khead);
	int n = 0;

	for (unsigned i = head; i != sq->sqe_tail; i++)
		left[n++] = (struct req *)(uintptr_t)sq->sqes[i & sq->ring_mask].user_data;
	sq->sqe_head = sq->sqe_tail = head;
	io_uring_smp_store_release(sq->ktail, head);
	return n;
}

/*
 * Takes up to max finished reads. A read found in memory within the
 * submission that sent it (prefetch_round_end()) is a hit, whichever
 * thread reaps it; enough of them in a row and the file is warm.
 */
int prefetch_reap(struct prefetch *pf, struct req **out, int max)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int n = 0;

	io_uring_for_each_cqe (&pf->ring, head, cqe) {
		struct req *req = io_uring_cqe_get_data(cqe);
		struct cold_file *f;

		if (n == max)
			break;
		seen++;
		req->res = cqe->res;
		valgrind_read_done(req, cqe->res);
		out[n++] = req;
		if ((unsigned)req->prog_fd >= pf->nr_files || !pf->files[req->prog_fd].cold)
			continue;
		f = &pf->files[req->prog_fd];
		if (!pf->sending || req->round != pf->round - 1)
			f->hits = 0;
		else if (++f->hits == COLD_HITS)
			file_warm(pf, req->prog_fd);
	}
	io_uring_cq_advance(&pf->ring, seen);
	return n;
}

/*
 * The waits are in ppoll, without the context's lock: valgrind lets other
 * threads run beside it, where it holds them all while one waits in
 * io_uring_enter. The kernel's system calls: no cancellation point.
 */
static short wait_for(int fd, int other)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = other, .events = POLLIN } };

	kernel_syscall(__NR_ppoll, (long)p, other >= 0 ? 2 : 1, 0, 0, 0, 0);
	return p[0].revents;
}

/*
 * The fetcher sleeps until prefetch_wake() is called, and until a read
 * finished too if no poster takes them. Asleep or not, it runs the task
 * work of the reads it sent as they finish: a wait the kernel cuts short
 * for it is restarted.
 */
void prefetch_wait_to_send(struct prefetch *pf, bool and_done)
{
	uint64_t count;

	if (wait_for(pf->wake_fd, and_done ? pf->ring.ring_fd : -1) & POLLIN)
		kernel_syscall(__NR_read, pf->wake_fd, (long)&count, sizeof(count), 0, 0, 0);
}

/* The poster sleeps until a read may have finished, or prefetch_stop(). */
void prefetch_wait_done(struct prefetch *pf)
{
	wait_for(pf->ring.ring_fd, pf->stop_fd);
}

void prefetch_wake(struct prefetch *pf)
{
	uint64_t one = 1;

	kernel_syscall(__NR_write, pf->wake_fd, (long)&one, sizeof(one), 0, 0, 0);
}

/* Both threads' waits end, for good. */
void prefetch_stop(struct prefetch *pf)
{
	uint64_t one = 1;

	prefetch_wake(pf);
	kernel_syscall(__NR_write, pf->stop_fd, (long)&one, sizeof(one), 0, 0, 0);
}
