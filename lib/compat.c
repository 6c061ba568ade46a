/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The LIBAIO_0.1 entry points that libaio.so.1 still carries for binaries
 * linked before its ABI changed, so that those bind here too.
 */
#include "internal.h"

#define SYMVER(fn, name) __asm__(".symver " #fn "," name)

SYMVER(compat_io_cancel_0_1, "io_cancel@LIBAIO_0.1");
AIO_EXPORT int compat_io_cancel_0_1(io_context_t ctx, struct iocb *iocb);
int compat_io_cancel_0_1(io_context_t ctx, struct iocb *iocb)
{
	struct io_event event;

	return io_cancel(ctx, iocb, &event);
}

SYMVER(compat_io_queue_wait_0_1, "io_queue_wait@LIBAIO_0.1");
AIO_EXPORT int compat_io_queue_wait_0_1(io_context_t ctx, struct timespec *when);
int compat_io_queue_wait_0_1(io_context_t ctx, struct timespec *when)
{
	return io_queue_wait(ctx, when);
}

/* The old io_getevents had no min_nr: it waited for one. */
SYMVER(compat_io_getevents_0_1, "io_getevents@LIBAIO_0.1");
AIO_EXPORT int compat_io_getevents_0_1(io_context_t ctx, long nr, struct io_event *events,
				       const struct timespec *timeout);
int compat_io_getevents_0_1(io_context_t ctx, long nr, struct io_event *events,
			    const struct timespec *timeout)
{
	return aio_getevents(ctx, 1, nr, events, timeout, NULL);
}
