/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The library's ring (ring_calls), and the waiting for it.
 *
 * A completion becomes visible in exactly one place: the ring the program's
 * io_context_t points at, in the kernel's struct aio_ring format. publish()
 * moves finished requests from the engine (the io_uring CQ, and on auto
 * the native AIO ring beside it) into it, applies the fsync rule, and only
 * then signals the iocbs' eventfds. io_getevents takes events from that
 * ring. publish() runs in the calling threads, and in the helper thread
 * (below) for programs that do not call in.
 *
 * Threads that must wait sleep in the engine (io_uring_enter, or ppoll on
 * the ring's fd); a thread that leaves events in the ring while others
 * sleep wakes them, since the engine would not. Both give -EINTR for a
 * real signal only, and take io_pgetevents' mask. A native context has
 * none of this: its ring and its waits are the kernel's (native.c).
 *
 * A wake-up is a completion of the engine's own (engine->wake), which
 * makes the ring's fd ready for every sleeper, and which any thread that
 * publishes may take before a sleeper looks: ppoll then sleeps on. So what a
 * sleeper must be woken for is looked at again at every unlock, until it
 * has looked (sleepers_due). No descriptor is needed beyond the engine's.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define PUBLISH_BATCH 64

static unsigned ring_head(const struct aio_ctx *ctx)
{
	unsigned head =
	    atomic_load_explicit((_Atomic unsigned *)&ctx->ring->head, memory_order_acquire);

	/* The program may write head itself: keep it inside the ring. */
	return likely(head < ctx->ring_nr) ? head : head % ctx->ring_nr;
}

unsigned ring_used(const struct aio_ctx *ctx)
{
	unsigned head = ring_head(ctx);

	return ctx->tail >= head ? ctx->tail - head : ctx->tail + ctx->ring_nr - head;
}

/* Its eventfd is signalled once the lock is released (ctx_unlock). */
static void resfd_note(struct aio_ctx *ctx, int fd)
{
	for (unsigned i = 0; i < ctx->efd.nr_pending; i++) {
		if (ctx->efd.pending[i].fd == fd) {
			ctx->efd.pending[i].count++;
			return;
		}
	}
	if (ctx->efd.nr_pending == RESFD_BATCH)
		resfd_flush(ctx);
	ctx->efd.pending[ctx->efd.nr_pending].fd = fd;
	ctx->efd.pending[ctx->efd.nr_pending++].count = 1;
}

/* The event goes in at the tail; the tail is published by the caller. */
static __always_inline void post_event(struct aio_ctx *ctx, struct req *req, long res, long res2)
{
	struct io_event *ev = &ctx->ring->io_events[ctx->tail];

	ev->data = req->kiocb.data;
	ev->obj = req->obj;
	ev->res = res;
	ev->res2 = res2;
	if (++ctx->tail == ctx->ring_nr)
		ctx->tail = 0;
	if (likely(!req->tracked)) {
		req_free(ctx, req);
		return;
	}
	if (req->resfd >= 0) {
		resfd_note(ctx, req->resfd);
		helper_done(ctx);
	}
	if (opcode_is_write(req_opcode(req)))
		issue_released(ctx, order_write_done(ctx, req));
	else if (req_opcode(req) == IO_CMD_POLL)
		ctx->polls--;
	req_free(ctx, req);
}

static void publish_tail(struct aio_ctx *ctx)
{
	atomic_store_explicit((_Atomic unsigned *)&ctx->ring->tail, ctx->tail,
			      memory_order_release);
}

void ring_post(struct aio_ctx *ctx, struct req *req, long res, long res2)
{
	post_event(ctx, req, res, res2);
	publish_tail(ctx);
}

/* Adds each count to its eventfd, past any pending cancel. */
static void eventfds_signal(const struct resfd_signal *sig, unsigned n)
{
	int state = cancel_disable();

	for (unsigned i = 0; i < n; i++)
		(void)!write(sig[i].fd, &sig[i].count, sizeof(sig[i].count));
	cancel_restore(state);
}

/* Signals the eventfds of events already in the ring, one write per fd. */
void resfd_flush(struct aio_ctx *ctx)
{
	eventfds_signal(ctx->efd.pending, ctx->efd.nr_pending);
	ctx->efd.nr_pending = 0;
}

/* Under the lock: every thread asleep on the engine's wait_fd looks again. */
void sleepers_wake(struct aio_ctx *ctx)
{
	ctx->engine->wake(ctx);
}

/*
 * The helper's (below): requests it publishes for. Before the first take,
 * polls alone are not: one may wait for days.
 */
static bool helper_has_work(const struct aio_ctx *ctx)
{
	if (ctx->helper.needs || (ctx->live && ctx->reader.direct))
		return true;
	return !ctx->reader.taken && ctx->live > ctx->polls;
}

/*
 * Whether a sleeper has cause to look again: reapers, for events left in
 * the ring (the engine will not tell them, its completions having been
 * taken) or a context now dead; io_destroy, for events left in the ring;
 * the helper, for work gone or its stop (idle, for its stop alone);
 * threads at their exit, for what was published since they looked.
 */
static bool sleepers_due(const struct aio_ctx *ctx)
{
	if (ctx->reapers && (ctx->dead || ring_used(ctx)))
		return true;
	if (ctx->destroy_waiting && ring_used(ctx))
		return true;
	if (ctx->helper.waiting &&
	    (ctx->helper.stop || (!ctx->helper.idle && !helper_has_work(ctx))))
		return true;
	return ctx->exit_waiters && exit_waiters_due(ctx);
}

/*
 * Every hold of ctx->lock ends here: sleepers are woken for what is due
 * to them, the helper started if it has work, and the eventfds of what
 * was published are signalled after the lock is released, so that the
 * program they wake finds it free.
 */
void ctx_unlock(struct aio_ctx *ctx)
{
	struct resfd_signal sig[RESFD_BATCH];
	unsigned n = ctx->efd.nr_pending;

	if (unlikely(ctx->reapers || ctx->destroy_waiting || ctx->helper.waiting ||
		     ctx->exit_waiters) &&
	    sleepers_due(ctx))
		sleepers_wake(ctx);
	if (unlikely(ctx->helper.needs || ctx->reader.direct || !ctx->reader.taken))
		helper_check(ctx);
	if (likely(!n)) {
		pthread_mutex_unlock(&ctx->lock);
		return;
	}
	memcpy(sig, ctx->efd.pending, n * sizeof(*sig));
	ctx->efd.nr_pending = 0;
	atomic_fetch_add_explicit(&ctx->efd.signalling, 1, memory_order_relaxed);
	pthread_mutex_unlock(&ctx->lock);
	eventfds_signal(sig, n);
	/* Pairs with close_retired(): these fds may be closed after this. */
	atomic_fetch_sub_explicit(&ctx->efd.signalling, 1, memory_order_release);
}

/* The program moved head itself: from now on, publish as things complete. */
static void notice_direct_reader(struct aio_ctx *ctx)
{
	unsigned head =
	    atomic_load_explicit((_Atomic unsigned *)&ctx->ring->head, memory_order_relaxed);

	/* A single issuer's completions wait for its thread: no helper can. */
	if (likely(head == ctx->reader.lib_head || ctx->reader.direct) || ctx->single_issuer)
		return;
	ctx->reader.direct = true;
}

unsigned publish(struct aio_ctx *ctx)
{
	struct completion done[PUBLISH_BATCH];
	unsigned total = 0;

	notice_direct_reader(ctx);
	/* The kernel is writing what a sleeper takes: its own reap follows. */
	if (unlikely(ctx->engine_waiting))
		return 0;
	/* A single issuer's completions: once nothing else is there to take. */
	if (ctx->single_issuer && !ring_used(ctx) && !ctx->engine->ready(ctx))
		ctx->engine->run_deferred(ctx);
	for (;;) {
		unsigned room = ctx->ring_nr - 1 - ring_used(ctx);
		int n =
		    ctx->engine->reap(ctx, done, room < PUBLISH_BATCH ? (int)room : PUBLISH_BATCH);

		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			if (unlikely(done[i].res < 0))
				fd_event(ctx, req_fd(done[i].req), done[i].res);
			post_event(ctx, done[i].req, done[i].res, done[i].res2);
		}
		publish_tail(ctx);
		total += n;
		if (n < PUBLISH_BATCH)
			break;
	}
	/* A thread at its exit waits for its own requests, perhaps these. */
	if (unlikely(ctx->exit_waiters) && total)
		exit_waiters_note(ctx);
	return total;
}

/*
 * As the kernel's aio_read_events_ring(): events the caller cannot take
 * (-EFAULT) stay in the ring for the next call, none lost, none consumed.
 */
long take_events(struct aio_ctx *ctx, struct io_event *out, long nr)
{
	unsigned head = ring_head(ctx), avail = ring_used(ctx), first;

	/* The program calls in for its events: the helper need not publish them. */
	ctx->reader.taken = true;

	if ((unsigned long)nr < avail)
		avail = (unsigned)nr;
	if (!avail)
		return 0;
	first = ctx->ring_nr - head < avail ? ctx->ring_nr - head : avail;
	if (copy_to_prog(out, &ctx->ring->io_events[head], first * sizeof(*out)) ||
	    copy_to_prog(out + first, ctx->ring->io_events, (avail - first) * sizeof(*out)))
		return -EFAULT;
	ctx->reader.lib_head =
	    head + avail < ctx->ring_nr ? head + avail : head + avail - ctx->ring_nr;
	atomic_store_explicit((_Atomic unsigned *)&ctx->ring->head, ctx->reader.lib_head,
			      memory_order_release);
	return avail;
}

/*
 * Where reapers sleep in the engine, those not let in sleep on wait_fd,
 * which a completion need not make ready: when the place in the engine is
 * free, or new requests give it something to wait for, they look again.
 */
void reapers_recheck(struct aio_ctx *ctx)
{
	if (ctx->single_issuer && !ctx->engine_waiting)
		sleepers_wake(ctx);
}

static void engine_wait_done(struct aio_ctx *ctx)
{
	ctx->engine_waiting = false;
	if (ctx->reapers > 1)
		reapers_recheck(ctx);
}

/*
 * Sleeps until a completion or a wake-up (0 either way: the caller looks
 * again), or a real signal (-EINTR): ppoll is never restarted after a
 * handler ran, while io_uring's task work, which may have to post our
 * CQEs, restarts it unseen. Called and returns with ctx->lock held; the
 * caller has looked at the ring and at ctx->dead under the same hold.
 * Whatever else it must look again for, sleepers_due sees.
 */
int wait_for_events(struct aio_ctx *ctx, const struct timespec *deadline, const sigset_t *sigmask,
		    bool reaper)
{
	struct pollfd pfd = { .fd = ctx->engine->wait_fd(ctx), .events = POLLIN };
	struct timespec left, *timeout = NULL;
	int state = cancel_disable();
	bool in_engine;
	int ret = 0;

	if (reaper)
		ctx->reapers++;
	ctx->engine->arm(ctx);
	if (ctx->engine->ready(ctx))
		goto out;
	if (deadline) {
		if (!time_left(deadline, &left))
			goto out;
		timeout = &left;
	}
	/* Nothing in flight: only io_destroy, from another thread, can wake it. */
	in_engine = reaper && ctx->single_issuer && !ctx->engine_waiting && ctx->live;
	if (in_engine)
		ctx->engine_waiting = true;
	ctx_unlock(ctx);
	if (in_engine)
		ret = ctx->engine->wait(ctx, timeout, sigmask);
	else if (ppoll(&pfd, 1, timeout, sigmask) < 0 && errno == EINTR)
		ret = -EINTR;
	pthread_mutex_lock(&ctx->lock);
	if (in_engine)
		engine_wait_done(ctx);
out:
	if (reaper)
		ctx->reapers--;
	cancel_restore(state);
	return ret;
}

/*
 * Native AIO does buffered I/O inside io_submit, so a caller that asks for
 * min_nr 0 with a timeout finds it done (libaio's own tests do this).
 * io_uring runs it asynchronously: so such a call waits, up to its
 * timeout, for the first event while I/O other than polls is in flight.
 */
static bool enough(struct aio_ctx *ctx, long got, long min_nr, bool patient)
{
	if (got >= min_nr && (got || !patient))
		return true;
	return got >= min_nr && ctx->live == ctx->polls;
}

static long getevents(struct aio_ctx *ctx, long min_nr, long nr, struct io_event *events,
		      bool timed, const struct timespec *deadline, const sigset_t *sigmask)
{
	bool patient = !min_nr && nr && timed;
	long got = 0, n;
	int err = 0;

	if (ctx_foreign(ctx))
		return -EEXIST;
	pthread_mutex_lock(&ctx->lock);
	for (;;) {
		/* As the kernel's: a context being destroyed is dead at once. */
		if (ctx->dead) {
			err = -EINVAL;
			break;
		}
		publish(ctx);
		n = take_events(ctx, events + got, nr - got);
		if (n < 0) {
			err = (int)n;
			break;
		}
		got += n;
		if (enough(ctx, got, min_nr, patient))
			break;
		if (deadline && deadline_passed(deadline))
			break;
		err = wait_for_events(ctx, deadline, sigmask, true);
		if (err)
			break;
	}
	ctx_unlock(ctx);
	return got ? got : err;
}

long ring_getevents(struct aio_ctx *ctx, long min_nr, long nr, struct io_event *events,
		    const struct timespec *timeout, const sigset_t *sigmask)
{
	struct timespec deadline;
	bool limited = timeout && deadline_from(&deadline, timeout);

	return getevents(ctx, min_nr, nr, events, timeout != NULL, limited ? &deadline : NULL,
			 sigmask);
}

int aio_getevents(io_context_t handle, long min_nr, long nr, struct io_event *events,
		  const struct timespec *timeout, const sigset_t *sigmask)
{
	struct timespec limit;
	struct aio_ctx *ctx;
	long ret = -EINVAL;

	/* Read once, up front, as the kernel reads it. */
	if (timeout) {
		if (copy_from_prog(&limit, timeout, sizeof(limit)))
			return -EFAULT;
		timeout = &limit;
	}
	ctx = ctx_get(handle);
	if (unlikely(!ctx))
		return -EINVAL;
	if (likely(min_nr >= 0 && min_nr <= nr))
		ret = ctx->calls->getevents(ctx, min_nr, nr, events, timeout, sigmask);
	ctx_put(ctx);
	return (int)ret;
}

AIO_EXPORT int io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			    struct timespec *timeout)
{
	return aio_getevents(ctx, min_nr, nr, events, timeout, NULL);
}

AIO_EXPORT int io_pgetevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			     struct timespec *timeout, sigset_t *sigmask)
{
	return aio_getevents(ctx, min_nr, nr, events, timeout, sigmask);
}

/*
 * The helper thread publishes for programs that wait on an iocb's eventfd
 * and never call in (QEMU reads the ring itself), and for programs seen to
 * read the ring themselves. It runs only while such requests live: idle,
 * it waits THREAD_LINGER_NS for more and then ends, and the next such
 * request starts another (a thread of the library must not keep a process
 * alive whose main thread has called pthread_exit()).
 */

/*
 * Idle: whether work came (helper_kick) within the linger. It sleeps in
 * the engine, as for work, while no completion waits there: a request's
 * completion then wakes it, and the thread that submitted the request
 * makes no call to (pthread_cond_signal finds no one waiting). A
 * completion that is not its to publish would keep the engine ready: it
 * sleeps on its condition until kicked instead.
 */
static bool helper_linger(struct aio_ctx *ctx)
{
	const struct timespec linger = { 0, THREAD_LINGER_NS };
	struct timespec deadline, left;

	deadline_from(&deadline, &linger);
	while (!ctx->helper.awake && !ctx->helper.stop && time_left(&deadline, &left)) {
		if (ctx->engine->ready(ctx)) {
			pthread_cond_clockwait(&ctx->helper.cond, &ctx->lock, CLOCK_MONOTONIC,
					       &deadline);
			continue;
		}
		ctx->helper.idle = true;
		ctx->helper.waiting = true;
		wait_for_events(ctx, &deadline, NULL, false);
		ctx->helper.waiting = false;
		ctx->helper.idle = false;
	}
	return ctx->helper.awake;
}

/* Sleeps until a completion, or until another thread took the last of its work. */
static void helper_wait(struct aio_ctx *ctx)
{
	ctx->helper.waiting = true;
	wait_for_events(ctx, NULL, NULL, false);
	ctx->helper.waiting = false;
}

static void *helper_main(void *arg)
{
	struct aio_ctx *ctx = arg;

	pthread_mutex_lock(&ctx->lock);
	while (!ctx->helper.stop) {
		if (!helper_has_work(ctx)) {
			ctx->helper.awake = false;
			resfd_flush(ctx);
			if (!helper_linger(ctx))
				break;
			continue;
		}
		publish(ctx);
		if (helper_has_work(ctx))
			helper_wait(ctx);
	}
	ctx->helper.awake = false;
	ctx->helper.running = false;
	/* For helper_stop: this hold of the lock is its last. */
	pthread_cond_broadcast(&ctx->helper.cond);
	ctx_unlock(ctx);
	return NULL;
}

/*
 * Detached: nothing may wait for its end under the lock, which its exit
 * may need (a uring submitter's exit waits for its requests, such as a
 * sync it issued).
 */
static void helper_start(struct aio_ctx *ctx)
{
	ctx->helper.running = !thread_start_detached(helper_main, ctx);
}

/*
 * Before a request it must serve is accepted: its thread runs, or the
 * request is refused (-EAGAIN). Lingering, it cannot end before the
 * next unlock wakes it (helper_check): its linger needs the lock.
 */
int helper_ensure(struct aio_ctx *ctx)
{
	if (!ctx->helper.running)
		helper_start(ctx);
	return ctx->helper.running ? 0 : -EAGAIN;
}

/* Starts the helper, or wakes it from its linger. */
static void helper_kick(struct aio_ctx *ctx)
{
	ctx->helper.awake = true;
	if (ctx->helper.running)
		pthread_cond_signal(&ctx->helper.cond);
	else
		helper_start(ctx);
	ctx->helper.awake = ctx->helper.running;
}

/* At each unlock while the helper has or had work: start it, or wake it from its linger. */
void helper_check(struct aio_ctx *ctx)
{
	if (!ctx->helper.stop && !ctx->helper.awake && helper_has_work(ctx))
		helper_kick(ctx);
}

void helper_need(struct aio_ctx *ctx)
{
	ctx->helper.needs++;
}

void helper_done(struct aio_ctx *ctx)
{
	ctx->helper.needs--;
}

/*
 * For good: io_destroy's own waiting must not start it again. Returns once
 * the helper left the lock for the last time; its thread's exit may still
 * wait for a sync it issued, with the context pinned as any thread's is.
 */
void helper_stop(struct aio_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	ctx->helper.stop = true;
	if (ctx->helper.running) {
		pthread_cond_broadcast(&ctx->helper.cond);
		if (ctx->helper.waiting)
			sleepers_wake(ctx);
	}
	while (ctx->helper.running)
		pthread_cond_wait(&ctx->helper.cond, &ctx->lock);
	pthread_mutex_unlock(&ctx->lock);
}
