/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The native backend: the kernel's AIO system calls, made directly. The
 * kernel's completion ring is private to the library; it is read in user
 * space, as fio's userspace_reap does, so reaping costs no system call.
 *
 * A thread that must wait sleeps in io_pgetevents, which restarts itself
 * after io_uring task work where io_getevents would answer -EINTR; the
 * events it takes wait in a stash for the next reap. One thread at a time
 * (events.c), since the kernel then moves the ring's head; the others
 * ppoll the context's eventfd. Only requests someone may wait for without
 * calling in signal it (an iocb's own eventfd, a program reading the
 * ring): an eventfd on every request costs cached reads about a tenth.
 * Without io_pgetevents (before 4.18, or valgrind, which does not know
 * it), every request signals the eventfd and every waiter ppolls it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define SUBMIT_MAX 64
#define STASH_MAX 64

struct native {
	unsigned long id; /* the kernel's context, and its ring */
	int notify_fd;
	unsigned stash_head, stash_nr; /* events a sleeper took */
	struct io_event stash[STASH_MAX];
};

static struct native *native(struct aio_ctx *ctx)
{
	return ctx->priv;
}

static struct aio_ring *kernel_ring(struct aio_ctx *ctx)
{
	return (struct aio_ring *)native(ctx)->id;
}

static bool has_pgetevents;

static void pgetevents_probe(void)
{
	has_pgetevents =
	    !under_valgrind &&
	    (syscall(__NR_io_pgetevents, 0, 0L, 0L, NULL, NULL, NULL) == 0 || errno != ENOSYS);
}

static int native_setup(struct aio_ctx *ctx, unsigned nr)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct native *n = calloc(1, sizeof(*n));
	int ret;

	if (!n)
		return -ENOMEM;
	n->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->notify_fd < 0) {
		ret = -errno;
		free(n);
		return ret;
	}
	if (syscall(__NR_io_setup, nr, &n->id) < 0) {
		ret = -errno;
		close(n->notify_fd);
		free(n);
		return ret;
	}
	pthread_once(&once, pgetevents_probe);
	ctx->waits_in_engine = has_pgetevents;
	ctx->priv = n;
	ctx->ring_nr = kernel_ring(ctx)->nr;
	valgrind_defined(kernel_ring(ctx),
			 sizeof(struct aio_ring) + ctx->ring_nr * sizeof(struct io_event));
	ctx->max_outstanding = ctx->ring_nr - 1;
	return 0;
}

static void native_teardown(struct aio_ctx *ctx)
{
	syscall(__NR_io_destroy, native(ctx)->id);
	close(native(ctx)->notify_fd);
	free(ctx->priv);
	ctx->priv = NULL;
}

static int native_submit(struct aio_ctx *ctx, struct req **reqs, int n)
{
	bool all_signal = !ctx->waits_in_engine || ctx->direct_reader;
	struct iocb *iocbs[SUBMIT_MAX];
	long ret;

	if (n > SUBMIT_MAX)
		n = SUBMIT_MAX;
	for (int i = 0; i < n; i++) {
		struct iocb *io = &reqs[i]->kiocb;

		/* The helper waits for these in ppoll, not in the kernel. */
		if (all_signal || reqs[i]->resfd >= 0) {
			io->u.c.flags |= IOCB_FLAG_RESFD;
			io->u.c.resfd = native(ctx)->notify_fd;
		} else {
			io->u.c.flags &= ~IOCB_FLAG_RESFD;
		}
		iocbs[i] = io;
	}
	ret = syscall(__NR_io_submit, native(ctx)->id, (long)n, iocbs);
	return ret < 0 ? -errno : (int)ret;
}

static struct req *event_req(const struct io_event *ev)
{
	return (struct req *)((char *)ev->obj - offsetof(struct req, kiocb));
}

static void take(struct completion *out, const struct io_event *ev)
{
	out->req = event_req(ev);
	out->res = ev->res;
	out->res2 = ev->res2;
	if (unlikely(under_valgrind))
		valgrind_read_done(out->req, out->res);
}

/* What a sleeper took comes first: the kernel's ring holds later events. */
static int stash_reap(struct native *nat, struct completion *out, int max)
{
	int n = 0;

	while (nat->stash_head < nat->stash_nr && n < max)
		take(&out[n++], &nat->stash[nat->stash_head++]);
	if (nat->stash_head == nat->stash_nr)
		nat->stash_head = nat->stash_nr = 0;
	return n;
}

static int native_reap(struct aio_ctx *ctx, struct completion *out, int max)
{
	struct aio_ring *ring = kernel_ring(ctx);
	unsigned head = ring->head, nr = ring->nr;
	unsigned tail = atomic_load_explicit((_Atomic unsigned *)&ring->tail, memory_order_acquire);
	int n = unlikely(native(ctx)->stash_nr) ? stash_reap(native(ctx), out, max) : 0;

	while (head != tail && n < max) {
		take(&out[n++], &ring->io_events[head]);
		if (++head == nr)
			head = 0;
	}
	atomic_store_explicit((_Atomic unsigned *)&ring->head, head, memory_order_release);
	return n;
}

static bool native_ready(struct aio_ctx *ctx)
{
	struct aio_ring *ring = kernel_ring(ctx);

	if (ctx->engine_waiting)
		return false;
	return native(ctx)->stash_head < native(ctx)->stash_nr ||
	       ring->head !=
		   atomic_load_explicit((_Atomic unsigned *)&ring->tail, memory_order_acquire);
}

/* Drained before the last look, so any completion after it shows. */
static void native_arm(struct aio_ctx *ctx)
{
	uint64_t count;

	(void)!read(native(ctx)->notify_fd, &count, sizeof(count));
}

static int native_wait_fd(struct aio_ctx *ctx)
{
	return native(ctx)->notify_fd;
}

/* Called without the lock, by the one thread let sleep in the kernel. */
static int native_wait(struct aio_ctx *ctx, const struct timespec *timeout, const sigset_t *sigmask)
{
	struct native *nat = native(ctx);
	struct {
		const sigset_t *set;
		size_t size;
	} sig = { sigmask, _NSIG / 8 };
	long n = syscall(__NR_io_pgetevents, nat->id, 1L, (long)STASH_MAX, nat->stash, timeout,
			 sigmask ? &sig : NULL);

	nat->stash_head = 0;
	nat->stash_nr = n > 0 ? (unsigned)n : 0;
	if (n > 0 && unlikely(under_valgrind))
		valgrind_defined(nat->stash, (size_t)n * sizeof(nat->stash[0]));
	return n < 0 && errno == EINTR ? -EINTR : 0;
}

static int native_cancel(struct aio_ctx *ctx, struct req *req)
{
	struct io_event ev;

	if (syscall(__NR_io_cancel, native(ctx)->id, &req->kiocb, &ev) < 0)
		return -errno;
	return 0;
}

const struct engine native_engine = {
	.kind = AIO_COMPAT_NATIVE,
	.setup = native_setup,
	.teardown = native_teardown,
	.submit = native_submit,
	.reap = native_reap,
	.ready = native_ready,
	.arm = native_arm,
	.wait_fd = native_wait_fd,
	.cancel = native_cancel,
	.wait = native_wait,
};
