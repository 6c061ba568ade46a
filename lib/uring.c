/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The io_uring backend: each iocb becomes one SQE whose user_data is the
 * request; each CQE becomes the event. CQEs whose user_data is 0 are the
 * library's own (wake-ups, poll removals) and are skipped.
 */
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "valgrind.h"

#define SQ_ENTRIES_MAX 128u
#define CQ_ENTRIES_MAX 65536u /* the kernel's IORING_MAX_CQ_ENTRIES */

/*
 * How often a submission the kernel turns away whole (-EAGAIN: no memory
 * for requests; -EINTR) is tried before io_submit answers -EAGAIN, as
 * native AIO does when it lacks resources.
 */
#define SUBMIT_TRIES 4

/*
 * Writes never go to io_uring: it hands a write it cannot do at once to
 * io-wq, which cancels the work not yet started when the process exits,
 * and a fatal signal cuts a running buffered write short. They go to a
 * native AIO context of the ring's own instead, which does a buffered
 * write inside io_submit and an O_DIRECT one as block I/O the kernel
 * completes even if the process dies, as libaio does.
 *
 * The native context's completions are read from its ring; its eventfd,
 * polled in the io_uring ring, wakes whoever sleeps there. Where the
 * kernel lacks native AIO, or a uring context was set up at the
 * descriptor limit, everything stays on io_uring.
 */
struct uring {
	struct io_uring ring; /* first: ctx->priv is also the io_uring */
	unsigned long aio;    /* native AIO context; 0: all goes to io_uring */
	int aio_fd;	      /* the eventfd its completions signal */
	bool poll_oneshot;    /* no multishot poll (before 5.13) */
	bool wake_posted;     /* a RING_WAKE not yet reaped */
};

/* The user_data of the poll on aio_fd, and of a wake-up; no request is at 1 or 2. */
#define AIO_POLL 1ull
#define RING_WAKE 2ull

static struct aio_ring *aio_ring_of(const struct uring *u)
{
	return (struct aio_ring *)u->aio;
}

#define AIO_BATCH 64

/*
 * AIO_COMPAT_URING_EMULATE=MAJOR.MINOR, read at each io_setup, makes the
 * library meet io_uring as that kernel would: the setup flags it lacks are
 * refused with -EINVAL, and before 5.6 (or with "none") io_uring lacks
 * what the library needs. The running kernel does all the rest: this only
 * lets tests take the paths an older kernel sends the library down.
 */
#define LINUX(major, minor) ((major) << 8 | (minor))
#define URING_USABLE_SINCE LINUX(5, 6) /* IORING_OP_READ, the probe */

static const struct {
	unsigned flag;
	unsigned since;
} setup_flags_since[] = {
	{ IORING_SETUP_SUBMIT_ALL, LINUX(5, 18) },
	{ IORING_SETUP_COOP_TASKRUN, LINUX(5, 19) },
	{ IORING_SETUP_SINGLE_ISSUER, LINUX(6, 0) },
	{ IORING_SETUP_DEFER_TASKRUN, LINUX(6, 1) },
};

/* The kernel to act as, or UINT_MAX for the running one. */
static unsigned emulated_kernel(void)
{
	const char *env = getenv("AIO_COMPAT_URING_EMULATE");
	unsigned major, minor;

	if (!env)
		return UINT_MAX;
	if (!strcmp(env, "none"))
		return 0;
	if (sscanf(env, "%u.%u", &major, &minor) != 2 || major > 255 || minor > 255)
		return UINT_MAX;
	return LINUX(major, minor);
}

static int queue_init(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		      unsigned kernel)
{
	for (unsigned i = 0; i < sizeof(setup_flags_since) / sizeof(setup_flags_since[0]); i++)
		if (p->flags & setup_flags_since[i].flag && kernel < setup_flags_since[i].since)
			return -EINVAL;
	int ret = io_uring_queue_init_params(entries, ring, p);

	if (!ret)
		ring_mapped();
	return ret;
}

static const int needed_ops[] = {
	IORING_OP_READ,	 IORING_OP_WRITE,    IORING_OP_READV,	    IORING_OP_WRITEV,
	IORING_OP_FSYNC, IORING_OP_POLL_ADD, IORING_OP_POLL_REMOVE,
};

/* On the stack: a probe that could not allocate would pass for a refusal. */
static int probe_ops(void)
{
	_Alignas(struct io_uring_probe) unsigned char
	    buf[sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op)] = { 0 };
	struct io_uring_probe *probe = (struct io_uring_probe *)buf;
	struct io_uring ring;
	int ret = io_uring_queue_init(2, &ring, 0);

	if (ret)
		return ret;
	ring_mapped();
	if (io_uring_register_probe(&ring, probe, 256) < 0)
		ret = -ENOSYS;
	for (unsigned i = 0; !ret && i < sizeof(needed_ops) / sizeof(needed_ops[0]); i++)
		if (!io_uring_opcode_supported(probe, needed_ops[i]))
			ret = -ENOSYS;
	ring_unmapping();
	io_uring_queue_exit(&ring);
	return ret;
}

static bool lasting(int err)
{
	return err != -ENOMEM && err != -EAGAIN && err != -EMFILE && err != -ENFILE;
}

/*
 * 0 when this process can make rings with every opcode needed, else why
 * not. Asked again until the answer lasts: a lack of memory or descriptors
 * passes. Concurrent askers store the same answer.
 */
int backend_probe_uring(void)
{
	static _Atomic int answer = 1;
	int ret = atomic_load_explicit(&answer, memory_order_relaxed);

	if (emulated_kernel() < URING_USABLE_SINCE)
		return -ENOSYS;
	if (ret != 1)
		return ret;
	ret = probe_ops();
	if (lasting(ret))
		atomic_store_explicit(&answer, ret, memory_order_relaxed);
	return ret;
}

static unsigned pow2_at_least(unsigned n)
{
	unsigned p = 1;

	while (p < n)
		p *= 2;
	return p;
}

/*
 * COOP_TASKRUN: io_uring finishes io-wq reads and O_DIRECT completions in
 * task work of the submitting thread, and by default interrupts that
 * thread for it wherever it runs. Cooperative, a sleeping submitter is
 * still woken at once, and a running one posts them at its next entry
 * into the kernel, at the latest its next timer tick. Reads from tmpfs
 * run at about 1.5 times the rate (fio's io_uring engine sets it too).
 * AIO_COMPAT_URING_COOP=0 keeps the interrupt.
 */
static unsigned coop_taskrun(void)
{
	const char *env = getenv("AIO_COMPAT_URING_COOP");

	return env && !strcmp(env, "0") ? 0 : IORING_SETUP_COOP_TASKRUN;
}

#define SINGLE_ISSUER (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)

/* The flag an older kernel may lack, newest first, to drop on -EINVAL. */
static unsigned newest_flag(unsigned flags)
{
	if (flags & SINGLE_ISSUER)
		return SINGLE_ISSUER;
	if (flags & IORING_SETUP_COOP_TASKRUN)
		return IORING_SETUP_COOP_TASKRUN;
	return IORING_SETUP_SUBMIT_ALL;
}

/*
 * Single issuer: io-wq completions become task work that only the ring's
 * thread runs, when it enters to get events, instead of each interrupting
 * it; fio's reads from tmpfs go about 1.3 times as fast.
 *
 * The CQ holds every CQE that can wait in it: one per request in flight
 * (its slot is freed only once its CQE is reaped), one per poll removal
 * (a poll is removed once) and one wake-up. Each publish drains it: the program's ring has
 * room for every request in flight, as in-flight requests and unreaped
 * events together stay within max_outstanding. So it never overflows,
 * which on older kernels (5.10) would fail every submission with -EBUSY
 * until a reap, and the reap needs the lock the submitter holds. Only
 * contexts of more than CQ_ENTRIES_MAX / 2 requests could fill it.
 */
static int ring_init(struct aio_ctx *ctx, struct io_uring *ring, bool *single_issuer)
{
	unsigned outstanding = ctx->max_outstanding;
	unsigned cqes = outstanding < CQ_ENTRIES_MAX / 2 ? 2 * outstanding + 1 : CQ_ENTRIES_MAX;
	unsigned sq = pow2_at_least(outstanding < SQ_ENTRIES_MAX ? outstanding : SQ_ENTRIES_MAX);
	unsigned cq = pow2_at_least(cqes);
	unsigned flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | coop_taskrun();
	unsigned kernel = emulated_kernel();
	int ret;

	if (*single_issuer)
		flags |= SINGLE_ISSUER;
	for (;;) {
		struct io_uring_params p = { .flags = flags, .cq_entries = cq };

		ret = queue_init(sq, ring, &p, kernel);
		if (ret != -EINVAL || flags == IORING_SETUP_CQSIZE)
			break;
		flags &= ~newest_flag(flags);
	}
	*single_issuer = !ret && flags & SINGLE_ISSUER;
	return ret;
}

/*
 * An SQE of the library's own. A full SQ holds SQEs the kernel has not
 * taken yet: they go first, to make room.
 */
static struct io_uring_sqe *own_sqe(struct io_uring *ring, int *err)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	int ret;

	if (!sqe) {
		ret = io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
		*err = ret < 0 ? ret : -EAGAIN;
	}
	return sqe;
}

/* Submits own_sqe's SQE; one the kernel does not take is withdrawn. */
static int own_submit(struct io_uring *ring)
{
	unsigned start = ring->sq.sqe_tail - 1;
	int ret = io_uring_submit(ring);

	if (ret >= 0)
		return 0;
	ring->sq.sqe_head = ring->sq.sqe_tail = start;
	io_uring_smp_store_release(ring->sq.ktail, start);
	return ret;
}

/* Polls aio_fd: multishot where the kernel has it, else one-shot. */
static int aio_poll_arm(struct uring *u)
{
	int ret = 0;
	struct io_uring_sqe *sqe = own_sqe(&u->ring, &ret);

	if (!sqe)
		return ret;
	if (u->poll_oneshot)
		io_uring_prep_poll_add(sqe, u->aio_fd, POLLIN);
	else
		io_uring_prep_poll_multishot(sqe, u->aio_fd, POLLIN);
	sqe->user_data = AIO_POLL;
	return own_submit(&u->ring);
}

static void aio_close(struct uring *u)
{
	if (u->aio) {
		ring_unmapping();
		kernel_syscall(__NR_io_destroy, (long)u->aio, 0, 0, 0, 0, 0);
	}
	if (u->aio_fd >= 0)
		close(u->aio_fd);
	u->aio = 0;
	u->aio_fd = -1;
}

/* The native AIO context; none where the kernel lacks it. */
static int aio_open(struct uring *u, unsigned nr)
{
	int ret;

	u->aio_fd = -1;
	if (kernel_syscall(__NR_io_setup, nr, (long)&u->aio, 0, 0, 0, 0) < 0) {
		u->aio = 0;
		return errno == ENOSYS || errno == EPERM ? 0 : -errno;
	}
	ring_mapped();
	valgrind_defined((void *)u->aio,
			 sizeof(struct aio_ring) + aio_ring_of(u)->nr * sizeof(struct io_event));
	u->aio_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = u->aio_fd < 0 ? -errno : aio_poll_arm(u);
	if (ret)
		aio_close(u);
	return ret;
}

static int uring_setup(struct aio_ctx *ctx, bool *single_issuer)
{
	struct uring *u;
	int ret;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	ret = ring_init(ctx, &u->ring, single_issuer);
	if (ret) {
		free(u);
		return ret;
	}
	ret = aio_open(u, ctx->max_outstanding);
	/*
	 * Its eventfd is the ring's second descriptor: at the limit the ring
	 * goes without, and its writes go to io_uring.
	 */
	if (ret == -EMFILE || ret == -ENFILE)
		ret = 0;
	if (ret) {
		ring_unmapping();
		io_uring_queue_exit(&u->ring);
		free(u);
		return ret;
	}
	ctx->priv = u;
	return 0;
}

/* The kernel's io_destroy waits for the requests still in flight there. */
static void uring_teardown(struct aio_ctx *ctx)
{
	struct uring *u = ctx->priv;

	aio_close(u);
	ring_unmapping();
	io_uring_queue_exit(&u->ring);
	free(u);
	ctx->priv = NULL;
}

static void prep_rw(struct io_uring_sqe *sqe, const struct iocb *io)
{
	unsigned long len = io->u.c.nbytes;
	int fd = io->aio_fildes;

	switch (io->aio_lio_opcode) {
	case IO_CMD_PREAD:
		io_uring_prep_read(sqe, fd, io->u.c.buf,
				   len > MAX_RW_COUNT ? MAX_RW_COUNT : (unsigned)len,
				   (uint64_t)io->u.c.offset);
		break;
	case IO_CMD_PWRITE:
		io_uring_prep_write(sqe, fd, io->u.c.buf,
				    len > MAX_RW_COUNT ? MAX_RW_COUNT : (unsigned)len,
				    (uint64_t)io->u.c.offset);
		break;
	case IO_CMD_PREADV:
		io_uring_prep_readv(sqe, fd, io->u.v.vec, (unsigned)io->u.v.nr,
				    (uint64_t)io->u.v.offset);
		break;
	default:
		io_uring_prep_writev(sqe, fd, io->u.v.vec, (unsigned)io->u.v.nr,
				     (uint64_t)io->u.v.offset);
		break;
	}
	/* Native AIO ignores RWF_HIPRI (nobody polls); a plain ring refuses it. */
	sqe->rw_flags = io->aio_rw_flags & ~RWF_HIPRI;
	if (io->u.c.flags & IOCB_FLAG_IOPRIO)
		sqe->ioprio = io->aio_reqprio;
}

static void prep(struct io_uring_sqe *sqe, struct req *req)
{
	const struct iocb *io = &req->kiocb;

	switch (io->aio_lio_opcode) {
	case IO_CMD_FSYNC:
		io_uring_prep_fsync(sqe, io->aio_fildes, 0);
		break;
	case IO_CMD_FDSYNC:
		io_uring_prep_fsync(sqe, io->aio_fildes, IORING_FSYNC_DATASYNC);
		break;
	case IO_CMD_POLL:
		io_uring_prep_poll_add(sqe, io->aio_fildes, (unsigned)(uintptr_t)io->u.c.buf);
		break;
	default:
		prep_rw(sqe, io);
		break;
	}
	io_uring_sqe_set_data(sqe, req);
}

/* How many of the SQEs from start on the kernel has consumed. */
static unsigned sqes_consumed(struct io_uring *ring, unsigned start)
{
	int consumed = (int)(io_uring_smp_load_acquire(ring->sq.khead) - start);

	return consumed > 0 ? (unsigned)consumed : 0;
}

/* Takes back the SQEs from start on, which the kernel has not consumed. */
static void sqes_withdraw(struct io_uring *ring, unsigned start)
{
	ring->sq.sqe_head = ring->sq.sqe_tail = start;
	io_uring_smp_store_release(ring->sq.ktail, start);
}

/*
 * Errors in an SQE come back as its CQE. With IORING_SETUP_SUBMIT_ALL the
 * kernel takes all or none; without it (before 5.18) it stops after an SQE
 * that failed at submission, whose CQE it has posted, and leaves the rest
 * in the SQ: valid requests, which go in again. A submission turned away
 * whole is tried SUBMIT_TRIES times, no more: with the lock held nothing
 * else can change, and -EBUSY (a full CQ, on older kernels) clears only
 * with a reap. What the kernel does not take is withdrawn: it must not go
 * out later for requests refused.
 */
static int sq_submit(struct aio_ctx *ctx, struct req **reqs, int n)
{
	struct io_uring *ring = ctx->priv;
	unsigned start = ring->sq.sqe_tail, taken;
	int ret, tries = 0;

	for (int i = 0; i < n; i++)
		prep(io_uring_get_sqe(ring), reqs[i]);
	do {
		ret = ctx->single_issuer ? io_uring_submit_and_get_events(ring)
					 : io_uring_submit(ring);
		taken = sqes_consumed(ring, start);
	} while (taken < (unsigned)n &&
		 (ret > 0 || ((ret == -EINTR || ret == -EAGAIN) && ++tries < SUBMIT_TRIES)));
	if (taken == (unsigned)n)
		return n;
	sqes_withdraw(ring, start + taken);
	if (taken)
		return (int)taken;
	return ret < 0 && ret != -EBUSY && ret != -EINTR ? ret : -EAGAIN;
}

/*
 * To the native context, as the program's iocbs but for the request as
 * data and the library's eventfd; the program's eventfd is signalled when
 * the event is published, as for the ring's.
 */
static int aio_submit(struct uring *u, struct req **reqs, int n)
{
	struct iocb iocbs[AIO_BATCH], *ios[AIO_BATCH];
	int done = 0, err = 0;

	while (done < n) {
		int batch = n - done < AIO_BATCH ? n - done : AIO_BATCH;
		long ret;

		for (int i = 0; i < batch; i++) {
			struct req *req = reqs[done + i];

			iocbs[i] = req->kiocb;
			iocbs[i].data = req;
			ios[i] = &iocbs[i];
			iocbs[i].u.c.flags |= IOCB_FLAG_RESFD;
			iocbs[i].u.c.resfd = (unsigned)u->aio_fd;
		}
		ret = kernel_syscall(__NR_io_submit, (long)u->aio, batch, (long)ios, 0, 0, 0);
		if (ret < 0) {
			err = -errno;
			break;
		}
		done += (int)ret;
		if (ret < batch)
			break;
	}
	return done ? done : err;
}

/* Writes go to the native context. */
static bool goes_native(const struct uring *u, const struct req *req)
{
	return u->aio && opcode_is_write(req_opcode(req));
}

/* Run by run: those that go native to their context, the rest to the ring. */
static int uring_submit(struct aio_ctx *ctx, struct req **reqs, int n)
{
	struct uring *u = ctx->priv;
	int done = 0;

	for (int i = 0; i < n; i++)
		reqs[i]->cancelled = false;
	while (done < n) {
		bool native = goes_native(u, reqs[done]);
		int run = 1, ret;

		while (done + run < n && goes_native(u, reqs[done + run]) == native)
			run++;
		ret = native ? aio_submit(u, reqs + done, run) : sq_submit(ctx, reqs + done, run);
		if (ret < 0)
			return done ? done : ret;
		done += ret;
		if (ret < run)
			break;
	}
	return done;
}

/*
 * What native AIO reports: the events asked for, with POLLERR and POLLHUP
 * always; a cancelled poll reports the events it saw: none.
 */
static long poll_result(const struct req *req, int res)
{
	unsigned asked = (unsigned)(uintptr_t)req->kiocb.u.c.buf | POLLERR | POLLHUP;

	if (res == -ECANCELED)
		return 0;
	return res < 0 ? res : (long)((unsigned)res & asked);
}

/*
 * io_uring looks at the fd's mode before the flags and the priority,
 * native AIO after: where both are wrong, the flags' error is native's.
 */
static long rw_result(const struct req *req, int res)
{
	const struct iocb *io = &req->kiocb;
	int native;

	if (likely(res != -EBADF) || !(io->aio_rw_flags || io->u.c.flags & IOCB_FLAG_IOPRIO))
		return res;
	native = kernel_refusal(io, res);
	return native == -EOPNOTSUPP || native == -EPERM ? native : res;
}

static bool aio_ready(const struct uring *u)
{
	const struct aio_ring *r = aio_ring_of(u);

	return u->aio && r->head != __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
}

static void aio_event(const struct io_event *ev, struct completion *out)
{
	out->req = (struct req *)(uintptr_t)ev->data;
	out->res = (long)ev->res;
	out->res2 = (long)ev->res2;
	valgrind_read_done(out->req, out->res);
}

/* The native context's events, from its ring, as fio's userspace_reap reads it. */
static int aio_reap(struct uring *u, struct completion *out, int max)
{
	struct aio_ring *r = aio_ring_of(u);
	unsigned head = r->head, tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	int n = 0;

	while (head != tail && n < max) {
		aio_event(&r->io_events[head], &out[n]);
		head = (head + 1) % r->nr;
		n++;
	}
	__atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
	return n;
}

/*
 * The poll's CQE. A multishot poll posts one for each signal whatever
 * aio_fd's count, which is never read. A one-shot poll fires at once on a
 * count not zero: aio_fd is drained before the ring is read, so that a
 * request that completes later signals it again. A poll that ended
 * (one-shot, or multishot refused or dropped) is armed again.
 */
static void aio_poll_seen(struct uring *u, const struct io_uring_cqe *cqe)
{
	uint64_t count;

	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	if (cqe->res == -EINVAL)
		u->poll_oneshot = true;
	/* Not read(): a reap is no cancellation point. */
	if (u->poll_oneshot)
		kernel_syscall(__NR_read, u->aio_fd, (long)&count, sizeof(count), 0, 0, 0);
	aio_poll_arm(u);
}

static int uring_reap(struct aio_ctx *ctx, struct completion *out, int max)
{
	struct uring *u = ctx->priv;
	struct io_uring *ring = &u->ring;
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int n = 0;

	if (!io_uring_cq_ready(ring) && io_uring_cq_has_overflow(ring))
		io_uring_get_events(ring);
	io_uring_for_each_cqe (ring, head, cqe) {
		struct req *req = io_uring_cqe_get_data(cqe);

		if (cqe->user_data == AIO_POLL) {
			seen++;
			aio_poll_seen(u, cqe);
			continue;
		}
		if (cqe->user_data == RING_WAKE) {
			seen++;
			u->wake_posted = false;
			continue;
		}

		/* The library's own need no room: none stays behind. */
		if (req && n == max)
			break;
		seen++;
		if (!req)
			continue;
		out[n].req = req;
		out[n].res2 = 0;
		if (req_opcode(req) == IO_CMD_POLL)
			out[n].res = poll_result(req, cqe->res);
		else
			out[n].res = rw_result(req, cqe->res);
		valgrind_read_done(req, out[n].res);
		n++;
	}
	io_uring_cq_advance(ring, seen);
	if (u->aio && n < max)
		n += aio_reap(u, out + n, max - n);
	return n;
}

static bool uring_ready(struct aio_ctx *ctx)
{
	struct uring *u = ctx->priv;

	return io_uring_cq_ready(&u->ring) || io_uring_cq_has_overflow(&u->ring) || aio_ready(u);
}

static void uring_run_deferred(struct aio_ctx *ctx)
{
	io_uring_get_events(ctx->priv);
}

static void uring_arm(struct aio_ctx *ctx)
{
	(void)ctx;
}

/* The ring's fd polls readable while CQEs wait, aio_fd's poll's too. */
static int uring_wait_fd(struct aio_ctx *ctx)
{
	return ((struct io_uring *)ctx->priv)->ring_fd;
}

static int uring_wait(struct aio_ctx *ctx, const struct timespec *timeout, const sigset_t *sigmask)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	int ret;

	if (timeout) {
		ts.tv_sec = timeout->tv_sec;
		ts.tv_nsec = timeout->tv_nsec;
	}
	ret = io_uring_wait_cqes(ctx->priv, &cqe, 1, timeout ? &ts : NULL, (sigset_t *)sigmask);
	return ret == -EINTR ? -EINTR : 0;
}

/* A poll's removal; one the kernel does not take fails, so that no one waits for it. */
static int uring_cancel(struct aio_ctx *ctx, struct req *req)
{
	struct io_uring *ring = ctx->priv;
	int ret = 0;
	struct io_uring_sqe *sqe = own_sqe(ring, &ret);

	if (!sqe)
		return ret;
	io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)req);
	io_uring_sqe_set_data(sqe, NULL);
	ret = own_submit(ring);
	return ret ? ret : -EINPROGRESS;
}

/*
 * A NOP's CQE, posted inside io_uring_enter, wakes every thread in ppoll
 * on the ring's fd with no descriptor of its own; one at a time, for the
 * CQ has room for one (ring_init). Where it cannot be posted (another
 * thread on a single issuer's ring), no one sleeps there to wake.
 */
static void uring_wake(struct aio_ctx *ctx)
{
	struct uring *u = ctx->priv;
	struct io_uring_sqe *sqe;
	int err;

	if (u->wake_posted)
		return;
	sqe = own_sqe(&u->ring, &err);
	if (!sqe)
		return;
	io_uring_prep_nop(sqe);
	sqe->user_data = RING_WAKE;
	u->wake_posted = !own_submit(&u->ring);
}

/*
 * A poll is removed once: a second io_cancel finds it gone (-EINVAL), as
 * the kernel's does, and the CQ needs room for one removal per request.
 */
static int uring_cancel_once(struct aio_ctx *ctx, struct req *req)
{
	int ret;

	if (req->cancelled)
		return -EINVAL;
	ret = uring_cancel(ctx, req);
	req->cancelled = ret == -EINPROGRESS;
	return ret;
}

const struct engine uring_engine = {
	.kind = AIO_COMPAT_URING,
	.calls = &ring_calls,
	.thread_bound = true,
	.setup = uring_setup,
	.teardown = uring_teardown,
	.submit = uring_submit,
	.reap = uring_reap,
	.ready = uring_ready,
	.run_deferred = uring_run_deferred,
	.arm = uring_arm,
	.wait_fd = uring_wait_fd,
	.cancel = uring_cancel_once,
	.wait = uring_wait,
	.wake = uring_wake,
};
