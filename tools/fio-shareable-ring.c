/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded under fio by tools/fio-compare.sh: fio's io_uring engine then
 * sets its rings up without IORING_SETUP_SINGLE_ISSUER and DEFER_TASKRUN,
 * as a ring that any thread may use, which a libaio context has to be.
 * Everything else about the engine stays as it is, so the comparison
 * shows what those two flags are worth to fio on its own.
 *
 * fio makes its io_uring system calls through syscall(3); this one passes
 * every call on, as glibc's does, with six arguments whatever the number.
 */
#include <dlfcn.h>
#include <linux/io_uring.h>
#include <stdarg.h>
#include <sys/syscall.h>

typedef long (*syscall_fn)(long nr, ...);

long syscall(long nr, ...);

long syscall(long nr, ...)
{
	static syscall_fn real;
	long arg[6];
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		arg[i] = va_arg(ap, long);
	va_end(ap);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "syscall");
	if (nr == __NR_io_uring_setup && arg[1]) {
		struct io_uring_params *p = (struct io_uring_params *)arg[1];

		p->flags &= ~(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	}
	return real(nr, arg[0], arg[1], arg[2], arg[3], arg[4], arg[5]);
}
