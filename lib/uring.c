/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The io_uring backend: each iocb becomes one SQE whose user_data is the
 * request; each CQE becomes the event. CQEs whose user_data is 0 are the
 * library's own (wake-ups, poll removals) and are skipped.
 */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "internal.h"

#define SQ_ENTRIES_MAX 128u
#define CQ_ENTRIES_MAX 65536u
#define MAX_RW_COUNT (0x7fffffffu & ~4095u)

static const int needed_ops[] = {
	IORING_OP_READ,  IORING_OP_WRITE,    IORING_OP_READV,       IORING_OP_WRITEV,
	IORING_OP_FSYNC, IORING_OP_POLL_ADD, IORING_OP_POLL_REMOVE,
};

static int probe_result;

static void probe_once(void)
{
	struct io_uring_probe *probe;
	struct io_uring ring;

	probe_result = io_uring_queue_init(2, &ring, 0);
	if (probe_result)
		return;
	probe = io_uring_get_probe_ring(&ring);
	if (!probe)
		probe_result = -ENOSYS;
	for (unsigned i = 0; probe && i < sizeof(needed_ops) / sizeof(needed_ops[0]); i++)
		if (!io_uring_opcode_supported(probe, needed_ops[i]))
			probe_result = -ENOSYS;
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
}

/* 0 when this process can make rings with every opcode needed, else why not. */
int backend_probe_uring(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, probe_once);
	return probe_result;
}

static unsigned possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	unsigned lo = 0, hi = 0;
	int n = f ? fscanf(f, "%u-%u", &lo, &hi) : 0;

	if (f)
		fclose(f);
	if (n == 2)
		return hi + 1;
	if (n == 1)
		return lo + 1;
	return (unsigned)get_nprocs_conf();
}

static unsigned long aio_max_nr(void)
{
	FILE *f = fopen("/proc/sys/fs/aio-max-nr", "re");
	unsigned long max = 65536;

	if (f) {
		if (fscanf(f, "%lu", &max) != 1)
			max = 65536;
		fclose(f);
	}
	return max;
}

/*
 * The ring size and the in-flight limit the kernel's ioctx_alloc() gives
 * for nr events: the ring fills whole pages, and a lone submitter runs out
 * of per-CPU request batches a few slots before the ring is full.
 */
static void kernel_limits(struct aio_ctx *ctx, unsigned nr)
{
	unsigned cpus = possible_cpus(), events = nr, batch;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes;

	if (events < cpus * 4)
		events = cpus * 4;
	events *= 2;
	bytes = sizeof(struct aio_ring) + (size_t)events * sizeof(struct io_event);
	bytes = (bytes + page - 1) / page * page;
	ctx->ring_nr = (unsigned)((bytes - sizeof(struct aio_ring)) / sizeof(struct io_event));
	batch = (ctx->ring_nr - 1) / (cpus * 4);
	if (!batch)
		batch = 1;
	ctx->max_outstanding = (ctx->ring_nr - 1) / batch * batch;
}

static unsigned pow2_at_least(unsigned n)
{
	unsigned p = 1;

	while (p < n)
		p *= 2;
	return p;
}

static int ring_init(struct io_uring *ring, unsigned outstanding)
{
	unsigned sq = pow2_at_least(outstanding < SQ_ENTRIES_MAX ? outstanding : SQ_ENTRIES_MAX);
	unsigned cq = pow2_at_least(outstanding < CQ_ENTRIES_MAX ? outstanding : CQ_ENTRIES_MAX);
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
		.cq_entries = cq < sq * 2 ? sq * 2 : cq,
	};
	int ret = io_uring_queue_init_params(sq, ring, &p);

	if (ret == -EINVAL) {
		p = (struct io_uring_params){ .flags = IORING_SETUP_CQSIZE,
					      .cq_entries = cq < sq * 2 ? sq * 2 : cq };
		ret = io_uring_queue_init_params(sq, ring, &p);
	}
	return ret;
}

static int uring_setup(struct aio_ctx *ctx, unsigned nr)
{
	struct io_uring *ring;
	int ret;

	if (nr > aio_max_nr())
		return -EAGAIN;
	kernel_limits(ctx, nr);
	ring = calloc(1, sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	ret = ring_init(ring, ctx->max_outstanding);
	if (ret) {
		free(ring);
		return ret;
	}
	ctx->priv = ring;
	return 0;
}

static void uring_teardown(struct aio_ctx *ctx)
{
	io_uring_queue_exit(ctx->priv);
	free(ctx->priv);
	ctx->priv = NULL;
}

static void prep_rw(struct io_uring_sqe *sqe, const struct iocb *io)
{
	unsigned long len = io->u.c.nbytes;
	int fd = io->aio_fildes;

	switch (io->aio_lio_opcode) {
	case IO_CMD_PREAD:
		io_uring_prep_read(sqe, fd, io->u.c.buf, len > MAX_RW_COUNT ? MAX_RW_COUNT : (unsigned)len,
				   (uint64_t)io->u.c.offset);
		break;
	case IO_CMD_PWRITE:
		io_uring_prep_write(sqe, fd, io->u.c.buf, len > MAX_RW_COUNT ? MAX_RW_COUNT : (unsigned)len,
				    (uint64_t)io->u.c.offset);
		break;
	case IO_CMD_PREADV:
		io_uring_prep_readv(sqe, fd, io->u.v.vec, (unsigned)io->u.v.nr, (uint64_t)io->u.v.offset);
		break;
	default:
		io_uring_prep_writev(sqe, fd, io->u.v.vec, (unsigned)io->u.v.nr, (uint64_t)io->u.v.offset);
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

/*
 * Errors in an SQE come back as its CQE, so the kernel takes all or none.
 * If it takes none, the SQEs are withdrawn: they must not go out later
 * for requests already refused.
 */
static int uring_submit(struct aio_ctx *ctx, struct req **reqs, int n)
{
	struct io_uring *ring = ctx->priv;
	unsigned start = ring->sq.sqe_tail;
	int ret;

	for (int i = 0; i < n; i++)
		prep(io_uring_get_sqe(ring), reqs[i]);
	do
		ret = io_uring_submit(ring);
	while (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY);
	if (ret >= 0)
		return n;
	ring->sq.sqe_tail = start;
	io_uring_smp_store_release(ring->sq.ktail, start);
	return ret;
}

static int uring_reap(struct aio_ctx *ctx, struct completion *out, int max)
{
	struct io_uring *ring = ctx->priv;
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int n = 0;

	if (!io_uring_cq_ready(ring) && io_uring_cq_has_overflow(ring))
		io_uring_get_events(ring);
	io_uring_for_each_cqe(ring, head, cqe) {
		struct req *req = io_uring_cqe_get_data(cqe);

		if (n == max)
			break;
		seen++;
		if (!req)
			continue;
		out[n].req = req;
		out[n].res = cqe->res;
		out[n].res2 = 0;
		/* A cancelled poll reports the events it saw: none. */
		if (cqe->res == -ECANCELED && req_opcode(req) == IO_CMD_POLL)
			out[n].res = 0;
		n++;
	}
	io_uring_cq_advance(ring, seen);
	return n;
}

static bool uring_ready(struct aio_ctx *ctx)
{
	struct io_uring *ring = ctx->priv;

	return io_uring_cq_ready(ring) || io_uring_cq_has_overflow(ring);
}

static void uring_arm(struct aio_ctx *ctx)
{
	(void)ctx;
}

/*
 * io_uring_enter runs this thread's task work while it waits and, unlike
 * io_getevents, answers -EINTR only for a real signal.
 */
static int uring_wait(struct aio_ctx *ctx, const struct timespec *timeout, const sigset_t *sigmask)
{
	struct io_uring *ring = ctx->priv;
	struct __kernel_timespec ts;
	struct io_uring_getevents_arg arg = {
		.sigmask = (uintptr_t)sigmask,
		.sigmask_sz = _NSIG / 8,
	};
	int ret;

	if (timeout) {
		ts.tv_sec = timeout->tv_sec;
		ts.tv_nsec = timeout->tv_nsec;
		arg.ts = (uintptr_t)&ts;
	}
	ret = io_uring_enter2(ring->ring_fd, 0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
			      (sigset_t *)&arg, sizeof(arg));
	return ret == -EINTR ? -EINTR : 0;
}

/* A NOP's completion ends every wait; reap skips it. */
static void uring_wake(struct aio_ctx *ctx)
{
	struct io_uring *ring = ctx->priv;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, NULL);
	io_uring_submit(ring);
}

static int uring_cancel(struct aio_ctx *ctx, struct req *req)
{
	struct io_uring *ring = ctx->priv;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)req);
	io_uring_sqe_set_data(sqe, NULL);
	io_uring_submit(ring);
	return -EINPROGRESS;
}

const struct engine uring_engine = {
	.name = "uring",
	.kind = AIO_COMPAT_URING,
	.setup = uring_setup,
	.teardown = uring_teardown,
	.submit = uring_submit,
	.reap = uring_reap,
	.ready = uring_ready,
	.arm = uring_arm,
	.wait = uring_wait,
	.wake = uring_wake,
	.cancel = uring_cancel,
};
