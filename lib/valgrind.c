/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel fills read buffers behind memcheck's back: valgrind learns of
 * it in the system calls it wraps, but io_uring's completions are taken
 * from its CQ in user space. So under valgrind the bytes a read returned
 * there are marked defined. The native kernel ring, which the library
 * scans and valgrind sizes for the events asked for rather than the
 * kernel's own count, is marked defined whole. Outside valgrind, each
 * io_uring completion costs one load and a branch.
 */
#include <sys/uio.h>

#include "internal.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif
#endif

bool under_valgrind;

#ifdef HAVE_MEMCHECK
static void learn(void)
{
	under_valgrind = RUNNING_ON_VALGRIND;
}

/* Every io_setup asks; threads setting up at once must not race to store it. */
void valgrind_learn(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, learn);
}

void valgrind_defined(const void *p, size_t len)
{
	VALGRIND_MAKE_MEM_DEFINED(p, len);
}

/*
 * memcheck reports a read of memory it knows unmapped before the fault
 * happens: such a copy is refused without touching it (fault.c).
 */
bool valgrind_unaddressable(const void *p, size_t len)
{
	char vbits[256];

	for (size_t off = 0; off < len; off += sizeof(vbits)) {
		size_t n = len - off < sizeof(vbits) ? len - off : sizeof(vbits);

		if (VALGRIND_GET_VBITS((const char *)p + off, vbits, n) == 3)
			return true;
	}
	return false;
}

/* An iovec array is the caller's and may be gone: used only while valid. */
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

void valgrind_read_done(const struct req *req, long res)
{
	const struct iocb *io = &req->kiocb;
	const struct iovec *iov = io->u.c.buf;

	if (res <= 0)
		return;
	if (req_opcode(req) == IO_CMD_PREAD) {
		VALGRIND_MAKE_MEM_DEFINED_IF_ADDRESSABLE(io->u.c.buf, res);
		return;
	}
	if (req_opcode(req) != IO_CMD_PREADV)
		return;
	for (unsigned long i = 0; i < io->u.c.nbytes && res > 0 && iovec_valid(&iov[i]); i++) {
		size_t len = iov[i].iov_len < (size_t)res ? iov[i].iov_len : (size_t)res;

		VALGRIND_MAKE_MEM_DEFINED_IF_ADDRESSABLE(iov[i].iov_base, len);
		res -= (long)len;
	}
}
#else
void valgrind_learn(void)
{
}

void valgrind_defined(const void *p, size_t len)
{
	(void)p;
	(void)len;
}

bool valgrind_unaddressable(const void *p, size_t len)
{
	(void)p;
	(void)len;
	return false;
}

void valgrind_read_done(const struct req *req, long res)
{
	(void)req;
	(void)res;
}
#endif
