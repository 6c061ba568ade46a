/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The completion ring an io_context_t points at: struct aio_ring of the
 * kernel's fs/aio.c, which programs such as QEMU read themselves. Stated
 * here from the kernel's source, apart from the library's own copy, for
 * the suites and for tests/preload-client.c, a plain libaio program.
 */
#ifndef TESTS_AIO_RING_H
#define TESTS_AIO_RING_H

#include <libaio.h>

#define AIO_RING_MAGIC 0xa10a10a1u
#define AIO_RING_COMPAT_FEATURES 1

struct aio_ring {
	unsigned id;
	unsigned nr;
	unsigned head;
	unsigned tail;
	unsigned magic;
	unsigned compat_features;
	unsigned incompat_features;
	unsigned header_length;
	struct io_event io_events[];
};

#endif
