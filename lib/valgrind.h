/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What memcheck cannot see the kernel do, told to it by client requests,
 * compiled in where <valgrind/memcheck.h> exists and empty elsewhere.
 * Outside valgrind a client request is a few instructions that change
 * nothing (it answers its default), so no path asks whether valgrind runs.
 *
 * The kernel fills read buffers behind memcheck's back: valgrind learns of
 * it in the system calls it wraps, but io_uring's completions are taken
 * from its CQ in user space, so the bytes a read returned there are marked
 * defined. The native kernel ring, which the library scans and valgrind
 * sizes for the events asked for rather than the kernel's own count, is
 * marked defined whole.
 */
#ifndef AIO_COMPAT_VALGRIND_H
#define AIO_COMPAT_VALGRIND_H

#include "internal.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif
#endif

#ifdef HAVE_MEMCHECK
void valgrind_readv_done(const struct iocb *io, long res);

static inline void valgrind_defined(const void *p, size_t len)
{
	VALGRIND_MAKE_MEM_DEFINED(p, len);
}

static inline void valgrind_read_done(const struct req *req, long res)
{
	if (res <= 0)
		return;
	if (req_opcode(req) == IO_CMD_PREAD)
		VALGRIND_MAKE_MEM_DEFINED_IF_ADDRESSABLE(req->kiocb.u.c.buf, res);
	else if (unlikely(req_opcode(req) == IO_CMD_PREADV))
		valgrind_readv_done(&req->kiocb, res);
}

/*
 * memcheck reports a read of memory it knows unmapped before the fault
 * happens: such a copy is refused without touching it (fault.c). Not an
 * iocb's, checked per request, which memcheck reports as valgrind's own
 * io_submit wrapper does. Outside valgrind GET_VBITS answers 0.
 */
static inline bool valgrind_unaddressable(const void *p, size_t len)
{
	char vbits[256];

	for (size_t off = 0; off < len; off += sizeof(vbits)) {
		size_t n = len - off < sizeof(vbits) ? len - off : sizeof(vbits);

		if (VALGRIND_GET_VBITS((const char *)p + off, vbits, n) == 3)
			return true;
	}
	return false;
}

/* Whether valgrind runs the process: for choices it forces, never per request. */
static inline bool valgrind_running(void)
{
	return RUNNING_ON_VALGRIND;
}
#else
static inline void valgrind_defined(const void *p, size_t len)
{
	(void)p;
	(void)len;
}

static inline void valgrind_read_done(const struct req *req, long res)
{
	(void)req;
	(void)res;
}

static inline bool valgrind_unaddressable(const void *p, size_t len)
{
	(void)p;
	(void)len;
	return false;
}

static inline bool valgrind_running(void)
{
	return false;
}
#endif

#endif
