/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A thread's exit, on an engine whose I/O dies with the thread that
 * submitted it (engine->thread_bound): io_uring runs blocking work on the
 * submitting thread's io-wq, and cancels what is still queued there when
 * that thread exits, where native AIO ties I/O to the process. So a thread
 * that exits with I/O in flight waits, in its thread-specific-data
 * destructor, until that I/O has completed.
 *
 * Each request names its submitter (submitter_claim), and only the exit
 * looks: nothing is counted per request. Polls name none: they survive
 * their thread, and may never fire.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>

#include "internal.h"

struct submitter {
	bool known; /* its destructor is set */
};

static pthread_key_t submitter_key;
static pthread_once_t submitter_once = PTHREAD_ONCE_INIT;
static int submitter_key_err;
/* Initial-exec: a load from %fs, not a call per submission; one byte of
 * the static TLS that glibc keeps for libraries loaded later. */
static __thread struct submitter self __attribute__((tls_model("initial-exec")));

static bool runs_requests_of(const struct aio_ctx *ctx, const struct submitter *s)
{
	for (unsigned i = 0; i < ctx->max_outstanding; i++)
		if (ctx->reqs[i].obj && ctx->reqs[i].owner == s)
			return true;
	return false;
}

/* A thread at its exit, among its context's exit_waiters while it waits there. */
struct exit_waiter {
	const struct submitter *s;
	bool due; /* events were published since it looked */
	struct exit_waiter *next;
};

/*
 * Whoever publishes may have taken the completions the engine's wait_fd
 * told a waiter of: the waiter must look again.
 */
void exit_waiters_note(struct aio_ctx *ctx)
{
	for (struct exit_waiter *w = ctx->exit_waiters; w; w = w->next)
		w->due = w->s != &self;
}

bool exit_waiters_due(const struct aio_ctx *ctx)
{
	for (const struct exit_waiter *w = ctx->exit_waiters; w; w = w->next)
		if (w->due)
			return true;
	return false;
}

struct exit_find {
	const struct submitter *s;
	struct aio_ctx *ctx; /* pinned */
};

/*
 * Under the registry's lock, which is only to find: the first context that
 * may still run requests of f->s, pinned. One whose lock is taken may; it
 * is looked at once pinned. A context io_destroy retired cannot be
 * pinned, and needs no looking at: it waited for all its I/O first.
 */
static void exit_find_visit(struct aio_ctx *ctx, void *arg)
{
	struct exit_find *f = arg;
	bool maybe;

	if (f->ctx || !ctx->engine->thread_bound || ctx_foreign(ctx))
		return;
	maybe = pthread_mutex_trylock(&ctx->lock) != 0;
	if (!maybe) {
		maybe = runs_requests_of(ctx, f->s);
		pthread_mutex_unlock(&ctx->lock);
	}
	if (maybe)
		f->ctx = ctx_get((io_context_t)ctx->ring);
}

/*
 * Sleeps until no request of w->s runs on ctx, as any waiter does
 * (wait_for_events): a single issuer's thread in the engine, the others
 * on wait_fd until a completion, or a wake-up once another thread
 * published (sleepers_due).
 */
static void exit_wait(struct aio_ctx *ctx, struct exit_waiter *w)
{
	struct exit_waiter **p;

	pthread_mutex_lock(&ctx->lock);
	w->next = ctx->exit_waiters;
	ctx->exit_waiters = w;
	for (;;) {
		/* A single issuer's completions wait for its thread: this one. */
		if (ctx->single_issuer)
			ctx->engine->run_deferred(ctx);
		publish(ctx);
		w->due = false;
		if (!runs_requests_of(ctx, w->s))
			break;
		wait_for_events(ctx, NULL, NULL, ctx->single_issuer);
	}
	for (p = &ctx->exit_waiters; *p != w; p = &(*p)->next)
		;
	*p = w->next;
	ctx_unlock(ctx);
}

/*
 * Context by context, without the registry's lock while it waits: this
 * thread creates no request any more, so a context it has waited on
 * stays done.
 */
static void submitter_exit(void *arg)
{
	struct exit_waiter w = { .s = arg };
	struct exit_find f = { .s = arg };
	int state = cancel_disable();

	for (;;) {
		f.ctx = NULL;
		registry_each(exit_find_visit, &f);
		if (!f.ctx)
			break;
		exit_wait(f.ctx, &w);
		ctx_put(f.ctx);
	}
	cancel_restore(state);
}

static void submitter_key_create(void)
{
	submitter_key_err = pthread_key_create(&submitter_key, submitter_exit);
}

/*
 * Names this thread the submitter of reqs but polls; -EAGAIN where its
 * exit could not wait for them (no key, or no memory to set it).
 */
int submitter_claim(struct req **reqs, int n)
{
	struct submitter *s = &self;

	if (unlikely(!s->known)) {
		pthread_once(&submitter_once, submitter_key_create);
		s->known = !submitter_key_err && !pthread_setspecific(submitter_key, s);
		if (!s->known)
			return -EAGAIN;
	}
	for (int i = 0; i < n; i++)
		reqs[i]->owner = req_opcode(reqs[i]) == IO_CMD_POLL ? NULL : s;
	return 0;
}
