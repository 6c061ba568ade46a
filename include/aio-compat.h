/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libaio-compat: the libaio API on io_uring or the kernel's native AIO.
 *
 * The base API (io_setup, io_submit, io_getevents, io_prep_*, io_queue_*)
 * is libaio's own <libaio.h>, included here. What follows are the
 * extensions; each is exported under the AIO_COMPAT_1.0 version node.
 */
#ifndef AIO_COMPAT_H
#define AIO_COMPAT_H

#include <libaio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * libaio exports io_queue_wait but its header leaves it commented out.
 * Waits up to timeout (NULL: no limit) for a completion without reaping
 * it; returns 0 at once when nothing is in flight, -EINTR on a signal.
 */
int io_queue_wait(io_context_t ctx, struct timespec *timeout);

enum aio_compat_backend {
	AIO_COMPAT_AUTO = 0, /* io_uring where the kernel allows it */
	AIO_COMPAT_URING = 1,
	AIO_COMPAT_NATIVE = 2,
};

/*
 * OR'ed into the backend of aio_compat_setup(): a promise that only the
 * calling thread will use the context, and only through the library (no
 * IOCB_FLAG_RESFD, no reading the ring without calling in). On io_uring
 * the ring is then set up SINGLE_ISSUER | DEFER_TASKRUN, as fio's io_uring
 * engine sets it up: completions are posted when that thread calls in,
 * never by interrupting it. Any other thread's call that would need the
 * ring gets -EEXIST, io_uring's answer. Where the kernel lacks the mode,
 * or on native AIO, the flag changes nothing.
 */
#define AIO_COMPAT_SINGLE_ISSUER 0x100

/*
 * io_setup() with the backend named explicitly. AIO_COMPAT_AUTO follows
 * the AIO_COMPAT_BACKEND environment variable, as io_setup() does. A
 * backend that this kernel refuses fails with the kernel's error.
 */
int aio_compat_setup(int maxevents, io_context_t *ctxp, int backend);

/* The backend a context runs on (URING or NATIVE), or -EINVAL. */
int aio_compat_backend(io_context_t ctx);

/* "uring", "native" or "auto"; NULL for anything else. */
const char *aio_compat_backend_name(int backend);

/*
 * io_queue_run() that returns the number of callbacks it ran instead of
 * 0, or a negative error.
 */
int aio_compat_queue_run(io_context_t ctx);

/*
 * The honest-fsync rule: an FSYNC or FDSYNC on fd F is issued only after
 * every PWRITE/PWRITEV on F submitted before it to this context has
 * completed. On by default; on = 0 turns it off for programs that order
 * their own syncs. Returns the previous setting, or -EINVAL.
 */
int aio_compat_set_fsync_order(io_context_t ctx, int on);

/* How many syncs this context has held back for earlier writes, or -EINVAL. */
long aio_compat_held_syncs(io_context_t ctx);

#ifdef __cplusplus
}
#endif

#endif /* AIO_COMPAT_H */
