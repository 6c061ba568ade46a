/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vectored reads of valgrind.h: out of line, as they loop. */
#include <sys/uio.h>

#include "valgrind.h"

#ifdef HAVE_MEMCHECK
/*
 * An iovec array is the caller's and may be gone: used only while valid.
 * Outside valgrind GET_VBITS answers 0, so the array is never read.
 */
static bool iovec_valid(const struct iovec *iov)
{
	char vbits[sizeof(*iov)];

	if (VALGRIND_GET_VBITS(iov, vbits, sizeof(vbits)) != 1)
		return false;
	for (size_t b = 0; b < sizeof(vbits); b++)
		if (vbits[b])
			return false;
	return true;
}

void valgrind_readv_done(const struct iocb *io, long res)
{
	const struct iovec *iov = io->u.c.buf;

	for (unsigned long i = 0; i < io->u.c.nbytes && res > 0 && iovec_valid(&iov[i]); i++) {
		size_t len = iov[i].iov_len < (size_t)res ? iov[i].iov_len : (size_t)res;

		VALGRIND_MAKE_MEM_DEFINED_IF_ADDRESSABLE(iov[i].iov_base, len);
		res -= (long)len;
	}
}
#endif
