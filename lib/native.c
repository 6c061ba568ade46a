/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The native backend: the program's handle is the kernel's own AIO
 * context, as libaio's is. The kernel fills its ring, signals the iocbs'
 * eventfds and answers every call as it answers libaio, so a program that
 * reads the ring itself (QEMU), waits on eventfds, or makes the system
 * calls itself (MariaDB's InnoDB; inline ones too) pays nothing here.
 *
 * The library adds only the honest-fsync rule (order.c). A write is
 * counted from io_submit until its event shows in the kernel's ring; a sync
 * that finds writes to its fd in flight is held, with its own hold of the
 * file and the eventfd, and issued once they have all completed.
 *
 * Completions are seen by scanning the ring from a cursor, whoever reaps
 * them (the library, the program from the ring, or a system call the
 * library never sees). The scan runs under the context's lock at every
 * call, before anything is submitted, so an event cannot be overwritten
 * before it is scanned: between two scans only the requests in flight at
 * the first can complete, fewer than the ring has slots. A held sync is
 * issued at the first call after its writes completed; should no call
 * come (a program that only waits on the sync's eventfd), a watcher thread
 * scans the ring while syncs are held, at intervals that grow from 50 us
 * to 5 ms, and ends once none is.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "valgrind.h"

#define WATCH_MIN_NS 50000L
#define WATCH_MAX_NS 5000000L

/*
 * On an auto context, one io_submit in SAMPLE_EVERY is timed; one without
 * writes or syncs that took over COLD_NS per iocb and a nanosecond per
 * byte waited for a disk, and the files it read are judged (prefetch.c).
 * A buffered read of 4 KiB in memory takes 1-2 us here, of 4 KiB on a
 * disk 30 us and more.
 */
#define SAMPLE_EVERY 16
#define COLD_NS 4000

/* iocbs to the kernel, and events from it, at a time */
#define FLUSH_MAX 64

struct native {
	unsigned long id;    /* the kernel's context: the handle, and its ring */
	unsigned cursor;     /* the next ring slot to scan */
	long inflight;	     /* submitted, their events not yet scanned */
	unsigned writes;     /* counted writes in the table */
	unsigned held;	     /* syncs the rule holds, issued or not */
	struct req *pending; /* released syncs the kernel had no room for */
	unsigned mask;	     /* the table has mask + 1 buckets */
	struct req **table;  /* counted writes, by iocb address */
	unsigned stash_head, stash_nr;
	struct io_event *stash; /* events io_queue_wait took from the kernel */
	_Atomic bool kept;	/* held or stash_nr: a reaper must look first */
	bool watching, watch_stop;
	pthread_cond_t watch_cond;
	/* A program's iocb is changed while the kernel reads it (submit_kept()). */
	_Atomic bool swapping;
	pthread_mutex_t swap_lock;
	/* Under swap_lock: iocbs of the library's that carry kept requests. */
	struct stand_in *stand_ins;
	_Atomic bool standing; /* stand_ins is not empty */
	/* auto: cold reads go through io_uring first (prefetch.c). */
	bool prefetching;     /* an auto context */
	bool prefetch_failed; /* no io_uring could be made for it */
	struct prefetch *pf;  /* made at the first cold file */
	uint64_t calls;	      /* io_submit calls: one in SAMPLE_EVERY is timed */
	unsigned fetches;     /* cold reads whose events are not yet posted */
	bool to_send;	      /* cold reads queued for io_uring, not yet sent */
	bool fetcher, poster, fetch_stop;
	bool fetch_asleep; /* the fetcher waits, and no one has woken it */
};

static struct native *native(struct aio_ctx *ctx)
{
	return ctx->priv;
}

/* Under the lock, after held or stash_nr changed. */
static void kept_update(struct native *nat)
{
	atomic_store_explicit(&nat->kept, nat->held || nat->stash_nr, memory_order_relaxed);
}

/* Where syscall.c is not linked in (the static library), glibc's is the kernel's. */
__attribute__((weak)) long kernel_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	return syscall(nr, a, b, c, d, e, f);
}

static long sys_submit(struct native *nat, long n, struct iocb **ios)
{
	long ret;

#ifdef __SANITIZE_THREAD__
	struct iocb *io;

	for (long i = 0;
	     i < n && !copy_from_prog(&io, &ios[i], sizeof(io)) && !bad_user_ptr(io, sizeof(*io));
	     i++)
		tsan_release(io);
#endif
	ret = kernel_syscall(__NR_io_submit, nat->id, n, (long)ios, 0, 0, 0);

	return ret < 0 ? -errno : ret;
}

/*
 * A kept request whose iocb the program unmapped or made read-only since
 * its io_submit is carried to the kernel by an iocb of the library's; the
 * events the library takes name the program's iocb again.
 */
struct stand_in {
	struct iocb io;
	struct iocb *obj; /* the program's */
	struct stand_in *next;
};

/* Under swap_lock: the program's iocb for an event's, or NULL. */
static struct iocb *stand_in_take(struct native *nat, const void *io)
{
	for (struct stand_in **p = &nat->stand_ins; *p; p = &(*p)->next) {
		struct stand_in *s = *p;
		struct iocb *obj = s->obj;

		if (&s->io != io)
			continue;
		*p = s->next;
		free(s);
		atomic_store_explicit(&nat->standing, nat->stand_ins, memory_order_relaxed);
		return obj;
	}
	return NULL;
}

/*
 * Events the kernel gave, made as the program's before the caller takes
 * them. One may be a kept request's whose iocb submit_kept() has not yet
 * put back as the program wrote it: the kernel posted it after the flag
 * was set, so a reaper that sees the flag clear sees the iocb put back,
 * and one that sees it set waits for swap_lock. One may name a stand-in:
 * it names the program's iocb again.
 */
static void events_settled(struct native *nat, struct io_event *ev, long n)
{
	if (likely(!atomic_load_explicit(&nat->swapping, memory_order_acquire) &&
		   !atomic_load_explicit(&nat->standing, memory_order_relaxed)))
		return;
	pthread_mutex_lock(&nat->swap_lock);
	for (long i = 0; nat->stand_ins && i < n; i++) {
		struct iocb *obj = stand_in_take(nat, (void *)(uintptr_t)ev[i].obj);

		if (obj)
			ev[i].obj = obj;
	}
	pthread_mutex_unlock(&nat->swap_lock);
}

static bool has_pgetevents;

/*
 * io_pgetevents (Linux 4.18) is missing before 4.18, and under valgrind:
 * valgrind 3.19 has no wrapper for it, and answers -ENOSYS without
 * entering the kernel (warning "unhandled amd64-linux syscall: 333"; only
 * valgrind itself can add one). Its answer is taken as given, without the
 * call and its warning. Without it, waits are io_getevents, as on those
 * kernels: they take no signal mask, and end with -EINTR after io_uring's
 * task work.
 */
static void pgetevents_probe(void)
{
	has_pgetevents =
	    !valgrind_running() &&
	    (kernel_syscall(__NR_io_pgetevents, 0, 0, 0, 0, 0, 0) == 0 || errno != ENOSYS);
}

/*
 * io_pgetevents restarts itself after io_uring's task work, where
 * io_getevents would answer -EINTR. A system call, as libaio's: no
 * cancellation point.
 */
static long sys_getevents(struct native *nat, long min_nr, long nr, struct io_event *ev,
			  const struct timespec *timeout, const sigset_t *sigmask)
{
	struct {
		const sigset_t *set;
		size_t size;
	} sig = { sigmask, _NSIG / 8 };
	long ret;

	if (has_pgetevents)
		ret = kernel_syscall(__NR_io_pgetevents, nat->id, min_nr, nr, (long)ev,
				     (long)timeout, sigmask ? (long)&sig : 0);
	else
		ret = kernel_syscall(__NR_io_getevents, nat->id, min_nr, nr, (long)ev,
				     (long)timeout, 0);
	if (ret < 0)
		ret = -errno;
	if (ret > 0)
		events_settled(nat, ev, ret);
#ifdef __SANITIZE_THREAD__
	for (long i = 0; i < ret; i++)
		tsan_acquire(ev[i].obj);
#endif
	return ret;
}

/*
 * ios[i] and its iocb, copied as the kernel copies them; false where the
 * kernel would answer -EFAULT.
 */
static bool fetch(struct iocb *const *ios, long i, struct iocb **io, struct iocb *copy)
{
	return copy_iocbs_from_prog(ios + i, 1, io, copy) == 1;
}

static unsigned table_slot(const struct native *nat, const struct iocb *obj)
{
	return (unsigned)(((uintptr_t)obj >> 6) * 0x9e3779b97f4a7c15ull >> 32) & nat->mask;
}

static void table_add(struct native *nat, struct req *req)
{
	struct req **b = &nat->table[table_slot(nat, req->obj)];

	req->hnext = *b;
	*b = req;
	nat->writes++;
}

static struct req *table_take(struct native *nat, const struct iocb *obj)
{
	for (struct req **p = &nat->table[table_slot(nat, obj)]; *p; p = &(*p)->hnext) {
		struct req *req = *p;

		if (req->obj == obj) {
			*p = req->hnext;
			nat->writes--;
			return req;
		}
	}
	return NULL;
}

static void native_issue(struct aio_ctx *ctx, struct req *req);
static void issue_pending(struct aio_ctx *ctx);
static void watch_start(struct aio_ctx *ctx);

/* Every event the kernel posted since the last scan; see the top. */
static void scan(struct aio_ctx *ctx, unsigned tail)
{
	struct native *nat = native(ctx);
	unsigned nr = ctx->ring_nr, cur = nat->cursor;

	nat->inflight -= tail > cur ? tail - cur : tail + nr - cur;
	if (nat->inflight < 0)
		nat->inflight = 0; /* submissions the library never saw */
	for (; nat->writes && cur != tail; cur = cur + 1 == nr ? 0 : cur + 1) {
		struct req *req = table_take(nat, ctx->ring->io_events[cur].obj);

		if (req) {
			struct req *sync = order_write_done(ctx, req), *next;

			for (; sync; sync = next) {
				next = sync->next;
				native_issue(ctx, sync);
			}
			req_free(ctx, req);
		}
	}
	nat->cursor = tail;
	if (unlikely(nat->pending))
		issue_pending(ctx);
}

static inline void catch_up(struct aio_ctx *ctx)
{
	unsigned tail =
	    atomic_load_explicit((_Atomic unsigned *)&ctx->ring->tail, memory_order_acquire);

	if (likely(tail != native(ctx)->cursor && tail < ctx->ring_nr))
		scan(ctx, tail);
}

/*
 * What the kernel is shown of a request the library kept: the iocb as
 * submitted, at the program's address so that the event names it, on the
 * library's holds of its file and eventfd where the program's numbers no
 * longer name them. A program that rewrote the iocb since still gets the
 * request it submitted. A cold read io_uring finished is shown as a write
 * of as many bytes to /dev/null, which touches no byte of the buffer: its
 * event, eventfd and place in the ring are the read's. One io_uring failed
 * is read again by native AIO, which gives its own answer.
 */
static void kept_iocb(struct aio_ctx *ctx, const struct req *req, struct iocb *io)
{
	*io = req->kiocb;
	if (req->fetched && req->res >= 0) {
		io->aio_lio_opcode = IO_CMD_PWRITE;
		io->aio_fildes = (uint32_t)prefetch_null_fd(native(ctx)->pf);
		io->u.c.nbytes = (unsigned long)req->res;
		io->u.c.offset = 0;
		if (req->resfd >= 0)
			io->u.c.resfd = (uint32_t)req->resfd;
		return;
	}
	if (fd_same(ctx, req->prog_fd, req_fd(req)))
		io->aio_fildes = (uint32_t)req->prog_fd;
	if (req->resfd >= 0 && !fd_same(ctx, (int)io->u.c.resfd, req->resfd))
		io->u.c.resfd = (uint32_t)req->resfd;
}

static void fetch_free(struct aio_ctx *ctx, struct req *req)
{
	prefetch_put(native(ctx)->pf, req->prog_fd);
	req_free(ctx, req);
}

/* Under swap_lock: an iocb of the library's that reads as io, or NULL. */
static struct iocb *stand_in(struct native *nat, const struct iocb *io, struct iocb *obj)
{
	struct stand_in *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	s->io = *io;
	s->obj = obj;
	s->next = nat->stand_ins;
	nat->stand_ins = s;
	atomic_store_explicit(&nat->standing, true, memory_order_relaxed);
	return &s->io;
}

/*
 * Where the program's iocb does not read as the request (kept_iocb()),
 * it is written so for the kernel to read, and put back once the kernel
 * has: was is what it held. Where it cannot be read or written, an iocb
 * of the library's is shown instead. NULL for none, for want of memory.
 */
static struct iocb *kept_show(struct aio_ctx *ctx, struct req *req, struct iocb *was, bool *wrote,
			      bool *locked)
{
	struct native *nat = native(ctx);
	struct iocb want, *io;
	bool readable;

	kept_iocb(ctx, req, &want);
	readable = !copy_from_prog(was, req->obj, sizeof(*was));
	*wrote = false;
	if (readable && !memcmp(&want, was, sizeof(want)))
		return req->obj;
	if (!*locked) {
		pthread_mutex_lock(&nat->swap_lock);
		atomic_store_explicit(&nat->swapping, true, memory_order_relaxed);
		*locked = true;
	}
	if (readable) {
		*wrote = true;
		if (!copy_to_prog(req->obj, &want, sizeof(want)))
			return req->obj;
	}
	io = stand_in(nat, &want, req->obj);
	if (!io && *wrote)
		copy_to_prog(req->obj, was, sizeof(*was));
	return io;
}

/*
 * Issues kept requests: how many the kernel took, or its error for the
 * first. The kernel copies each iocb and takes its own references, so the
 * program's iocbs are put back and the holds dropped at once.
 */
static long submit_kept(struct aio_ctx *ctx, struct req **reqs, int n)
{
	struct native *nat = native(ctx);
	struct iocb was[FLUSH_MAX], *ios[FLUSH_MAX];
	bool wrote[FLUSH_MAX], locked = false;
	long ret = -EAGAIN;
	int shown;

	for (shown = 0; shown < n; shown++) {
		ios[shown] = kept_show(ctx, reqs[shown], &was[shown], &wrote[shown], &locked);
		if (!ios[shown])
			break;
	}
	if (shown)
		ret = sys_submit(nat, shown, ios);
	if (locked) {
		for (int i = 0; i < shown; i++) {
			if (wrote[i])
				copy_to_prog(reqs[i]->obj, &was[i], sizeof(was[i]));
			if (i >= ret && ios[i] != reqs[i]->obj)
				stand_in_take(nat, ios[i]);
		}
		atomic_store_explicit(&nat->swapping, false, memory_order_release);
		pthread_mutex_unlock(&nat->swap_lock);
	}
	for (long i = 0; i < ret; i++) {
		nat->inflight++;
		if (reqs[i]->fetched) {
			nat->fetches--;
			fetch_free(ctx, reqs[i]);
		} else {
			nat->held--;
			req_free(ctx, reqs[i]);
		}
	}
	kept_update(nat);
	return ret;
}

/*
 * What would refuse the request was refused when it was kept: only a
 * shortage (-EAGAIN, a full ring) refuses it now, and it is tried again
 * at each scan, once events have been reaped. A cold read io_uring
 * failed is read again on the library's hold of its file; should native
 * AIO refuse it all the same, it is posted as read empty, so that it
 * still completes once.
 */
static void native_issue(struct aio_ctx *ctx, struct req *req)
{
	struct req **tail = &native(ctx)->pending;
	long ret;

	req->held = false;
	ret = submit_kept(ctx, &req, 1);
	if (ret == 1)
		return;
	if (ret != -EAGAIN && req->fetched && req->res < 0) {
		req->res = 0;
		if (submit_kept(ctx, &req, 1) == 1)
			return;
	}
	while (*tail)
		tail = &(*tail)->next;
	req->next = NULL;
	*tail = req;
	watch_start(ctx);
}

static void issue_pending(struct aio_ctx *ctx)
{
	struct native *nat = native(ctx);

	while (nat->pending) {
		struct req *req = nat->pending, *next = req->next;

		if (submit_kept(ctx, &req, 1) != 1)
			return;
		nat->pending = next;
	}
}

/*
 * A held sync syncs the file it was submitted for, whatever the program
 * does with the number meanwhile: it holds a descriptor of its own until
 * its event is posted.
 */
static int hold_file(struct aio_ctx *ctx, struct req *req)
{
	int fd = fd_hold(req_fd(req));

	if (fd < 0)
		return fd;
	if (order_hold(ctx, req)) {
		close_nocancel(fd);
		return -EAGAIN;
	}
	req->prog_fd = req_fd(req);
	req->kiocb.aio_fildes = (uint32_t)fd;
	req->owns_fd = true;
	return 0;
}

/*
 * What the kernel would refuse of a sync it will see only later, refused
 * now: the fields, the fd, the file, the eventfd.
 */
static int hold(struct aio_ctx *ctx, struct iocb *obj, const struct iocb *io)
{
	struct req *req;
	int ret = check_sync(io);

	if (ret)
		return ret;
	if (!ctx->free_reqs)
		return -EAGAIN;
	req = req_alloc(ctx);
	req->kiocb = *io;
	req->obj = obj;
	req->resfd = -1;
	req->efd_slot = -1;
	if (io->u.c.flags & IOCB_FLAG_RESFD) {
		ret = eventfd_get(ctx, (int)io->u.c.resfd);
		if (ret < 0)
			goto out;
		req->efd_slot = ret;
		req->resfd = eventfd_of(ctx, ret);
	}
	ret = hold_file(ctx, req);
out:
	if (ret) {
		req_free(ctx, req);
		return ret;
	}
	native(ctx)->held++;
	kept_update(native(ctx));
	return 0;
}

static void *watch_main(void *arg);

/*
 * Posts what io_uring finished of the cold reads (see kept_iocb()): the
 * kernel then wakes whoever waits for their events.
 */
static void fetches_post(struct aio_ctx *ctx)
{
	struct req *done[FLUSH_MAX];
	int n;

	do {
		long took;

		n = prefetch_reap(native(ctx)->pf, done, FLUSH_MAX);
		took = n ? submit_kept(ctx, done, n) : 0;
		for (long i = took > 0 ? took : 0; i < n; i++)
			native_issue(ctx, done[i]);
	} while (n == FLUSH_MAX);
}

/*
 * Sends the cold reads queued since the last time, without the lock, so
 * that io_submit and io_getevents go on while the kernel starts them;
 * those io_uring did not take, native AIO reads (and the fetcher waits, as
 * a caller would on libaio). Then posts what finished, at once or earlier.
 */
static void fetches_send(struct aio_ctx *ctx)
{
	struct native *nat = native(ctx);
	struct req *left[PREFETCH_SQ];
	bool sent;
	int n;

	nat->to_send = false;
	prefetch_round_end(nat->pf);
	pthread_mutex_unlock(&ctx->lock);
	sent = prefetch_send(nat->pf);
	pthread_mutex_lock(&ctx->lock);
	n = sent ? 0 : prefetch_withdraw(nat->pf, left);
	for (int i = 0; i < n; i++) {
		left[i]->res = -EAGAIN;
		native_issue(ctx, left[i]);
	}
	fetches_post(ctx);
	prefetch_sent(nat->pf);
}

/*
 * Until the context closes: sends the cold reads io_submit queued, and
 * posts what it finds finished then; the poster posts the rest. The only
 * thread that enters the io_uring, so its task work interrupts no thread
 * of the program's (prefetch.c).
 */
static void *fetch_main(void *arg)
{
	struct aio_ctx *ctx = arg;
	struct native *nat = native(ctx);
	bool alone;

	pthread_mutex_lock(&ctx->lock);
	while (!nat->fetch_stop) {
		/* Reads may be queued while it sends them without the lock. */
		if (nat->to_send) {
			fetches_send(ctx);
			continue;
		}
		fetches_post(ctx);
		alone = !nat->poster;
		nat->fetch_asleep = true;
		pthread_mutex_unlock(&ctx->lock);
		prefetch_wait_to_send(nat->pf, alone);
		pthread_mutex_lock(&ctx->lock);
		nat->fetch_asleep = false;
	}
	nat->fetcher = false;
	pthread_cond_broadcast(&nat->watch_cond);
	pthread_mutex_unlock(&ctx->lock);
	return NULL;
}

/*
 * Posts the cold reads as io_uring finishes them, while the fetcher sends
 * others: the kernel starts a read that misses the page cache inside the
 * submission, and reads queued meanwhile would wait for that too.
 */
static void *post_main(void *arg)
{
	struct aio_ctx *ctx = arg;
	struct native *nat = native(ctx);

	pthread_mutex_lock(&ctx->lock);
	while (!nat->fetch_stop) {
		fetches_post(ctx);
		pthread_mutex_unlock(&ctx->lock);
		prefetch_wait_done(nat->pf);
		pthread_mutex_lock(&ctx->lock);
	}
	nat->poster = false;
	pthread_cond_broadcast(&nat->watch_cond);
	pthread_mutex_unlock(&ctx->lock);
	return NULL;
}

/*
 * Under the lock, after reads were queued: whether the fetcher must be
 * woken (prefetch_wake()), once per sleep. The caller wakes it after
 * unlocking, so that the fetcher does not wake only to wait for the lock.
 */
static bool fetcher_to_wake(struct native *nat)
{
	bool wake = nat->to_send && nat->fetch_asleep;

	if (wake)
		nat->fetch_asleep = false;
	return wake;
}

/* Below the top of user space of every kernel: 47 bits, or 3 GiB. */
#define USER_TOP (sizeof(void *) == 8 ? 0x7ffffffff000ull : 0xc0000000ull)
/* The most a read moves at once (MAX_RW_COUNT) */
#define RW_MAX 0x7ffff000ull

/*
 * What native AIO would refuse of a read, or do otherwise than io_uring
 * (flags, priorities, a buffer not in user space): such a read is left
 * to the kernel.
 */
static bool fetchable(const struct iocb *io)
{
	uint64_t buf = (uintptr_t)io->u.c.buf, len = io->u.c.nbytes;

	return io->aio_lio_opcode == IO_CMD_PREAD && !io->aio_rw_flags && !io->aio_reqprio &&
	       !(io->u.c.flags & ~IOCB_FLAG_RESFD) && !io->u.c.__pad3 && len <= RW_MAX &&
	       buf + len <= USER_TOP && io->u.c.offset >= 0 &&
	       io->u.c.offset <= LLONG_MAX - (long long)len;
}

/*
 * A read of a cold file, kept from native AIO and sent to io_uring: 0, or
 * 1 if it is left to the kernel after all. It is sent on the library's
 * hold of the file (prefetch.c), so that the file read is the one named
 * now, whatever the number names when the fetcher sends it.
 */
static int fetch_cold(struct aio_ctx *ctx, struct iocb *obj, const struct iocb *io)
{
	struct native *nat = native(ctx);
	struct req *req;
	int fd;

	if (!fetchable(io) || !ctx->free_reqs ||
	    nat->inflight + nat->held + nat->fetches + 1 >= ctx->ring_nr)
		return 1;
	fd = prefetch_take(nat->pf, ctx, (int)io->aio_fildes, nat->calls);
	if (fd < 0)
		return 1;
	req = req_alloc(ctx);
	req->kiocb = *io;
	req->kiocb.aio_fildes = (uint32_t)fd;
	req->obj = obj;
	req->prog_fd = (int)io->aio_fildes;
	req->fetched = true;
	req->resfd = -1;
	req->efd_slot = -1;
	if (io->u.c.flags & IOCB_FLAG_RESFD) {
		int slot = eventfd_get(ctx, (int)io->u.c.resfd);

		if (slot >= 0) {
			req->efd_slot = slot;
			req->resfd = eventfd_of(ctx, slot);
		}
	}
	if ((io->u.c.flags & IOCB_FLAG_RESFD && req->resfd < 0) || !prefetch_read(nat->pf, req)) {
		fetch_free(ctx, req);
		return 1;
	}
	nat->fetches++;
	nat->to_send = true;
	return 0;
}

/*
 * Under the lock: the io_uring and the threads that send and post its
 * reads, at the first cold file. Without a poster, the fetcher posts them
 * all (it looks at nat->poster only once it has the lock).
 */
static bool prefetch_start(struct aio_ctx *ctx)
{
	struct native *nat = native(ctx);

	if (nat->prefetch_failed)
		return false;
	nat->pf = prefetch_new(ctx->ring_nr);
	nat->fetcher = nat->pf && !thread_start_detached(fetch_main, ctx);
	nat->poster = nat->fetcher && !thread_start_detached(post_main, ctx);
	if (nat->pf && !nat->fetcher) {
		prefetch_free(nat->pf);
		nat->pf = NULL;
	}
	nat->prefetch_failed = !nat->pf;
	return nat->pf != NULL;
}

/*
 * How long nr iocbs of ios[] may take in memory; the count of them is in
 * *nr, and the fds of their reads that can be cold in fds[] (-1 for none).
 * A write or a sync may wait for the disk whatever the page cache holds
 * (dirty pages, the journal): a batch with one tells nothing of reads.
 */
static uint64_t expected_ns(struct iocb *const *ios, long *nr, int *fds)
{
	uint64_t ns = 0;

	for (long i = 0; i < *nr; i += IOCB_COPY_BATCH) {
		struct iocb *objs[IOCB_COPY_BATCH], copies[IOCB_COPY_BATCH];
		long want = *nr - i < IOCB_COPY_BATCH ? *nr - i : IOCB_COPY_BATCH;
		long got = copy_iocbs_from_prog(ios + i, want, objs, copies);

		for (long k = 0; k < got; k++) {
			int op = copies[k].aio_lio_opcode;

			if (opcode_is_write(op) || opcode_is_sync(op))
				return UINT64_MAX;
			ns += COLD_NS + (copies[k].u.c.nbytes < (1ul << 30) ? copies[k].u.c.nbytes
									    : 1ul << 30);
			fds[i + k] = fetchable(&copies[k]) ? (int)copies[k].aio_fildes : -1;
		}
		if (got < want) {
			*nr = i + got;
			break;
		}
	}
	return ns;
}

/*
 * After a timed io_submit of nr iocbs that took ns: if it waited for a
 * disk, the files it read that can be cold are, from now on. The iocbs
 * are read again, under the guard: if the program has changed them since,
 * a file is judged for nothing.
 */
static void cold_look(struct aio_ctx *ctx, struct iocb *const *ios, long nr, uint64_t ns)
{
	struct native *nat = native(ctx);
	int fds[FLUSH_MAX];

	if (nr > FLUSH_MAX)
		nr = FLUSH_MAX;
	if (ns <= expected_ns(ios, &nr, fds))
		return;
	for (long i = 0; i < nr; i++) {
		if (fds[i] < 0 || (nat->pf && prefetch_cold(nat->pf, fds[i])) ||
		    !prefetch_can_be_cold(fds[i]))
			continue;
		if (!nat->pf && !prefetch_start(ctx))
			return;
		prefetch_judge(nat->pf, fds[i]);
	}
}

static void watch_start(struct aio_ctx *ctx)
{
	struct native *nat = native(ctx);

	if (nat->watching || nat->watch_stop)
		return;
	nat->watching = !thread_start_detached(watch_main, ctx);
}

static void *watch_main(void *arg)
{
	struct aio_ctx *ctx = arg;
	struct native *nat = native(ctx);
	long interval = WATCH_MIN_NS;
	struct timespec deadline;

	pthread_mutex_lock(&ctx->lock);
	while ((nat->held || nat->pending) && !nat->watch_stop) {
		unsigned cursor = nat->cursor;

		deadline_from(&deadline, &(struct timespec){ 0, interval });
		pthread_cond_clockwait(&nat->watch_cond, &ctx->lock, CLOCK_MONOTONIC, &deadline);
		if (nat->watch_stop)
			break;
		catch_up(ctx);
		interval = nat->cursor != cursor	 ? WATCH_MIN_NS
			   : interval * 2 < WATCH_MAX_NS ? interval * 2
							 : WATCH_MAX_NS;
	}
	nat->watching = false;
	pthread_cond_broadcast(&nat->watch_cond);
	pthread_mutex_unlock(&ctx->lock);
	return NULL;
}

/* Hands ios[0..n) to the kernel, n <= FLUSH_MAX, counting the writes it took. */
static long flush_some(struct aio_ctx *ctx, struct iocb **ios, long n)
{
	struct native *nat = native(ctx);
	struct req *reqs[FLUSH_MAX];
	long took, ready = n;

	for (long i = 0; i < n; i++) {
		struct iocb *obj, io;

		reqs[i] = NULL;
		if (!fetch(ios, i, &obj, &io)) {
			ready = i + 1; /* the kernel's -EFAULT is for it */
			break;
		}
		if (!ctx->order.on || !opcode_is_write(io.aio_lio_opcode) ||
		    io.aio_fildes > INT32_MAX)
			continue;
		if (!ctx->free_reqs || order_prepare_write(ctx, (int)io.aio_fildes)) {
			ready = i;
			break;
		}
		reqs[i] = req_alloc(ctx);
		reqs[i]->obj = obj;
		reqs[i]->kiocb.aio_fildes = io.aio_fildes;
		reqs[i]->kiocb.aio_lio_opcode = io.aio_lio_opcode;
		reqs[i]->epoch = UINT32_MAX;
		reqs[i]->resfd = -1;
	}
	took = ready ? sys_submit(nat, ready, ios) : -EAGAIN;
	for (long i = 0; i < ready && i < n; i++) {
		if (!reqs[i])
			continue;
		if (i < took) {
			order_submitted(ctx, reqs[i]);
			table_add(nat, reqs[i]);
		} else {
			req_free(ctx, reqs[i]);
		}
	}
	if (took > 0)
		nat->inflight += took;
	return took;
}

/* How many of ios[0..n) the kernel took, or its error for the first. */
static long flush(struct aio_ctx *ctx, struct iocb **ios, long n)
{
	long done = 0;

	while (done < n) {
		long chunk = n - done < FLUSH_MAX ? n - done : FLUSH_MAX;
		long took = flush_some(ctx, ios + done, chunk);

		if (took < 0)
			return done ? done : took;
		done += took;
		if (took < chunk)
			break;
	}
	return done;
}

/* A sync the rule may hold, or a read of a cold file: each ends a run. */
static bool kept_kind(struct aio_ctx *ctx, const struct iocb *io, bool run_writes)
{
	int op = io->aio_lio_opcode;

	if (io->aio_fildes > INT32_MAX)
		return false;
	if (opcode_is_sync(op))
		return ctx->order.on && (run_writes || order_busy(ctx, (int)io->aio_fildes));
	return op == IO_CMD_PREAD && prefetch_any_cold(native(ctx)->pf) &&
	       prefetch_cold(native(ctx)->pf, (int)io->aio_fildes);
}

/* Keeps a sync the rule holds, or sends a cold read: 0, 1 if not kept, or -errno. */
static int keep(struct aio_ctx *ctx, struct iocb *obj, const struct iocb *io)
{
	int ret;

	if (!opcode_is_sync(io->aio_lio_opcode))
		return fetch_cold(ctx, obj, io);
	catch_up(ctx);
	if (!order_busy(ctx, (int)io->aio_fildes))
		return 1;
	ret = hold(ctx, obj, io);
	if (!ret)
		watch_start(ctx);
	return ret;
}

/*
 * Runs of iocbs go to the kernel as they are. A sync whose fd may have
 * writes in flight ends a run: the run goes first, its writes are counted
 * and what finished inside io_submit (buffered writes) is scanned, and
 * only then is the sync judged. So does a read of a cold file, after
 * which the run goes on without it.
 */
static long submit_ordered(struct aio_ctx *ctx, long nr, struct iocb **ios)
{
	long done = 0, start = 0, ret;
	bool run_writes = false;

	for (long i = 0; i < nr; i++) {
		struct iocb *obj, copy, *io = &copy;

		if (!fetch(ios, i, &obj, &copy))
			break; /* the kernel's -EFAULT, after the run before it */
		if (opcode_is_write(io->aio_lio_opcode))
			run_writes = true;
		if (!kept_kind(ctx, io, run_writes))
			continue;
		ret = i > start ? flush(ctx, ios + start, i - start) : 0;
		if (ret < 0)
			return done ? done : ret;
		done += ret;
		if (ret < i - start)
			return done;
		start = i;
		run_writes = false;
		ret = keep(ctx, obj, io);
		if (ret < 0)
			return done ? done : ret;
		if (ret)
			continue;
		done++;
		start = i + 1;
	}
	/* Up to a bad pointer, or the end: the kernel judges the rest. */
	ret = start < nr ? flush(ctx, ios + start, nr - start) : 0;
	if (ret < 0)
		return done ? done : ret;
	return done + ret;
}

/*
 * Whether the library has anything to do: a write or a sync for the rule,
 * or a read of a cold file, before any bad pointer.
 */
static bool ordered(struct aio_ctx *ctx, struct iocb *const *ios, long nr)
{
	const struct prefetch *pf = native(ctx)->pf;
	bool rule = ctx->order.on, cold = prefetch_any_cold(pf);

	for (long i = 0; i < nr; i += IOCB_COPY_BATCH) {
		struct iocb *objs[IOCB_COPY_BATCH], copies[IOCB_COPY_BATCH];
		long want = nr - i < IOCB_COPY_BATCH ? nr - i : IOCB_COPY_BATCH;
		long got = copy_iocbs_from_prog(ios + i, want, objs, copies);

		for (long k = 0; k < got; k++) {
			int op = copies[k].aio_lio_opcode;

			if (rule && (opcode_is_write(op) || opcode_is_sync(op)))
				return true;
			if (cold && op == IO_CMD_PREAD &&
			    prefetch_cold(pf, (int)copies[k].aio_fildes))
				return true;
		}
		if (got < want)
			return false;
	}
	return false;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long native_submit(struct aio_ctx *ctx, long nr, struct iocb **ios)
{
	struct native *nat = native(ctx);
	uint64_t start = 0;
	bool wake;
	long ret;

	if (nr > ctx->ring_nr)
		nr = ctx->ring_nr;
	if (bad_user_ptr(ios, nr * sizeof(*ios)))
		return -EFAULT;
	pthread_mutex_lock(&ctx->lock);
	if (unlikely(ctx->dead)) {
		pthread_mutex_unlock(&ctx->lock);
		return -EINVAL;
	}
	catch_up(ctx);
	if (nat->prefetching && !(++nat->calls % SAMPLE_EVERY)) {
		start = now_ns();
		if (nat->pf)
			prefetch_sweep(nat->pf, ctx);
	}
	if ((ctx->order.on || prefetch_any_cold(nat->pf)) && ordered(ctx, ios, nr)) {
		ret = submit_ordered(ctx, nr, ios);
	} else {
		ret = sys_submit(nat, nr, ios);
		if (ret > 0)
			nat->inflight += ret;
	}
	wake = fetcher_to_wake(nat);
	if (start && ret > 0) {
		uint64_t ns = now_ns() - start;

		if (ns > (uint64_t)ret * COLD_NS)
			cold_look(ctx, ios, ret, ns);
	}
	pthread_mutex_unlock(&ctx->lock);
	if (wake)
		prefetch_wake(nat->pf);
	return ret;
}

/*
 * Under the lock: events io_queue_wait took, first. An events array the
 * caller cannot take them into leaves them kept (-EFAULT), as the kernel
 * leaves its own in the ring.
 */
static long stash_take(struct native *nat, struct io_event *out, long nr)
{
	long n = nat->stash_nr - nat->stash_head;

	if (n > nr)
		n = nr;
	if (copy_to_prog(out, nat->stash + nat->stash_head, (size_t)n * sizeof(*out)))
		return -EFAULT;
	nat->stash_head += (unsigned)n;
	if (nat->stash_head == nat->stash_nr)
		nat->stash_head = nat->stash_nr = 0;
	kept_update(nat);
	return n;
}

/*
 * Looks at the ring and what is held: 0, -EINVAL for a dead context, or
 * -EFAULT for kept events the caller cannot take. *held says whether a
 * wait must come back after each event, to issue syncs. With nothing
 * kept, the kernel has it all and the lock is not taken: a sync held by
 * another thread meanwhile is the watcher's to issue.
 */
static int enter(struct aio_ctx *ctx, struct io_event *ev, long nr, long *got, bool *held)
{
	struct native *nat = native(ctx);
	long n = 0;

	*held = false;
	if (likely(!atomic_load_explicit(&nat->kept, memory_order_relaxed)))
		return 0;
	pthread_mutex_lock(&ctx->lock);
	if (unlikely(ctx->dead)) {
		pthread_mutex_unlock(&ctx->lock);
		return -EINVAL;
	}
	catch_up(ctx);
	if (nat->stash_nr)
		n = stash_take(nat, ev + *got, nr - *got);
	if (n > 0)
		*got += n;
	*held = nat->held != 0;
	pthread_mutex_unlock(&ctx->lock);
	return n < 0 ? (int)n : 0;
}

static bool ring_empty(const struct aio_ctx *ctx)
{
	return atomic_load_explicit((_Atomic unsigned *)&ctx->ring->tail, memory_order_acquire) ==
	       atomic_load_explicit((_Atomic unsigned *)&ctx->ring->head, memory_order_relaxed);
}

/*
 * io_getevents is the kernel's, with events io_queue_wait took first.
 * While a sync is held, each wait comes back at the first event, so that
 * the sync is issued as soon as its writes are done.
 */
static long native_getevents(struct aio_ctx *ctx, long min_nr, long nr, struct io_event *events,
			     const struct timespec *timeout, const sigset_t *sigmask)
{
	struct native *nat = native(ctx);
	/* Set wherever limited is: zeroed for gcc, which cannot tell. */
	struct timespec deadline = { 0 }, left;
	bool held, limited = false;
	long got = 0, n;
	int err;

	if (likely(!atomic_load_explicit(&nat->kept, memory_order_relaxed)))
		return sys_getevents(nat, min_nr, nr, events, timeout, sigmask);
	err = enter(ctx, events, nr, &got, &held);
	if (err)
		return err;
	if (got >= min_nr && got)
		return got;
	if (held && timeout)
		limited = deadline_from(&deadline, timeout);
	while (held) {
		const struct timespec *wait = limited ? &left : NULL;

		if (limited && !time_left(&deadline, &left) && got >= min_nr)
			return got;
		n = sys_getevents(nat, got < min_nr ? 1 : 0, nr - got, events + got, wait, sigmask);
		if (n < 0)
			return got ? got : n;
		got += n;
		err = enter(ctx, events, nr, &got, &held);
		if (err)
			return got ? got : err;
		if (got >= min_nr)
			return got;
		if (limited && !time_left(&deadline, &left))
			return got;
	}
	n = sys_getevents(nat, min_nr - got, nr - got, events + got,
			  limited ? (time_left(&deadline, &left), &left) : timeout, sigmask);
	if (n < 0)
		return got ? got : n;
	return got + n;
}

/* io_queue_run's batches: no wait. */
static long native_take(struct aio_ctx *ctx, struct io_event *ev, long nr)
{
	static const struct timespec now;
	long got = 0;
	bool held;
	int err = enter(ctx, ev, nr, &got, &held);

	if (err)
		return err;
	if (got)
		return got;
	return sys_getevents(native(ctx), 0, nr, ev, &now, NULL);
}

/* Events io_queue_wait took, kept for whoever reaps next. */
static void stash_put(struct native *nat, const struct io_event *ev, long n)
{
	if (nat->stash_head) {
		nat->stash_nr -= nat->stash_head;
		memmove(nat->stash, nat->stash + nat->stash_head, nat->stash_nr * sizeof(*ev));
		nat->stash_head = 0;
	}
	memcpy(nat->stash + nat->stash_nr, ev, (size_t)n * sizeof(*ev));
	nat->stash_nr += (unsigned)n;
	kept_update(nat);
}

/*
 * Waits for an event without handing it to the caller: what the kernel
 * gives is kept for the next io_getevents or io_queue_run. Every event is
 * taken once, so the stash never holds more than the ring.
 */
static int native_queue_wait(struct aio_ctx *ctx, const struct timespec *deadline)
{
	struct native *nat = native(ctx);
	struct io_event ev[FLUSH_MAX];
	struct timespec left;
	long n;

	pthread_mutex_lock(&ctx->lock);
	for (;;) {
		if (ctx->dead) {
			n = -EINVAL;
			break;
		}
		catch_up(ctx);
		n = 0;
		if (nat->stash_nr || !ring_empty(ctx) ||
		    (!nat->inflight && !nat->held && !nat->fetches))
			break;
		if (deadline && !time_left(deadline, &left))
			break;
		pthread_mutex_unlock(&ctx->lock);
		n = sys_getevents(nat, 1, FLUSH_MAX, ev, deadline ? &left : NULL, NULL);
		pthread_mutex_lock(&ctx->lock);
		if (n > 0)
			stash_put(nat, ev, n);
		if (n < 0)
			break;
	}
	pthread_mutex_unlock(&ctx->lock);
	return n < 0 ? (int)n : 0;
}

/* The kernel no longer writes result (the event goes to the ring): not passed on. */
static int native_cancel(struct aio_ctx *ctx, struct iocb *iocb)
{
	struct io_event unused;
	long ret;

	pthread_mutex_lock(&ctx->lock);
	if (!ctx->dead)
		catch_up(ctx);
	pthread_mutex_unlock(&ctx->lock);
	ret = kernel_syscall(__NR_io_cancel, native(ctx)->id, (long)iocb, (long)&unused, 0, 0, 0);
	return ret < 0 ? -errno : (int)ret;
}

/*
 * As the kernel's io_destroy: held syncs are issued once their writes are
 * done, and the kernel then waits for everything in flight. The events
 * die with the context, so taking them here robs nobody.
 */
static void native_close(struct aio_ctx *ctx)
{
	struct native *nat = native(ctx);
	struct io_event ev[64];

	pthread_mutex_lock(&ctx->lock);
	nat->watch_stop = true;
	pthread_cond_broadcast(&nat->watch_cond);
	while (nat->watching)
		pthread_cond_wait(&nat->watch_cond, &ctx->lock);
	for (catch_up(ctx); nat->held || nat->fetches; catch_up(ctx)) {
		pthread_mutex_unlock(&ctx->lock);
		sys_getevents(nat, 1, 64, ev, NULL, NULL);
		pthread_mutex_lock(&ctx->lock);
	}
	nat->fetch_stop = true;
	if (nat->pf)
		prefetch_stop(nat->pf);
	while (nat->fetcher || nat->poster)
		pthread_cond_wait(&nat->watch_cond, &ctx->lock);
	pthread_mutex_unlock(&ctx->lock);
	ring_unmapping();
	kernel_syscall(__NR_io_destroy, nat->id, 0, 0, 0, 0, 0);
	ctx->ring = NULL;
}

static void native_release(struct aio_ctx *ctx);

static int native_setup(struct aio_ctx *ctx, unsigned nr, int flags)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct native *nat = calloc(1, sizeof(*nat));
	unsigned buckets = 64;

	(void)flags; /* all io_uring's */
	if (!nat)
		return -ENOMEM;
	if (kernel_syscall(__NR_io_setup, nr, (long)&nat->id, 0, 0, 0, 0) < 0) {
		int ret = -errno;

		free(nat);
		return ret;
	}
	ring_mapped();
	pthread_once(&once, pgetevents_probe);
	pthread_cond_init(&nat->watch_cond, NULL);
	pthread_mutex_init(&nat->swap_lock, NULL);
	ctx->priv = nat;
	nat->prefetching = ctx->engine == &auto_engine;
	ctx->ring = (struct aio_ring *)nat->id;
	ctx->ring_nr = ctx->ring->nr;
	ctx->max_outstanding = ctx->ring_nr;
	nat->cursor = ctx->ring->tail;
	valgrind_defined(ctx->ring,
			 sizeof(struct aio_ring) + ctx->ring_nr * sizeof(struct io_event));
	while (buckets < ctx->ring_nr)
		buckets *= 2;
	nat->mask = buckets - 1;
	nat->table = calloc(buckets, sizeof(*nat->table));
	nat->stash = calloc(ctx->ring_nr, sizeof(*nat->stash));
	if (!nat->table || !nat->stash) {
		native_release(ctx);
		return -ENOMEM;
	}
	return 0;
}

static void native_release(struct aio_ctx *ctx)
{
	struct native *nat = native(ctx);

	if (!nat)
		return;
	if (ctx->ring)
		native_close(ctx);
	if (nat->pf)
		prefetch_free(nat->pf);
	pthread_cond_destroy(&nat->watch_cond);
	pthread_mutex_destroy(&nat->swap_lock);
	free(nat->table);
	free(nat->stash);
	/* Those whose events only a reader of the ring took. */
	while (nat->stand_ins)
		stand_in_take(nat, &nat->stand_ins->io);
	free(nat);
	ctx->priv = NULL;
}

/* The handle dies at once; the kernel's io_destroy then waits. */
static int native_destroy(struct aio_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	if (ctx->dead) {
		pthread_mutex_unlock(&ctx->lock);
		return -EINVAL;
	}
	ctx->dead = true;
	pthread_mutex_unlock(&ctx->lock);
	registry_retire(ctx);
	native_close(ctx);
	return 0;
}

const struct ctx_calls native_calls = {
	.setup = native_setup,
	.release = native_release,
	.destroy = native_destroy,
	.submit = native_submit,
	.getevents = native_getevents,
	.take = native_take,
	.queue_wait = native_queue_wait,
	.cancel = native_cancel,
};

const struct engine native_engine = {
	.kind = AIO_COMPAT_NATIVE,
	.calls = &native_calls,
};

/* Native, with cold reads through io_uring first. */
const struct engine auto_engine = {
	.kind = AIO_COMPAT_AUTO,
	.calls = &native_calls,
};
