/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The native backend: the kernel's AIO system calls, made directly. The
 * kernel's completion ring is private to the library; it is read in user
 * space, as fio's userspace_reap does, so reaping costs no system call.
 * Every request signals the context's eventfd, in which waiters ppoll:
 * io_getevents could not wait without taking events, and returns -EINTR
 * when io_uring task work, not a signal, interrupts it.
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

struct native {
	unsigned long id; /* the kernel's context, and its ring */
	int notify_fd;
};

static struct native *native(struct aio_ctx *ctx)
{
	return ctx->priv;
}

static struct aio_ring *kernel_ring(struct aio_ctx *ctx)
{
	return (struct aio_ring *)native(ctx)->id;
}

static int native_setup(struct aio_ctx *ctx, unsigned nr)
{
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
	struct iocb *iocbs[SUBMIT_MAX];
	long ret;

	if (n > SUBMIT_MAX)
		n = SUBMIT_MAX;
	for (int i = 0; i < n; i++) {
		struct iocb *io = &reqs[i]->kiocb;

		io->u.c.flags |= IOCB_FLAG_RESFD;
		io->u.c.resfd = native(ctx)->notify_fd;
		iocbs[i] = io;
	}
	ret = syscall(__NR_io_submit, native(ctx)->id, (long)n, iocbs);
	return ret < 0 ? -errno : (int)ret;
}

static struct req *event_req(const struct io_event *ev)
{
	return (struct req *)((char *)ev->obj - offsetof(struct req, kiocb));
}

static int native_reap(struct aio_ctx *ctx, struct completion *out, int max)
{
	struct aio_ring *ring = kernel_ring(ctx);
	unsigned head = ring->head, nr = ring->nr;
	unsigned tail = atomic_load_explicit((_Atomic unsigned *)&ring->tail, memory_order_acquire);
	int n = 0;

	while (head != tail && n < max) {
		const struct io_event *ev = &ring->io_events[head];

		out[n].req = event_req(ev);
		out[n].res = ev->res;
		out[n].res2 = ev->res2;
		if (unlikely(under_valgrind))
			valgrind_read_done(out[n].req, out[n].res);
		n++;
		if (++head == nr)
			head = 0;
	}
	atomic_store_explicit((_Atomic unsigned *)&ring->head, head, memory_order_release);
	return n;
}

static bool native_ready(struct aio_ctx *ctx)
{
	struct aio_ring *ring = kernel_ring(ctx);

	return ring->head !=
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
};
