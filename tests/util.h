/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared helpers of the Check suites. */
#ifndef TESTS_UTIL_H
#define TESTS_UTIL_H

#include <check.h>
#include <libaio.h>
#include <stddef.h>

/*
 * The extensions are weak references, so that the suites also link against
 * the real libaio (-laio), the reference whose results they assert.
 */
#pragma weak aio_compat_backend
#pragma weak aio_compat_setup
#pragma weak aio_compat_queue_run
#pragma weak aio_compat_set_fsync_order
#pragma weak aio_compat_held_syncs
#include "aio-compat.h"

/* The backend this run tests: "native" or "uring" (AIO_COMPAT_BACKEND). */
const char *test_backend(void);
/* True when the context runs on io_uring (false under the real libaio). */
int ctx_is_uring(io_context_t ctx);

/* A fresh file of size bytes in dir (NULL: /dev/shm), unlinked; returns fd. */
int tmpfile_in(const char *dir, size_t size, int flags);
/* size bytes aligned for O_DIRECT, filled with pattern. */
void *aligned_buf(size_t size, int pattern);

/* io_getevents with a timeout in milliseconds. */
int getevents_ms(io_context_t ctx, long min_nr, long nr, struct io_event *ev, long ms);

/*
 * Runs the suite and prints the Check summary after a line naming the
 * backend. Returns the process exit status. When the backend this run
 * names cannot be set up on this kernel, says so and returns 0 with no
 * test run.
 */
int run_suite(Suite *s, const char *area);

#endif
