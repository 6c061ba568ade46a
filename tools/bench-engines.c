/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The contenders' engines: for each I/O interface, the way a program that
 * knows it would queue, submit and reap. The workloads drive them all
 * through the same four calls, so the loop around them costs every
 * contender the same.
 */
#include "bench.h"

#include <aio.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "aio-compat.h"

/* The sanitizers' runtimes refuse dlopen with RTLD_DEEPBIND. */
#if defined(__SANITIZE_ADDRESS__)
#define DEEPBIND_REFUSED "ASan"
#elif defined(__SANITIZE_THREAD__)
#define DEEPBIND_REFUSED "TSan"
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DEEPBIND_REFUSED "TSan"
#endif
#endif

/* The libaio API, bound either to this library or to libaio.so.1. */
struct aio_api {
	int (*setup)(int maxevents, io_context_t *ctxp);
	int (*destroy)(io_context_t ctx);
	int (*submit)(io_context_t ctx, long nr, struct iocb **iocbs);
	int (*getevents)(io_context_t ctx, long min_nr, long nr, struct io_event *ev,
			 struct timespec *timeout);
	int (*queue_run)(io_context_t ctx);
	int (*queue_wait)(io_context_t ctx, struct timespec *timeout);
};

/* This library's exports: the names libaio has, bound at link time. */
static const struct aio_api lib_api = {
	.destroy = io_destroy,
	.submit = io_submit,
	.getevents = io_getevents,
	.queue_run = io_queue_run,
	.queue_wait = io_queue_wait,
};

static struct aio_api libaio_api;
static char libaio_error[256];
static int libaio_tried;

struct engine {
	const struct contender *c;
	int depth;
	int nqueued;
	/* the libaio API: this library or libaio.so.1 */
	const struct aio_api *api;
	io_context_t ctx;
	struct iocb *iocbs;
	struct iocb **queue;
	struct io_event *events;
	int efd; /* eventfd of the dispatch workload */
	/* liburing */
	struct io_uring ring;
	int ring_ready;
	/* glibc POSIX AIO and sync calls: requests wait here for the kick */
	struct req *reqs;
	int *queued;
	struct aiocb *cbs;
	const struct aiocb **waitlist;
	char *busy;
};

#define BIND(sym, field)                                                                           \
	do {                                                                                       \
		void *p = dlsym(h, sym);                                                           \
		if (!p) {                                                                          \
			snprintf(libaio_error, sizeof(libaio_error), "%s", dlerror());             \
			return -ENOENT;                                                            \
		}                                                                                  \
		memcpy(&libaio_api.field, &p, sizeof(p));                                          \
	} while (0)

static int load_libaio(void)
{
	void *h;

	if (libaio_tried)
		return libaio_error[0] ? -ENOENT : 0;
	libaio_tried = 1;
#ifdef DEEPBIND_REFUSED
	snprintf(libaio_error, sizeof(libaio_error), "RTLD_DEEPBIND is refused under %s",
		 DEEPBIND_REFUSED);
	return -ENOENT;
#endif
	/*
	 * libaio's io_queue_init and io_queue_run call io_setup and
	 * io_getevents through its PLT; without DEEPBIND those would bind to
	 * this library's exports of the same names.
	 */
	h = dlopen("libaio.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!h) {
		snprintf(libaio_error, sizeof(libaio_error), "%s", dlerror());
		return -ENOENT;
	}
	BIND("io_queue_init", setup);
	BIND("io_destroy", destroy);
	BIND("io_submit", submit);
	BIND("io_getevents", getevents);
	BIND("io_queue_run", queue_run);
	BIND("io_queue_wait", queue_wait);
	return 0;
}

const char *engine_libaio_error(void)
{
	load_libaio();
	return libaio_error[0] ? libaio_error : NULL;
}

int engine_has_depth(const struct contender *c)
{
	return c->kind != ENGINE_SYNC;
}

int engine_has_dispatch(const struct contender *c)
{
	return c->kind == ENGINE_LIB || c->kind == ENGINE_LIBAIO || c->kind == ENGINE_LIBURING;
}

static int aio_open(struct engine *e)
{
	int ret;

	if (e->c->kind == ENGINE_LIBAIO) {
		ret = load_libaio();
		if (ret)
			return ret;
		e->api = &libaio_api;
		ret = e->api->setup(e->depth, &e->ctx);
	} else {
		e->api = &lib_api;
		ret = aio_compat_setup(e->depth, &e->ctx, e->c->backend);
		if (!ret && aio_compat_set_fsync_order(e->ctx, e->c->fsync_order) < 0) {
			io_destroy(e->ctx);
			ret = -EINVAL;
		}
	}
	if (ret)
		return ret;
	e->iocbs = calloc(e->depth, sizeof(*e->iocbs));
	e->queue = calloc(e->depth, sizeof(*e->queue));
	e->events = calloc(e->depth, sizeof(*e->events));
	return 0;
}

static int posix_open(struct engine *e)
{
	e->cbs = calloc(e->depth, sizeof(*e->cbs));
	e->waitlist = calloc(e->depth, sizeof(*e->waitlist));
	e->busy = calloc(e->depth, 1);
	return 0;
}

int engine_open(struct engine **ep, const struct contender *c, int depth)
{
	struct engine *e = calloc(1, sizeof(*e));
	int ret = 0;

	if (!e)
		return -ENOMEM;
	e->c = c;
	e->depth = depth;
	e->efd = -1;
	e->reqs = calloc(depth, sizeof(*e->reqs));
	e->queued = calloc(depth, sizeof(*e->queued));
	switch (c->kind) {
	case ENGINE_LIB:
	case ENGINE_LIBAIO:
		ret = aio_open(e);
		break;
	case ENGINE_LIBURING:
		/* The ring as the library sets up its own, so that only the API differs. */
		ret = io_uring_queue_init(depth, &e->ring, IORING_SETUP_COOP_TASKRUN);
		e->ring_ready = !ret;
		break;
	case ENGINE_POSIX:
		ret = posix_open(e);
		break;
	case ENGINE_SYNC:
		break;
	}
	if (ret) {
		e->api = NULL;
		engine_close(e);
		return ret;
	}
	*ep = e;
	return 0;
}

void engine_close(struct engine *e)
{
	if (e->api)
		e->api->destroy(e->ctx);
	if (e->ring_ready)
		io_uring_queue_exit(&e->ring);
	if (e->efd >= 0)
		close(e->efd);
	free(e->iocbs);
	free(e->queue);
	free(e->events);
	free(e->reqs);
	free(e->queued);
	free(e->cbs);
	free(e->waitlist);
	free(e->busy);
	free(e);
}

static void aio_prep(struct engine *e, int slot, const struct req *r)
{
	struct iocb *iocb = &e->iocbs[slot];

	switch (r->op) {
	case REQ_READ:
		io_prep_pread(iocb, r->fd, r->buf, BENCH_BS, r->off);
		break;
	case REQ_WRITE:
		io_prep_pwrite(iocb, r->fd, r->buf, BENCH_BS, r->off);
		break;
	case REQ_FDSYNC:
		io_prep_fdsync(iocb, r->fd);
		break;
	}
	e->queue[e->nqueued++] = iocb;
}

static void uring_prep(struct engine *e, int slot, const struct req *r)
{
	/* The ring has as many entries as the engine has slots: never NULL. */
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

	switch (r->op) {
	case REQ_READ:
		io_uring_prep_read(sqe, r->fd, r->buf, BENCH_BS, r->off);
		break;
	case REQ_WRITE:
		io_uring_prep_write(sqe, r->fd, r->buf, BENCH_BS, r->off);
		break;
	case REQ_FDSYNC:
		io_uring_prep_fsync(sqe, r->fd, IORING_FSYNC_DATASYNC);
		if (e->c->drain)
			io_uring_sqe_set_flags(sqe, IOSQE_IO_DRAIN);
		break;
	}
	io_uring_sqe_set_data64(sqe, (__u64)slot);
	e->nqueued++;
}

void engine_prep(struct engine *e, int slot, const struct req *r)
{
	switch (e->c->kind) {
	case ENGINE_LIB:
	case ENGINE_LIBAIO:
		aio_prep(e, slot, r);
		break;
	case ENGINE_LIBURING:
		uring_prep(e, slot, r);
		break;
	case ENGINE_POSIX:
	case ENGINE_SYNC:
		e->reqs[slot] = *r;
		e->queued[e->nqueued++] = slot;
		break;
	}
}

static int aio_kick(struct engine *e, int wait_nr, struct done *done, int max)
{
	int ret, i;

	if (e->nqueued) {
		ret = e->api->submit(e->ctx, e->nqueued, e->queue);
		if (ret != e->nqueued)
			return ret < 0 ? ret : -EAGAIN;
		e->nqueued = 0;
	}
	do
		ret = e->api->getevents(e->ctx, wait_nr, max, e->events, NULL);
	while (ret == -EINTR);
	for (i = 0; i < ret; i++) {
		done[i].slot = (int)((struct iocb *)e->events[i].obj - e->iocbs);
		done[i].res = (long)e->events[i].res;
	}
	return ret;
}

static int uring_reap(struct engine *e, struct done *done, int max)
{
	struct io_uring_cqe *cqe;
	unsigned int head;
	int n = 0;

	io_uring_for_each_cqe (&e->ring, head, cqe) {
		if (n == max)
			break;
		done[n].slot = (int)cqe->user_data;
		done[n].res = cqe->res;
		n++;
	}
	io_uring_cq_advance(&e->ring, n);
	return n;
}

static int uring_kick(struct engine *e, int wait_nr, struct done *done, int max)
{
	struct io_uring_cqe *cqe;
	int ret, n = 0;

	if (e->nqueued) {
		/* One io_uring_enter submits and waits, as a tuned program does. */
		unsigned int ready = io_uring_cq_ready(&e->ring);

		ret = io_uring_submit_and_wait(&e->ring,
					       ready >= (unsigned int)wait_nr ? 0 : wait_nr);
		if (ret < 0)
			return ret;
		e->nqueued = 0;
	}
	for (;;) {
		n += uring_reap(e, done + n, max - n);
		if (n >= wait_nr)
			return n;
		ret = io_uring_wait_cqe_nr(&e->ring, &cqe, wait_nr - n);
		if (ret < 0 && ret != -EINTR)
			return ret;
	}
}

static int posix_issue(struct engine *e, int slot)
{
	struct aiocb *cb = &e->cbs[slot];
	const struct req *r = &e->reqs[slot];
	int ret = 0;

	memset(cb, 0, sizeof(*cb));
	cb->aio_fildes = r->fd;
	cb->aio_buf = r->buf;
	cb->aio_nbytes = BENCH_BS;
	cb->aio_offset = r->off;
	cb->aio_sigevent.sigev_notify = SIGEV_NONE;
	switch (r->op) {
	case REQ_READ:
		ret = aio_read(cb);
		break;
	case REQ_WRITE:
		ret = aio_write(cb);
		break;
	case REQ_FDSYNC:
		ret = aio_fsync(O_DSYNC, cb);
		break;
	}
	if (ret)
		return -errno;
	e->busy[slot] = 1;
	return 0;
}

/* Moves finished requests to done; lists the others in waitlist. */
static int posix_collect(struct engine *e, struct done *done, int max, int *nwait)
{
	int slot, n = 0, err;
	ssize_t res;

	*nwait = 0;
	for (slot = 0; slot < e->depth; slot++) {
		if (!e->busy[slot])
			continue;
		err = aio_error(&e->cbs[slot]);
		if (err == EINPROGRESS || n == max) {
			e->waitlist[(*nwait)++] = &e->cbs[slot];
			continue;
		}
		res = aio_return(&e->cbs[slot]);
		done[n].slot = slot;
		done[n].res = err ? -err : (long)res;
		e->busy[slot] = 0;
		n++;
	}
	return n;
}

static int posix_kick(struct engine *e, int wait_nr, struct done *done, int max)
{
	int i, ret, n = 0, nwait;

	for (i = 0; i < e->nqueued; i++) {
		ret = posix_issue(e, e->queued[i]);
		if (ret)
			return ret;
	}
	e->nqueued = 0;
	for (;;) {
		n += posix_collect(e, done + n, max - n, &nwait);
		if (n >= wait_nr)
			return n;
		if (aio_suspend(e->waitlist, nwait, NULL) && errno != EINTR)
			return -errno;
	}
}

static long sync_do(const struct req *r)
{
	ssize_t ret = 0;

	switch (r->op) {
	case REQ_READ:
		ret = pread(r->fd, r->buf, BENCH_BS, r->off);
		break;
	case REQ_WRITE:
		ret = pwrite(r->fd, r->buf, BENCH_BS, r->off);
		break;
	case REQ_FDSYNC:
		ret = fdatasync(r->fd);
		break;
	}
	return ret < 0 ? -errno : (long)ret;
}

static int sync_kick(struct engine *e, struct done *done, int max)
{
	int i;

	if (e->nqueued > max)
		return -EINVAL;
	for (i = 0; i < e->nqueued; i++) {
		done[i].slot = e->queued[i];
		done[i].res = sync_do(&e->reqs[e->queued[i]]);
	}
	e->nqueued = 0;
	return i;
}

int engine_kick(struct engine *e, int wait_nr, struct done *done, int max)
{
	switch (e->c->kind) {
	case ENGINE_LIB:
	case ENGINE_LIBAIO:
		return aio_kick(e, wait_nr, done, max);
	case ENGINE_LIBURING:
		return uring_kick(e, wait_nr, done, max);
	case ENGINE_POSIX:
		return posix_kick(e, wait_nr, done, max);
	case ENGINE_SYNC:
		return sync_kick(e, done, max);
	}
	return -EINVAL;
}

static int dispatched, dispatch_failed;

static void on_read_done(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	(void)ctx;
	(void)iocb;
	(void)res2;
	if (res != BENCH_BS)
		dispatch_failed = 1;
	dispatched++;
}

/*
 * Blocks until the eventfd has counted every read: then all of them are
 * reapable, and io_queue_run is measured on completions already there.
 */
static int wait_eventfd(int efd, uint64_t want)
{
	uint64_t n, seen = 0;

	while (seen < want) {
		if (read(efd, &n, sizeof(n)) != sizeof(n)) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		seen += n;
	}
	return 0;
}

/* Events in the context's ring, which is in the kernel's aio_ring format. */
static unsigned int ring_events(io_context_t ctx)
{
	const volatile unsigned int *ring = (const volatile unsigned int *)ctx;
	unsigned int nr = ring[1], head = ring[2], tail = ring[3];

	return nr ? (tail + nr - head) % nr : 0;
}

/*
 * Polls with io_queue_wait, which publishes without consuming, until the
 * ring the program sees holds every read (libaio's never waits: it spins).
 */
static int wait_ring(struct engine *e, unsigned int want)
{
	struct timespec ms = { 0, 1000000 };
	int ret;

	while (ring_events(e->ctx) < want) {
		ret = e->api->queue_wait(e->ctx, &ms);
		if (ret < 0 && ret != -EINTR)
			return ret;
	}
	return 0;
}

static int prep_dispatch(struct engine *e, const struct req *reqs, int via_eventfd)
{
	int i, ret;

	if (via_eventfd && e->efd < 0) {
		e->efd = eventfd(0, EFD_CLOEXEC);
		if (e->efd < 0)
			return -errno;
	}
	for (i = 0; i < DISPATCH_NR; i++) {
		io_prep_pread(&e->iocbs[i], reqs[i].fd, reqs[i].buf, BENCH_BS, reqs[i].off);
		io_set_callback(&e->iocbs[i], on_read_done);
		if (via_eventfd)
			io_set_eventfd(&e->iocbs[i], e->efd);
		e->queue[i] = &e->iocbs[i];
	}
	ret = e->api->submit(e->ctx, DISPATCH_NR, e->queue);
	if (ret != DISPATCH_NR)
		return ret < 0 ? ret : -EAGAIN;
	return via_eventfd ? wait_eventfd(e->efd, DISPATCH_NR) : wait_ring(e, DISPATCH_NR);
}

/* io_queue_run until every read has had its callback. */
static int aio_dispatch(struct engine *e, const struct req *reqs, uint64_t *ns, int counting,
			int via_eventfd)
{
	uint64_t t0;
	int ret;

	ret = prep_dispatch(e, reqs, via_eventfd);
	if (ret)
		return ret;
	if (counting)
		mark_region(MARK_BEGIN);
	t0 = now_ns();
	while (dispatched < DISPATCH_NR) {
		ret = e->api->queue_run(e->ctx);
		if (ret < 0)
			return ret;
	}
	*ns = now_ns() - t0;
	if (counting)
		mark_region(MARK_END);
	return 0;
}

/* What a liburing program writes in io_queue_run's place. */
static int uring_dispatch(struct engine *e, const struct req *reqs, uint64_t *ns, int counting)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	io_callback_t cb;
	unsigned int head, n;
	uint64_t t0;
	int i, ret;

	for (i = 0; i < DISPATCH_NR; i++) {
		sqe = io_uring_get_sqe(&e->ring);
		io_uring_prep_read(sqe, reqs[i].fd, reqs[i].buf, BENCH_BS, reqs[i].off);
		io_uring_sqe_set_data(sqe, (void *)(uintptr_t)on_read_done);
	}
	ret = io_uring_submit_and_wait(&e->ring, DISPATCH_NR);
	if (ret != DISPATCH_NR)
		return ret < 0 ? ret : -EAGAIN;
	while (io_uring_cq_ready(&e->ring) < DISPATCH_NR) {
		ret = io_uring_wait_cqe_nr(&e->ring, &cqe, DISPATCH_NR);
		if (ret < 0 && ret != -EINTR)
			return ret;
	}
	if (counting)
		mark_region(MARK_BEGIN);
	t0 = now_ns();
	while (dispatched < DISPATCH_NR) {
		n = 0;
		io_uring_for_each_cqe (&e->ring, head, cqe) {
			cb = (io_callback_t)(uintptr_t)cqe->user_data;
			cb(NULL, NULL, cqe->res, 0);
			n++;
		}
		io_uring_cq_advance(&e->ring, n);
		if (dispatched < DISPATCH_NR && !n) {
			ret = io_uring_wait_cqe(&e->ring, &cqe);
			if (ret < 0 && ret != -EINTR)
				return ret;
		}
	}
	*ns = now_ns() - t0;
	if (counting)
		mark_region(MARK_END);
	return 0;
}

int engine_dispatch(struct engine *e, const struct req *reqs, uint64_t *ns, int counting,
		    int via_eventfd)
{
	int ret = -EINVAL;

	dispatched = 0;
	dispatch_failed = 0;
	if (e->c->kind == ENGINE_LIBURING)
		ret = uring_dispatch(e, reqs, ns, counting);
	else if (e->api)
		ret = aio_dispatch(e, reqs, ns, counting, via_eventfd);
	if (!ret && dispatch_failed)
		ret = -EIO;
	return ret;
}
