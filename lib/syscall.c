/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Raw AIO system calls on a library handle. Some programs take io_setup and
 * io_submit from libaio but reap with syscall(__NR_io_getevents, ctx, ...)
 * themselves (MariaDB's InnoDB). A library handle names no kernel context,
 * so glibc's syscall(2) is interposed here: io_getevents, io_pgetevents,
 * io_submit, io_cancel and io_destroy whose context is a live library
 * handle are served by the library, with the system call's -1 and errno;
 * everything else goes to glibc's syscall with all six arguments, the AIO
 * numbers on a kernel context included.
 *
 * Exported without a version, so that it binds references to any of
 * glibc's versions of the symbol. Only the shared library carries it: a
 * static program keeps glibc's, and an inline syscall instruction reaches
 * the kernel whatever is loaded.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "internal.h"

typedef long (*syscall_fn)(long nr, ...);

static _Atomic(syscall_fn) next_syscall;

/* Resolved before main, so that later calls stay async-signal-safe. */
__attribute__((constructor)) static void next_syscall_resolve(void)
{
	atomic_store_explicit(&next_syscall, (syscall_fn)dlsym(RTLD_NEXT, "syscall"),
			      memory_order_relaxed);
}

static syscall_fn glibc_syscall(void)
{
	syscall_fn fn = atomic_load_explicit(&next_syscall, memory_order_relaxed);

	if (unlikely(!fn)) {
		next_syscall_resolve();
		fn = atomic_load_explicit(&next_syscall, memory_order_relaxed);
	}
	return fn;
}

long kernel_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	return glibc_syscall()(nr, a, b, c, d, e, f);
}

/* The kernel's struct __aio_sigset, io_pgetevents' sixth argument. */
struct aio_sigset {
	const sigset_t *sigmask;
	size_t sigsetsize;
};

static long pgetevents(io_context_t ctx, long *a)
{
	const struct aio_sigset *usig = (const struct aio_sigset *)a[5];
	const sigset_t *mask = NULL;

	if (usig) {
		if (bad_user_ptr(usig, sizeof(*usig)))
			return -EFAULT;
		if (usig->sigmask && usig->sigsetsize != _NSIG / 8)
			return -EINVAL;
		mask = usig->sigmask;
	}
	return aio_getevents(ctx, a[1], a[2], (struct io_event *)a[3],
			     (const struct timespec *)a[4], mask);
}

/* A call the library serves: the library's -errno convention. */
static long serve(long nr, io_context_t ctx, long *a)
{
	switch (nr) {
	case __NR_io_submit:
		return io_submit(ctx, a[1], (struct iocb **)a[2]);
	case __NR_io_getevents:
		return aio_getevents(ctx, a[1], a[2], (struct io_event *)a[3],
				     (const struct timespec *)a[4], NULL);
	case __NR_io_pgetevents:
		return pgetevents(ctx, a);
	case __NR_io_cancel:
		return io_cancel(ctx, (struct iocb *)a[1], (struct io_event *)a[2]);
	}
	return io_destroy(ctx);
}

/* io_setup is not among them: a raw io_setup makes a kernel context. */
static bool aio_call(long nr)
{
	switch (nr) {
	case __NR_io_destroy:
	case __NR_io_getevents:
	case __NR_io_pgetevents:
	case __NR_io_submit:
	case __NR_io_cancel:
		return true;
	}
	return false;
}

/*
 * As glibc's does, it takes six arguments whatever the call passes: those
 * not passed are read from the caller's frame, which AddressSanitizer
 * would take for an overflow.
 */
__attribute__((no_sanitize_address)) AIO_EXPORT long syscall(long nr, ...)
{
	struct aio_ctx *ctx;
	va_list ap;
	long a[6], ret;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (likely(!aio_call(nr)) || !(ctx = ctx_get((io_context_t)a[0])))
		return glibc_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	ctx_put(ctx);
	ret = serve(nr, (io_context_t)a[0], a);
	if (ret >= 0)
		return ret;
	errno = (int)-ret;
	return -1;
}
