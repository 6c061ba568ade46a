/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The honest-fsync rule: an FSYNC or FDSYNC on fd F reaches the kernel only
 * once every write to F submitted before it has completed. Neither kernel
 * interface orders a sync after writes still in flight.
 *
 * Each fd's writes are counted by epoch. A sync that finds writes in
 * flight closes the current epoch (it joins that epoch's list of syncs) and
 * opens the next, which later writes join: so those writes never hold it
 * back. When the oldest epochs drain, their syncs are issued, in order.
 * IOSQE_IO_DRAIN would order the same, at the price of stalling the whole
 * ring; this holds back only the sync. This file owns the epochs and the
 * held syncs, and calls nothing outside itself but the allocator (and
 * fcntl, to check an fd): order_write_done() hands back the syncs a
 * finished write releases, and its caller, whoever saw the write's
 * completion, issues them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define EPOCHS_MIN 4

static struct fd_order *fd_order(struct aio_ctx *ctx, int fd)
{
	if ((unsigned)fd < ctx->order.nr_fds && ctx->order.fds[fd].epochs)
		return &ctx->order.fds[fd];
	return NULL;
}

static struct fd_epoch *epoch(struct fd_order *fo, uint32_t id)
{
	return &fo->epochs[id & fo->mask];
}

static int fd_table_grow(struct aio_ctx *ctx, int fd)
{
	unsigned n = ctx->order.nr_fds ? ctx->order.nr_fds : 64;
	struct fd_order *fds;

	while (n <= (unsigned)fd)
		n *= 2;
	fds = realloc(ctx->order.fds, n * sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	memset(fds + ctx->order.nr_fds, 0, (n - ctx->order.nr_fds) * sizeof(*fds));
	ctx->order.fds = fds;
	ctx->order.nr_fds = n;
	return 0;
}

/*
 * Before a write goes to the kernel, what counting it takes: once the kernel
 * has it nothing may fail, so without memory the write is refused, -EAGAIN
 * as the kernel refuses a request it has no memory for. The table is
 * indexed by fd. io_uring takes a write on any fd number and fails it
 * later: a number that is not open is not worth a table that big, and such
 * a write is not counted.
 */
int order_prepare_write(struct aio_ctx *ctx, int fd)
{
	struct fd_order *fo;

	if ((unsigned)fd >= ctx->order.nr_fds) {
		if (fcntl(fd, F_GETFD) < 0)
			return 0;
		if (fd_table_grow(ctx, fd))
			return -EAGAIN;
	}
	fo = &ctx->order.fds[fd];
	if (likely(fo->epochs))
		return 0;
	fo->epochs = calloc(EPOCHS_MIN, sizeof(*fo->epochs));
	if (!fo->epochs)
		return -EAGAIN;
	fo->mask = EPOCHS_MIN - 1;
	return 0;
}

/* Room for one more epoch; the live ones keep their ids. */
static int epochs_grow(struct fd_order *fo)
{
	uint32_t slots = fo->mask + 1, live = fo->last - fo->first + 1;
	struct fd_epoch *e;

	if (live < slots)
		return 0;
	e = calloc(slots * 2, sizeof(*e));
	if (!e)
		return -EAGAIN;
	for (uint32_t id = fo->first; id != fo->last + 1; id++)
		e[id & (slots * 2 - 1)] = *epoch(fo, id);
	free(fo->epochs);
	fo->epochs = e;
	fo->mask = slots * 2 - 1;
	return 0;
}

/* A write the kernel has, on an fd order_prepare_write() saw to. */
void order_submitted(struct aio_ctx *ctx, struct req *req)
{
	struct fd_order *fo = fd_order(ctx, req_fd(req));

	if (!fo)
		return;
	req->epoch = fo->last;
	epoch(fo, fo->last)->writes++;
}

/* Whether a sync on fd now would wait for writes. */
bool order_busy(struct aio_ctx *ctx, int fd)
{
	struct fd_order *fo = fd_order(ctx, fd);

	return fo && (fo->first != fo->last || epoch(fo, fo->last)->writes);
}

bool order_should_hold(struct aio_ctx *ctx, struct req *req)
{
	return order_busy(ctx, req_fd(req));
}

/*
 * The sync closes the open epoch; later writes start the next one. Without
 * memory for the next epoch it is refused (-EAGAIN), before anything changed.
 */
int order_hold(struct aio_ctx *ctx, struct req *req)
{
	struct fd_order *fo = fd_order(ctx, req_fd(req));
	struct req **tail;

	if (epochs_grow(fo))
		return -EAGAIN;
	tail = &epoch(fo, fo->last)->syncs;
	while (*tail)
		tail = &(*tail)->next;
	req->next = NULL;
	req->held = true;
	*tail = req;
	fo->last++;
	*epoch(fo, fo->last) = (struct fd_epoch){ 0 };
	ctx->order.held++;
	return 0;
}

/*
 * The syncs this write's completion releases, chained through req->next:
 * oldest epoch first, within an epoch in the order they were held. NULL
 * when it releases none.
 */
struct req *order_write_done(struct aio_ctx *ctx, struct req *req)
{
	struct req *released = NULL, **tail = &released;
	struct fd_order *fo;

	if (req->epoch == UINT32_MAX)
		return NULL;
	fo = fd_order(ctx, req_fd(req));
	epoch(fo, req->epoch)->writes--;
	while (fo->first != fo->last && !epoch(fo, fo->first)->writes) {
		struct fd_epoch *e = epoch(fo, fo->first);

		*tail = e->syncs;
		while (*tail)
			tail = &(*tail)->next;
		e->syncs = NULL;
		fo->first++;
	}
	return released;
}

void order_free(struct aio_ctx *ctx)
{
	for (unsigned i = 0; i < ctx->order.nr_fds; i++)
		free(ctx->order.fds[i].epochs);
	free(ctx->order.fds);
	ctx->order.fds = NULL;
	ctx->order.nr_fds = 0;
}
