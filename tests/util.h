/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared helpers of the Check suites. */
#ifndef TESTS_UTIL_H
#define TESTS_UTIL_H

#include <check.h>
#include <libaio.h>
#include <stddef.h>

/*
 * The extensions are weak references, so that the suites also link against
 * the real libaio (-laio), the reference whose results they assert: make
 * check runs each of them so (tests/libaio/), but those of the library's
 * own rules. There the extensions are NULL, and a suite asserts only what
 * libaio does too.
 */
#pragma weak aio_compat_backend
#pragma weak aio_compat_setup
#pragma weak aio_compat_queue_run
#pragma weak aio_compat_set_fsync_order
#pragma weak aio_compat_held_syncs
#pragma weak aio_compat_backend_name
#include "aio-compat.h"
#include "aio-ring.h"

/* AddressSanitizer owns malloc and maps shadow memory as it goes. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* ThreadSanitizer (make check TSAN=1) maps shadow memory too, and follows no threads after fork. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/*
 * AddressSanitizer does not follow the unwinding of a thread that is
 * cancelled or calls pthread_exit(): its stack would stay poisoned. A test
 * thread calls this right before the cancellation point where its cancel
 * acts (a no-op without ASan).
 */
void stack_unwinds_next(void);

/*
 * pthread_exit(NULL) from the main thread: the process ends with its last
 * thread. Under LeakSanitizer, what the main thread's stack held would
 * look leaked at that end: the leak check is then turned off.
 */
void main_thread_exit(void) __attribute__((noreturn));

/*
 * valgrind (make check VALGRIND=1) maps memory of its own and cannot
 * follow some calls the suites make on purpose. Without its headers the
 * suites cannot tell, and take it that they run without it.
 */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND 0
#endif

/*
 * The backend this run tests: "native", "uring" or "auto" (what
 * aio_compat_backend says of a context set up here), or "libaio".
 */
const char *test_backend(void);
/*
 * Whether AIO_COMPAT_URING_EMULATE has the library meet io_uring as a
 * kernel older than major.minor would ("none": older than any).
 */
int uring_emulates_before(unsigned major, unsigned minor);
/* True when the context runs on the library's ring on io_uring (false under the real libaio). */
int ctx_is_uring(io_context_t ctx);

/* A fresh file of size bytes in dir (NULL: /dev/shm), unlinked; returns fd. */
int tmpfile_in(const char *dir, size_t size, int flags);
/* size bytes aligned for O_DIRECT, filled with pattern. */
void *aligned_buf(size_t size, int pattern);

/* io_getevents with a timeout in milliseconds. */
int getevents_ms(io_context_t ctx, long min_nr, long nr, struct io_event *ev, long ms);

/*
 * A thread's io_getevents(ctx, min_nr, min_nr, ..., 5 s), for
 * pthread_create: min_nr at most 8; ret and ms are what it returned, when.
 */
struct waiter {
	io_context_t ctx;
	long min_nr;
	int ret;
	long ms;
};
void *waiter_main(void *waiter);

/* A pointer in the kernel half of the address space: never valid from user space. */
#define KERNEL_PTR ((void *)0xffff800000000000UL)

/* io_submit of one iocb. */
int submit_one(io_context_t ctx, struct iocb *cb);
/* Reaps exactly one event within 2 s and asserts it belongs to cb; returns res. */
long reap_one(io_context_t ctx, struct iocb *cb);
/* Reaps exactly n events within ms milliseconds into ev; asserts the count. */
void reap_n(io_context_t ctx, int n, struct io_event *ev, long ms);
/* Asserts that no event arrives within ms milliseconds. */
void expect_no_event(io_context_t ctx, long ms);

/*
 * For errors io_uring learns only when the request runs (a closed fd, a
 * file that cannot honour a flag): native AIO fails io_submit with err,
 * the uring backend accepts the iocb and its event carries err.
 */
void expect_error_at_submit_or_event(io_context_t ctx, struct iocb *cb, int err);

/* Open descriptors and mappings of this process. */
int count_fds(void);
int count_maps(void);
/* Mappings of kernel AIO rings and io_uring rings among them. */
int count_ring_maps(void);

/*
 * The kernel's own answers, through the raw system calls: the ring size
 * it gives maxevents, and how many requests such a context accepts in
 * flight from one CPU.
 */
unsigned kernel_ring_nr(int maxevents);
int kernel_inflight_limit(int maxevents);

/* Runs the calling thread on CPU 0 only (the per-CPU request budget is then exact). */
void pin_to_cpu0(void);

/*
 * A check that cannot run here: prints "SKIP: <suite> on <backend>: <why>"
 * and makes run_suite return EXIT_SKIP (unless a check failed). part names
 * what is missing (tests/run.sh lists the names); where AIO_COMPAT_REQUIRE
 * lists it, the check fails instead. NULL for a limit of the tool the run
 * is under (valgrind, ASan), which no list can require away.
 */
void test_skip(const char *part, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The exit status of a suite that ran but skipped some or all of its checks. */
#define EXIT_SKIP 77

/*
 * Runs the suite and prints the Check summary after a line naming the
 * backend. Returns the process exit status: EXIT_FAILURE if a check
 * failed, else EXIT_SKIP if one was skipped, else EXIT_SUCCESS. When the
 * backend this run names cannot be set up on this kernel, the whole suite
 * is skipped, by test_skip's rule with the backend as the part.
 */
int run_suite(Suite *s, const char *area);

#endif
