/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel fills an AIO ring as requests complete, whether the program
 * calls in or not, and some programs rely on it: fio with userspace_reap
 * spins on the ring's tail. Here completions reach the ring when a thread
 * publishes them, so while any context has requests in flight a ticker
 * thread publishes what has finished, every millisecond. It costs nothing
 * per request. A context whose program is then seen to move the ring's
 * head itself gets its helper thread, which publishes each completion as
 * it arrives (events.c).
 *
 * Idle, the ticker waits a while for new work and then ends, to be started
 * again by the next submission: a thread of the library must not keep the
 * process alive once its main thread has called pthread_exit(), nor sit on
 * the signals it blocks.
 */
#include <errno.h>
#include <stdatomic.h>
#include <time.h>

#include "internal.h"

#define TICK_NS 1000000L

static pthread_mutex_t ticker_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ticker_cond = PTHREAD_COND_INITIALIZER;
static atomic_bool ticking;
static bool running, kicked;

/*
 * Publishes what is ready, unless a thread holds the context; *busy is set
 * while requests other than polls are in flight. Polls alone do not keep
 * the ticker going: one may wait for days.
 */
static void publisher_try(struct aio_ctx *ctx, bool *busy)
{
	if (pthread_mutex_trylock(&ctx->lock)) {
		*busy = true;
		return;
	}
	if (ctx->live) {
		publish(ctx);
		if (ctx->live > ctx->polls)
			*busy = true;
	}
	ctx_unlock(ctx);
}

/*
 * A program that has published since the last tick keeps its ring filled
 * itself: the ticker would only contend for its lock and its cache lines.
 */
static void ticker_visit(struct aio_ctx *ctx, void *busy)
{
	unsigned publishes = atomic_load_explicit(&ctx->publishes, memory_order_relaxed);

	/* Its completions wait in the kernel for its own thread; a native
	 * context's ring is the kernel's. */
	if (ctx->single_issuer || ctx_native(ctx))
		return;
	if (publishes != ctx->ticker_seen) {
		ctx->ticker_seen = publishes;
		*(bool *)busy = true;
		return;
	}
	publisher_try(ctx, busy);
	ctx->ticker_seen = atomic_load_explicit(&ctx->publishes, memory_order_relaxed);
}

static bool tick(void)
{
	const struct timespec pause = { 0, TICK_NS };
	bool busy = false;

	nanosleep(&pause, NULL);
	registry_each(ticker_visit, &busy);
	return busy;
}

/* Idle, under ticker_lock: whether a kick came within THREAD_LINGER_NS. */
static bool ticker_linger(void)
{
	const struct timespec linger = { 0, THREAD_LINGER_NS };
	struct timespec deadline;

	deadline_from(&deadline, &linger);
	while (!kicked && pthread_cond_clockwait(&ticker_cond, &ticker_lock, CLOCK_MONOTONIC,
						 &deadline) != ETIMEDOUT)
		;
	return kicked;
}

/*
 * Idle once a pass finds nothing in flight. ticking is cleared before that
 * last pass, so a submission after it sees it clear and kicks; one that
 * comes after the linger finds it gone and starts another. Set here, not
 * by whoever starts it: set, it says a thread runs.
 */
static void *ticker_main(void *arg)
{
	(void)arg;
	atomic_store(&ticking, true);
	for (;;) {
		while (tick())
			;
		atomic_store(&ticking, false);
		if (tick()) {
			atomic_store(&ticking, true);
			continue;
		}
		pthread_mutex_lock(&ticker_lock);
		if (!ticker_linger()) {
			running = false;
			pthread_mutex_unlock(&ticker_lock);
			return NULL;
		}
		kicked = false;
		atomic_store(&ticking, true);
		pthread_mutex_unlock(&ticker_lock);
	}
}

static void ticker_forked(void)
{
	pthread_mutex_init(&ticker_lock, NULL);
	pthread_cond_init(&ticker_cond, NULL);
	atomic_store(&ticking, false);
	running = kicked = false;
}

static void ticker_atfork(void)
{
	pthread_atfork(NULL, NULL, ticker_forked);
}

/* Under ticker_lock. */
static int ticker_start(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, ticker_atfork);
	if (thread_start_detached(ticker_main, NULL))
		return -EAGAIN;
	running = true;
	return 0;
}

/*
 * Before a submission, under the context's lock: the ticker must be there
 * before the kernel has requests nobody may call in for, as nothing may
 * fail after; without a thread the submission is refused (-EAGAIN). One
 * load while it runs. A ticker seen running does not end before a pass
 * that finds this context's lock free and its requests done: it clears
 * ticking before its last pass, and a kick keeps it from ending after.
 */
int publisher_prepare(void)
{
	int ret = 0;

	if (likely(atomic_load(&ticking)))
		return 0;
	pthread_mutex_lock(&ticker_lock);
	if (running) {
		kicked = true;
		pthread_cond_signal(&ticker_cond);
	} else {
		ret = ticker_start();
	}
	pthread_mutex_unlock(&ticker_lock);
	return ret;
}
