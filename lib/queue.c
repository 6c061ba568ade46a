/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The io_queue dispatcher. libaio's io_queue_run makes one io_getevents
 * system call per completion; this one takes them from the ring in
 * batches, with no system call while completions are there to take.
 */
#include <errno.h>

#include "internal.h"

#define RUN_BATCH 64

AIO_EXPORT int io_queue_init(int maxevents, io_context_t *ctxp)
{
	if (maxevents <= 0)
		return -EINVAL;
	if (bad_user_ptr(ctxp, sizeof(*ctxp)))
		return -EFAULT;
	*ctxp = NULL;
	return io_setup(maxevents, ctxp);
}

AIO_EXPORT int io_queue_release(io_context_t ctx)
{
	return io_destroy(ctx);
}

/* Takes a batch; the context is not pinned while callbacks run. */
static long take_batch(io_context_t handle, struct io_event *ev)
{
	struct aio_ctx *ctx = ctx_get(handle);
	long n;

	if (!ctx)
		return -EINVAL;
	n = ctx->calls->take(ctx, ev, RUN_BATCH);
	ctx_put(ctx);
	return n;
}

long ring_take(struct aio_ctx *ctx, struct io_event *ev, long nr)
{
	long n;

	if (ctx_foreign(ctx))
		return -EEXIST;
	pthread_mutex_lock(&ctx->lock);
	publish(ctx);
	n = take_events(ctx, ev, nr);
	ctx_unlock(ctx);
	return n;
}

/*
 * A callback may submit more I/O or free its iocb; one may even release
 * the context, which ends the run.
 */
int queue_run(io_context_t handle)
{
	struct io_event ev[RUN_BATCH];
	int ran = 0;
	long n;

	while ((n = take_batch(handle, ev)) > 0) {
		for (long i = 0; i < n; i++) {
			io_callback_t cb = (io_callback_t)ev[i].data;

			if (!cb)
				continue;
			cb(handle, ev[i].obj, ev[i].res, ev[i].res2);
			ran++;
		}
	}
	return n < 0 && !ran ? (int)n : ran;
}

AIO_EXPORT int io_queue_run(io_context_t ctx)
{
	int ret = queue_run(ctx);

	return ret < 0 ? ret : 0;
}

AIO_EXPORT int aio_compat_queue_run(io_context_t ctx)
{
	return queue_run(ctx);
}

/*
 * Waits up to timeout (NULL: no limit) for a completion to reap, without
 * reaping it. Returns 0 at once when nothing is in flight: libaio's never
 * waited, and loops written for it must not hang.
 */
int ring_queue_wait(struct aio_ctx *ctx, const struct timespec *deadline)
{
	int ret = 0;

	if (ctx_foreign(ctx))
		return -EEXIST;
	pthread_mutex_lock(&ctx->lock);
	for (;;) {
		if (ctx->dead) {
			ret = -EINVAL;
			break;
		}
		publish(ctx);
		if (ring_used(ctx) || !ctx->live)
			break;
		if (deadline && deadline_passed(deadline))
			break;
		ret = wait_for_events(ctx, deadline, NULL, true);
		if (ret)
			break;
	}
	ctx_unlock(ctx);
	return ret;
}

AIO_EXPORT int io_queue_wait(io_context_t handle, struct timespec *timeout)
{
	struct timespec deadline, limit;
	struct aio_ctx *ctx;
	bool limited;
	int ret;

	if (timeout) {
		if (copy_from_prog(&limit, timeout, sizeof(limit)))
			return -EFAULT;
		timeout = &limit;
	}
	ctx = ctx_get(handle);
	if (!ctx)
		return -EINVAL;
	limited = timeout && deadline_from(&deadline, timeout);
	ret = ctx->calls->queue_wait(ctx, limited ? &deadline : NULL);
	ctx_put(ctx);
	return ret;
}
