/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Setting up and tearing down contexts, and choosing their backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "internal.h"

char ring_mappings;

static int backend_from_env(void)
{
	const char *name = getenv("AIO_COMPAT_BACKEND");

	if (!name || !*name || !strcmp(name, "auto"))
		return AIO_COMPAT_AUTO;
	if (!strcmp(name, "uring") || !strcmp(name, "io_uring"))
		return AIO_COMPAT_URING;
	if (!strcmp(name, "native"))
		return AIO_COMPAT_NATIVE;
	return -EINVAL;
}

/*
 * auto is native AIO that sends the reads of cold files to io_uring
 * (prefetch.c), where this process could make a ring; else native.
 */
static const struct engine *choose_engine(int backend, int *err)
{
	if (backend == AIO_COMPAT_AUTO)
		backend = backend_from_env();
	switch (backend) {
	case AIO_COMPAT_AUTO:
		return backend_probe_uring() ? &native_engine : &auto_engine;
	case AIO_COMPAT_URING:
		*err = backend_probe_uring();
		return *err ? NULL : &uring_engine;
	case AIO_COMPAT_NATIVE:
		return &native_engine;
	}
	*err = -EINVAL;
	return NULL;
}

/* The start of a /proc or /sys file; read(2), as stdio would allocate. */
static bool read_text(const char *path, char *buf, size_t size)
{
	int state = cancel_disable();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);

	if (fd >= 0)
		close(fd);
	cancel_restore(state);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return true;
}

static unsigned possible_cpus(void)
{
	char text[64], *end;
	unsigned long lo, hi;

	if (!read_text("/sys/devices/system/cpu/possible", text, sizeof(text)))
		return (unsigned)get_nprocs_conf();
	lo = strtoul(text, &end, 10);
	if (*end != '-')
		return (unsigned)lo + 1;
	hi = strtoul(end + 1, NULL, 10);
	return (unsigned)hi + 1;
}

static unsigned long aio_max_nr(void)
{
	char text[32], *end;
	unsigned long max;

	if (!read_text("/proc/sys/fs/aio-max-nr", text, sizeof(text)))
		return 65536;
	max = strtoul(text, &end, 10);
	return end == text ? 65536 : max;
}

/*
 * io_setup's answers and sizes as the kernel's ioctx_alloc() gives them
 * for nr events, in its unsigned arithmetic: the ring fills whole pages,
 * and a lone submitter runs out of per-CPU request batches a few slots
 * before the ring is full. (The system-wide count against aio-max-nr is
 * the kernel's own and is not kept here.)
 */
static int kernel_limits(struct aio_ctx *ctx, unsigned nr)
{
	unsigned cpus = possible_cpus(), events = nr, batch;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes;

	if (events < cpus * 4)
		events = cpus * 4;
	events *= 2;
	if (events > 0x10000000u / sizeof(struct io_event))
		return -EINVAL;
	if (!events || nr > aio_max_nr())
		return -EAGAIN;
	bytes = sizeof(struct aio_ring) + (size_t)events * sizeof(struct io_event);
	bytes = (bytes + page - 1) / page * page;
	ctx->ring_nr = (unsigned)((bytes - sizeof(struct aio_ring)) / sizeof(struct io_event));
	batch = (ctx->ring_nr - 1) / (cpus * 4);
	if (!batch)
		batch = 1;
	ctx->max_outstanding = (ctx->ring_nr - 1) / batch * batch;
	return 0;
}

static int ring_alloc(struct aio_ctx *ctx)
{
	size_t bytes = sizeof(struct aio_ring) + (size_t)ctx->ring_nr * sizeof(struct io_event);
	long page = sysconf(_SC_PAGESIZE);
	void *p;

	bytes = (bytes + page - 1) & ~(size_t)(page - 1);
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	ctx->ring = p;
	ctx->ring_bytes = bytes;
	ctx->ring->nr = ctx->ring_nr;
	ctx->ring->magic = AIO_RING_MAGIC;
	ctx->ring->compat_features = AIO_RING_COMPAT_FEATURES;
	ctx->ring->header_length = sizeof(struct aio_ring);
	return 0;
}

static int reqs_alloc(struct aio_ctx *ctx)
{
	ctx->reqs = calloc(ctx->max_outstanding, sizeof(*ctx->reqs));
	if (!ctx->reqs)
		return -ENOMEM;
	for (unsigned i = ctx->max_outstanding; i-- > 0;) {
		ctx->reqs[i].next = ctx->free_reqs;
		ctx->free_reqs = &ctx->reqs[i];
	}
	return 0;
}

static void ctx_free(struct aio_ctx *ctx)
{
	ctx->calls->release(ctx);
	order_free(ctx);
	eventfd_release_all(ctx);
	pthread_cond_destroy(&ctx->helper.cond);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx->reqs);
	free(ctx->judged.kind);
	free(ctx);
}

/* The flag, or for io_setup AIO_COMPAT_URING_SINGLE_ISSUER=1. */
static bool single_issuer_wanted(int flags)
{
	const char *env = getenv("AIO_COMPAT_URING_SINGLE_ISSUER");

	return flags & AIO_COMPAT_SINGLE_ISSUER || (env && !strcmp(env, "1"));
}

static int ring_setup(struct aio_ctx *ctx, unsigned nr, int flags)
{
	bool single_issuer = single_issuer_wanted(flags);
	int ret = kernel_limits(ctx, nr);

	if (!ret)
		ret = ctx->engine->setup(ctx, &single_issuer);
	ctx->single_issuer = !ret && single_issuer;
	if (!ret)
		ret = ring_alloc(ctx);
	/* A single issuer's ring fills as its thread calls in. */
	ctx->reader.taken = ctx->single_issuer;
	return ret;
}

static void ring_release(struct aio_ctx *ctx)
{
	if (ctx->priv)
		ctx->engine->teardown(ctx);
	if (ctx->ring)
		munmap(ctx->ring, ctx->ring_bytes);
}

static int ctx_create(unsigned nr, const struct engine *engine, int flags, struct aio_ctx **out)
{
	struct aio_ctx *ctx = calloc(1, sizeof(*ctx));
	int ret;

	if (!ctx)
		return -ENOMEM;
	ctx->calls = engine->calls;
	ctx->engine = engine;
	ctx->order.on = true;
	pthread_mutex_init(&ctx->lock, NULL);
	pthread_cond_init(&ctx->helper.cond, NULL);
	ctx->issuer = pthread_self();
	ctx->efd.pid = getpid();
	ret = ctx->calls->setup(ctx, nr, flags);
	if (!ret)
		ret = reqs_alloc(ctx);
	if (!ret)
		ret = registry_add(ctx);
	if (ret) {
		ctx_free(ctx);
		return ret;
	}
	*out = ctx;
	return 0;
}

static int setup(int maxevents, io_context_t *ctxp, int backend)
{
	int flags = backend & ~(AIO_COMPAT_URING | AIO_COMPAT_NATIVE);
	unsigned nr = (unsigned)maxevents;
	const struct engine *engine;
	struct aio_ctx *ctx = NULL;
	int ret, state;

	if (bad_user_ptr(ctxp, sizeof(*ctxp)))
		return -EFAULT;
	if (*ctxp || nr == 0 || flags & ~AIO_COMPAT_SINGLE_ISSUER)
		return -EINVAL;
	fault_guard_install();
	/* Probing and setting up open and close files: never half done. */
	state = cancel_disable();
	engine = choose_engine(backend & ~flags, &ret);
	if (engine)
		ret = ctx_create(nr, engine, flags, &ctx);
	cancel_restore(state);
	if (ret)
		return ret;
	*ctxp = (io_context_t)ctx->ring;
	return 0;
}

AIO_EXPORT int io_setup(int maxevents, io_context_t *ctxp)
{
	return setup(maxevents, ctxp, AIO_COMPAT_AUTO);
}

AIO_EXPORT int aio_compat_setup(int maxevents, io_context_t *ctxp, int backend)
{
	return setup(maxevents, ctxp, backend);
}

/* Events of a context being destroyed go nowhere, as with the kernel. */
static void discard_events(struct aio_ctx *ctx)
{
	ctx->reader.lib_head = ctx->tail;
	ctx->ring->head = ctx->tail;
}

/*
 * As the kernel's io_destroy does: a poll would never let it return.
 * Whether any cancel failed (perhaps a poll that just completed).
 */
static bool cancel_polls(struct aio_ctx *ctx)
{
	bool failed = false;

	for (unsigned i = 0; i < ctx->max_outstanding; i++) {
		struct req *req = &ctx->reqs[i];

		if (!req->obj || req_opcode(req) != IO_CMD_POLL || req->cancelled)
			continue;
		if (ctx->engine->cancel(ctx, req) == -EINPROGRESS)
			req->cancelled = true;
		else
			failed = true;
	}
	return failed;
}

/*
 * Like the kernel: the handle dies at once for everyone else, threads
 * waiting in io_getevents are woken, and the call returns once every
 * request in flight has finished (held syncs are issued and waited for).
 */
static int ring_destroy(struct aio_ctx *ctx)
{
	bool failed;

	pthread_mutex_lock(&ctx->lock);
	/* A single issuer's thread asleep in it could not be woken. */
	if (ctx->dead || (ctx_foreign(ctx) && (ctx->live || ctx->reapers))) {
		int ret = ctx->dead ? -EINVAL : -EEXIST;

		ctx_unlock(ctx);
		return ret;
	}
	/* Reapers asleep in it are woken to find it dead (ctx_unlock). */
	ctx->dead = true;
	ctx_unlock(ctx);
	helper_stop(ctx);

	pthread_mutex_lock(&ctx->lock);
	failed = cancel_polls(ctx);
	while (ctx->live) {
		publish(ctx);
		discard_events(ctx);
		/*
		 * Only polls left, and some not cancelled: once more, now that
		 * the engine has been reaped; past that, tearing the engine down
		 * cancels them in the kernel, where no event is waited for.
		 */
		if (failed && ctx->live && ctx->live == ctx->polls) {
			failed = cancel_polls(ctx);
			if (failed)
				break;
		}
		/*
		 * Not as a reaper, which is woken to find the context dead;
		 * woken for events another thread published (sleepers_due).
		 */
		if (ctx->live) {
			ctx->destroy_waiting = true;
			wait_for_events(ctx, NULL, NULL, false);
			ctx->destroy_waiting = false;
		}
	}
	ctx_unlock(ctx);
	return 0;
}

static int destroy(io_context_t handle)
{
	struct aio_ctx *ctx = ctx_get(handle);
	int ret;

	if (!ctx)
		return -EINVAL;
	ret = ctx->calls->destroy(ctx);
	if (ret) {
		ctx_put(ctx);
		return ret;
	}
	registry_remove(ctx);
	ctx_free(ctx);
	return 0;
}

/* Its waits, joins and closes run to the end: a cancel acts after it. */
AIO_EXPORT int io_destroy(io_context_t handle)
{
	int state = cancel_disable();
	int ret = destroy(handle);

	cancel_restore(state);
	return ret;
}

const struct ctx_calls ring_calls = {
	.setup = ring_setup,
	.release = ring_release,
	.destroy = ring_destroy,
	.submit = ring_submit,
	.getevents = ring_getevents,
	.take = ring_take,
	.queue_wait = ring_queue_wait,
	.cancel = ring_cancel,
};

AIO_EXPORT int aio_compat_backend(io_context_t handle)
{
	struct aio_ctx *ctx = ctx_get(handle);
	int kind;

	if (!ctx)
		return -EINVAL;
	kind = ctx->engine->kind;
	ctx_put(ctx);
	return kind;
}

AIO_EXPORT const char *aio_compat_backend_name(int backend)
{
	switch (backend) {
	case AIO_COMPAT_AUTO:
		return "auto";
	case AIO_COMPAT_URING:
		return "uring";
	case AIO_COMPAT_NATIVE:
		return "native";
	}
	return NULL;
}

AIO_EXPORT int aio_compat_set_fsync_order(io_context_t handle, int on)
{
	struct aio_ctx *ctx = ctx_get(handle);
	int was;

	if (!ctx)
		return -EINVAL;
	pthread_mutex_lock(&ctx->lock);
	was = ctx->order.on;
	ctx->order.on = on != 0;
	/* Nothing posted, nothing to signal or wake: a plain unlock. */
	pthread_mutex_unlock(&ctx->lock);
	ctx_put(ctx);
	return was;
}

AIO_EXPORT long aio_compat_held_syncs(io_context_t handle)
{
	struct aio_ctx *ctx = ctx_get(handle);
	long n;

	if (!ctx)
		return -EINVAL;
	pthread_mutex_lock(&ctx->lock);
	n = ctx->order.held;
	pthread_mutex_unlock(&ctx->lock);
	ctx_put(ctx);
	return n;
}
