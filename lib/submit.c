/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io_submit and io_cancel on io_uring (a native context's go to the
 * kernel, native.c): the iocbs are checked as the kernel's io_submit_one()
 * checks them, in the same order, so both backends refuse the same input
 * with the same error; what is accepted goes to the engine in batches,
 * except syncs that the honest-fsync rule holds back.
 */
#include <errno.h>
#include <limits.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define SUBMIT_BATCH 64

#ifndef RWF_NOAPPEND
#define RWF_NOAPPEND 0x00000020
#endif
#ifndef RWF_ATOMIC
#define RWF_ATOMIC 0x00000040
#endif
#define IOPRIO_CLASS_NONE 0
#define IOPRIO_CLASS_IDLE 3

struct submit_state {
	struct req *batch[SUBMIT_BATCH];
	int nr_batch;
	long done;
	int err;
	unsigned ring_used; /* events not yet reaped, when the call began */
	/* Syncs held in this call, by their number so far; more own their file at once. */
	struct req *unowned[SUBMIT_BATCH];
	int nr_unowned;
	int efd; /* the slot of the eventfd the iocb being checked names, or -1 */
};

#define IOV_CHUNK 16

/*
 * The iovec array as import_iovec() judges it; *total gets its length.
 * Read here, where the kernel reads it at io_submit: io_uring would read it
 * only later, and answer a fault in the event.
 */
static int check_iovec(const struct iocb *io, size_t *total)
{
	const struct iovec *prog = io->u.v.vec;
	unsigned long nr = io->u.v.nr;
	struct iovec iov[IOV_CHUNK];

	*total = 0;
	if (nr > UIO_MAXIOV)
		return -EINVAL;
	if (!nr)
		return 0;
	if (bad_user_ptr(prog, nr * sizeof(*prog)))
		return -EFAULT;
	for (unsigned long i = 0; i < nr; i++) {
		size_t len;

		if (i % IOV_CHUNK == 0 &&
		    copy_from_prog(iov, prog + i,
				   (nr - i < IOV_CHUNK ? nr - i : IOV_CHUNK) * sizeof(*iov)))
			return -EFAULT;
		len = iov[i % IOV_CHUNK].iov_len;
		if ((ssize_t)len < 0)
			return -EINVAL;
		/* Like import_iovec(): what passes MAX_RW_COUNT is not looked at. */
		if (len > MAX_RW_COUNT - *total)
			len = MAX_RW_COUNT - *total;
		if (bad_user_range(iov[i % IOV_CHUNK].iov_base, len))
			return -EFAULT;
		*total += len;
	}
	return 0;
}

/* ioprio_check_cap(), but for the capability, which the kernel judges. */
static int check_ioprio(const struct iocb *io)
{
	int prio = (unsigned short)io->aio_reqprio, class = prio >> 13, level = prio & 7;

	if (!(io->u.c.flags & IOCB_FLAG_IOPRIO))
		return 0;
	if (class > IOPRIO_CLASS_IDLE || (class == IOPRIO_CLASS_NONE && level))
		return -EINVAL;
	return 0;
}

/*
 * kiocb_set_rw_flags()'s checks that do not depend on the file: bits the
 * running kernel does not know (learned through the ring's fd, which any
 * open file would serve), then the pairs it refuses.
 */
static int check_rw_flags(struct aio_ctx *ctx, const struct iocb *io)
{
	unsigned flags = (unsigned)io->aio_rw_flags;

	if (rw_flags_unknown(flags, ctx->engine->wait_fd(ctx)))
		return -EOPNOTSUPP;
	if (flags & RWF_APPEND && flags & RWF_NOAPPEND)
		return -EINVAL;
	if (flags & RWF_ATOMIC && !opcode_is_write(io->aio_lio_opcode))
		return -EOPNOTSUPP;
	return 0;
}

/* aio_prep_rw(), the import of the buffer and rw_verify_area(), in order. */
static int check_rw(struct aio_ctx *ctx, const struct iocb *io, bool vectored)
{
	size_t len = io->u.c.nbytes;
	int ret = check_ioprio(io);

	if (!ret && unlikely(io->aio_rw_flags))
		ret = check_rw_flags(ctx, io);
	if (len > MAX_RW_COUNT)
		len = MAX_RW_COUNT;
	if (!ret && vectored)
		ret = check_iovec(io, &len);
	else if (!ret && bad_user_range(io->u.c.buf, len))
		ret = -EFAULT;
	if (!ret && (io->u.c.offset < 0 || (unsigned long long)io->u.c.offset + len > LLONG_MAX))
		ret = -EINVAL;
	return ret;
}

/*
 * aio_fsync()'s checks: no fields beyond the fd, and a file that has an
 * fsync; regular files, directories and block devices do, pipes, sockets,
 * anonymous inodes and most character devices not. One fstat, for a sync
 * the kernel sees only later (native.c) or may not refuse (io_uring).
 */
static bool sync_fields_bad(const struct iocb *io)
{
	return io->u.c.buf || io->u.c.offset || io->u.c.nbytes || io->aio_rw_flags;
}

int check_sync(const struct iocb *io)
{
	struct stat sb;

	if (sync_fields_bad(io))
		return -EINVAL;
	if (fstat(io->aio_fildes, &sb))
		return -EBADF;
	if (!S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode) && !S_ISBLK(sb.st_mode))
		return -EINVAL;
	return 0;
}

/*
 * What io_uring would learn only at completion but the native kernel
 * refuses at submission, as far as it can be decided without a system call.
 */
static int check_for_uring(struct aio_ctx *ctx, const struct iocb *io)
{
	uint64_t buf = (uintptr_t)io->u.c.buf;

	switch (io->aio_lio_opcode) {
	case IO_CMD_PREAD:
	case IO_CMD_PWRITE:
		return check_rw(ctx, io, false);
	case IO_CMD_PREADV:
	case IO_CMD_PWRITEV:
		return check_rw(ctx, io, true);
	case IO_CMD_FSYNC:
	case IO_CMD_FDSYNC:
		/* A file check_sync() took (judge.c) is not looked at again. */
		if (fd_known(ctx, io->aio_fildes, FD_SYNCABLE))
			return sync_fields_bad(io) ? -EINVAL : 0;
		return check_sync(io);
	case IO_CMD_POLL:
		if ((uint16_t)buf != buf || io->u.c.offset || io->u.c.nbytes || io->aio_rw_flags)
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

/* io_submit_one()'s checks, in its order. */
static int check_iocb(struct aio_ctx *ctx, struct submit_state *st, const struct iocb *io)
{
	int ret;

	if (io->u.c.__pad3 || (ssize_t)io->u.c.nbytes < 0)
		return -EINVAL;
	if (ctx->live + st->ring_used >= ctx->max_outstanding)
		return -EAGAIN;
	if (io->aio_fildes < 0)
		return -EBADF;
	if (io->u.c.flags & IOCB_FLAG_RESFD) {
		/* Its event would wait for a call in, which it exists to avoid. */
		if (ctx->single_issuer)
			return -EINVAL;
		ret = eventfd_get(ctx, (int)io->u.c.resfd);
		if (ret < 0)
			return ret;
		st->efd = ret;
	}
	ret = check_for_uring(ctx, io);
	if (unlikely(ret))
		ret = kernel_refusal(io, ret);
	/* What only the file can tell: native AIO judges each fd once. */
	else if (unlikely(!fd_judged(ctx, io->aio_fildes, io->aio_lio_opcode)))
		ret = fd_judge(ctx, io);
	if (unlikely(ret) && st->efd >= 0)
		eventfd_put(ctx, st->efd);
	return ret;
}

/*
 * What keeping the promises for an iocb will take once the kernel has it:
 * the rule's count of a write, and the helper thread that signals an
 * eventfd with nobody calling in. Made before, or the iocb is refused
 * (-EAGAIN, as the kernel refuses a request it has no memory for): after,
 * nothing may fail.
 */
static int prepare(struct aio_ctx *ctx, const struct iocb *io)
{
	if ((io->u.c.flags & IOCB_FLAG_RESFD) && helper_ensure(ctx))
		return -EAGAIN;
	if (ctx->order.on && opcode_is_write(io->aio_lio_opcode))
		return order_prepare_write(ctx, io->aio_fildes);
	return 0;
}

/* Bookkeeping for a request the kernel now has, or that waits for writes. */
static void accepted(struct aio_ctx *ctx, struct req *req)
{
	static const unsigned key;

	/* The kernel's KIOCB_KEY, written where the program's says otherwise. */
	if (unlikely(req->kiocb.key))
		copy_to_prog(&req->obj->key, &key, sizeof(key));
	if (likely(!req->tracked))
		return;
	if (req_opcode(req) == IO_CMD_POLL) {
		ctx->polls++;
		req->poll_seq = ctx->poll_seq++;
		req->cancelled = false;
	}
	if (req->resfd >= 0)
		helper_need(ctx);
	if (ctx->order.on && opcode_is_write(req_opcode(req)))
		order_submitted(ctx, req);
}

/* On an engine whose I/O dies with its thread, that thread's exit waits for it. */
static int engine_submit(struct aio_ctx *ctx, struct req **reqs, int n)
{
	if (ctx->engine->thread_bound && unlikely(submitter_claim(reqs, n)))
		return -EAGAIN;
	return ctx->engine->submit(ctx, reqs, n);
}

/* Hands the batch to the engine; false once the kernel refused some. */
static bool flush(struct aio_ctx *ctx, struct submit_state *st)
{
	int n = st->nr_batch, took;

	if (!n)
		return true;
	st->nr_batch = 0;
	took = engine_submit(ctx, st->batch, n);
	if (took < 0) {
		st->err = took;
		took = 0;
	}
	for (int i = 0; i < took; i++)
		accepted(ctx, st->batch[i]);
	for (int i = took; i < n; i++)
		req_free(ctx, st->batch[i]);
	st->done += took;
	return took == n;
}

/*
 * A held sync syncs the file it was submitted for, whatever the program
 * does with the number afterwards (io_uring, which runs a sync in a
 * worker, looks the number up only there): one still held when io_submit
 * returns takes a descriptor of its own until its event is posted. Where
 * no descriptor is left, it keeps the number.
 */
static void own_file(struct req *req)
{
	int fd = fd_hold(req_fd(req));

	if (fd < 0)
		return;
	req->kiocb.aio_fildes = (uint32_t)fd;
	req->owns_fd = true;
}

/*
 * Native AIO does buffered writes inside io_submit, so the syncs behind
 * them alone are released first, by publishing, and need no descriptor.
 * One released meanwhile is no longer held (issue_now, req_free).
 */
static void hold_files(struct aio_ctx *ctx, struct submit_state *st)
{
	if (ctx->engine->ready(ctx))
		publish(ctx);
	for (int i = 0; i < st->nr_unowned; i++)
		if (st->unowned[i]->held)
			own_file(st->unowned[i]);
}

/*
 * Everything before a sync goes to the kernel first: the writes must be
 * counted before the rule can judge it, and a refusal earlier in the array
 * must stop the sync as it stops anything after it.
 */
static bool queue_sync(struct aio_ctx *ctx, struct submit_state *st, struct req *req)
{
	if (!flush(ctx, st)) {
		req_free(ctx, req);
		return false;
	}
	if (!order_should_hold(ctx, req)) {
		st->batch[st->nr_batch++] = req;
		return true;
	}
	if (order_hold(ctx, req)) {
		st->err = -EAGAIN;
		req_free(ctx, req);
		return false;
	}
	if (st->nr_unowned < SUBMIT_BATCH)
		st->unowned[st->nr_unowned++] = req;
	else
		own_file(req);
	accepted(ctx, req);
	st->done++;
	return true;
}

/* The iocb, copied as the kernel copies it, is judged from the copy. */
static bool queue_one(struct aio_ctx *ctx, struct submit_state *st, struct iocb *obj,
		      const struct iocb *io)
{
	struct req *req;

	st->efd = -1;
	st->err = check_iocb(ctx, st, io);
	if (st->err)
		return false;
	st->err = prepare(ctx, io);
	if (st->err) {
		if (st->efd >= 0)
			eventfd_put(ctx, st->efd);
		return false;
	}
	req = req_alloc(ctx);
	req->kiocb = *io;
	req->obj = obj;
	req->owner = NULL;
	req->epoch = UINT32_MAX;
	req->efd_slot = st->efd;
	req->resfd = st->efd >= 0 ? eventfd_of(ctx, st->efd) : -1;
	req->tracked = req->resfd >= 0 || io->aio_lio_opcode == IO_CMD_POLL ||
		       (ctx->order.on && opcode_is_write(io->aio_lio_opcode));
	if (ctx->order.on && opcode_is_sync(io->aio_lio_opcode))
		return queue_sync(ctx, st, req);
	st->batch[st->nr_batch++] = req;
	return st->nr_batch < SUBMIT_BATCH || flush(ctx, st);
}

/* Queues ios[0..nr) until one is refused, copying a few at a time. */
static void queue_all(struct aio_ctx *ctx, struct submit_state *st, long nr, struct iocb **ios)
{
	for (long i = 0; i < nr;) {
		struct iocb *objs[IOCB_COPY_BATCH], copies[IOCB_COPY_BATCH];
		long want = nr - i < IOCB_COPY_BATCH ? nr - i : IOCB_COPY_BATCH;
		long got = copy_iocbs_from_prog(ios + i, want, objs, copies);

		for (long k = 0; k < got; k++, i++)
			if (!queue_one(ctx, st, objs[k], &copies[k]))
				return;
		if (got < want) {
			st->err = -EFAULT;
			return;
		}
	}
}

long ring_submit(struct aio_ctx *ctx, long nr, struct iocb **ios)
{
	struct submit_state st;

	st.nr_batch = 0;
	st.done = 0;
	st.err = 0;
	st.nr_unowned = 0;
	if (nr > ctx->ring_nr)
		nr = ctx->ring_nr;
	if (bad_user_ptr(ios, nr * sizeof(*ios)))
		return -EFAULT;
	if (ctx_foreign(ctx))
		return -EEXIST;
	pthread_mutex_lock(&ctx->lock);
	if (unlikely(ctx->dead)) {
		ctx_unlock(ctx);
		return -EINVAL;
	}
	/*
	 * Until the program first calls in for events, the helper publishes
	 * them as they complete: it may read the ring itself, as it may on
	 * the kernel's, and never call in. Its thread must be there before
	 * the kernel has requests: nothing may fail after.
	 */
	if (unlikely(!ctx->reader.taken) && helper_ensure(ctx)) {
		ctx_unlock(ctx);
		return -EAGAIN;
	}
	fd_judgements_age(ctx);
	/* Posting an event frees its request: live + ring_used stays put. */
	st.ring_used = ring_used(ctx);
	queue_all(ctx, &st, nr, ios);
	flush(ctx, &st);
	if (st.nr_unowned)
		hold_files(ctx, &st);
	if (unlikely(ctx->reapers))
		reapers_recheck(ctx);
	/*
	 * Some requests finish inside io_submit and signal nothing (uring.c).
	 * What finished goes to the ring now for a program that waits on its
	 * eventfds or reads the ring without calling in (fio's
	 * userspace_reap), and those asleep in io_getevents are woken. Other
	 * programs take it in io_getevents.
	 */
	if (ctx->engine->ready(ctx)) {
		if (ctx->reader.direct || ctx->helper.needs || !ctx->reader.taken)
			publish(ctx);
		if (unlikely(ctx->reapers))
			sleepers_wake(ctx);
	}
	ctx_unlock(ctx);
	return st.done ? st.done : st.err;
}

AIO_EXPORT int io_submit(io_context_t handle, long nr, struct iocb *ios[])
{
	struct aio_ctx *ctx;
	long ret;

	if (unlikely(nr < 0))
		return -EINVAL;
	ctx = ctx_get(handle);
	if (unlikely(!ctx))
		return -EINVAL;
	ret = nr ? ctx->calls->submit(ctx, nr, ios) : 0;
	ctx_put(ctx);
	return (int)ret;
}

/* Issues a sync the rule held; a refusal becomes its event. */
static void issue_now(struct aio_ctx *ctx, struct req *req)
{
	struct req *one[1] = { req };
	int took;

	req->held = false;
	took = engine_submit(ctx, one, 1);
	if (took != 1)
		ring_post(ctx, req, took < 0 ? took : -EAGAIN, 0);
}

/* Issues, in order, the syncs order_write_done() released. */
void issue_released(struct aio_ctx *ctx, struct req *syncs)
{
	struct req *next;

	for (; syncs; syncs = next) {
		next = syncs->next;
		issue_now(ctx, syncs);
	}
}

/*
 * The kernel's io_cancel takes the first request on the context's list of
 * cancellable ones whose iocb is this one, and takes it off the list: the
 * same iocb submitted as a poll twice is cancelled once per call, the
 * first submitted first.
 */
static struct req *first_live_poll(struct aio_ctx *ctx, const struct iocb *iocb)
{
	struct req *first = NULL;

	for (unsigned i = 0; i < ctx->max_outstanding; i++) {
		struct req *req = &ctx->reqs[i];

		if (req->obj != iocb || req_opcode(req) != IO_CMD_POLL || req->cancelled)
			continue;
		if (!first || (int32_t)(req->poll_seq - first->poll_seq) < 0)
			first = req;
	}
	return first;
}

/*
 * As on the kernel's native AIO, only a poll can be cancelled: its event
 * still arrives, with the events seen so far (none). One that completed
 * meanwhile (native AIO refuses it) is off the kernel's list: the next is
 * the kernel's choice.
 */
int ring_cancel(struct aio_ctx *ctx, struct iocb *iocb)
{
	struct req *req;
	int ret = -EINVAL;

	if (ctx_foreign(ctx))
		return -EEXIST;
	pthread_mutex_lock(&ctx->lock);
	publish(ctx);
	/* A removal the kernel refused leaves the poll to io_destroy. */
	while (ret == -EINVAL && (req = first_live_poll(ctx, iocb))) {
		ret = ctx->engine->cancel(ctx, req);
		req->cancelled = ret == -EINPROGRESS || ret == -EINVAL;
	}
	ctx_unlock(ctx);
	return ret;
}

/* The kernel no longer writes result: the event goes to the ring. */
AIO_EXPORT int io_cancel(io_context_t handle, struct iocb *iocb, struct io_event *result)
{
	struct aio_ctx *ctx;
	unsigned key;
	int ret;

	(void)result;
	if (bad_user_ptr(iocb, sizeof(*iocb)) || copy_from_prog(&key, &iocb->key, sizeof(key)))
		return -EFAULT;
	if (key)
		return -EINVAL;
	ctx = ctx_get(handle);
	if (!ctx)
		return -EINVAL;
	ret = ctx->calls->cancel(ctx, iocb);
	ctx_put(ctx);
	return ret;
}
