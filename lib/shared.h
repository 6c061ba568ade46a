/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the library and its POSIX face (posix/) both need: starting a
 * thread of their own, and deadlines on the monotonic clock. Static
 * inline, compiled into each: the face links only the library's exported
 * API, and the two static archives must link side by side, so neither can
 * take such a symbol from the other.
 */
#ifndef AIO_COMPAT_SHARED_H
#define AIO_COMPAT_SHARED_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define NSEC_PER_SEC 1000000000L
#define KTIME_SEC_MAX (INT64_MAX / NSEC_PER_SEC)

/*
 * How long an idle thread of the library (a context's helper, the POSIX
 * face's completion thread) waits for new work before it ends:
 * long enough that a program's next burst usually finds it, short enough
 * that none outlives the program's own threads for long.
 */
#define THREAD_LINGER_NS (100 * 1000000L)

/*
 * A thread of the library's own: it must not take the program's signals,
 * so it starts with all of them blocked but the faults, which the fault
 * guard (fault.c) takes in it too, and which kill a thread that blocks
 * them. Detached: nothing waits for its end. 0, or pthread_create's error.
 */
static inline int thread_start_detached(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t thread;
	int ret;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&thread, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return ret;
}

/*
 * A timeout as the kernel reads it (timespec64_to_ktime, then a relative
 * hrtimer), with no -EINVAL for any value: seconds from KTIME_SEC_MAX on
 * mean no limit; otherwise sec * 1e9 + nsec nanoseconds, in wrapping 64-bit
 * arithmetic. A sum of 0 looks once without waiting; a negative one never
 * expires (ktime_add_safe saturates it), nor does one past the clock's
 * range. False when there is no limit, else the deadline on the monotonic
 * clock.
 */
static inline bool deadline_from(struct timespec *deadline, const struct timespec *rel)
{
	struct timespec now;
	int64_t ns, now_ns;

	if (rel->tv_sec >= KTIME_SEC_MAX)
		return false;
	ns = (int64_t)((uint64_t)rel->tv_sec * NSEC_PER_SEC + (uint64_t)rel->tv_nsec);
	if (ns < 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	now_ns = (int64_t)now.tv_sec * NSEC_PER_SEC + now.tv_nsec;
	if (ns > INT64_MAX - now_ns)
		return false;
	ns += now_ns;
	deadline->tv_sec = ns / NSEC_PER_SEC;
	deadline->tv_nsec = ns % NSEC_PER_SEC;
	return true;
}

/* What is left until deadline, never negative (the kernel waits forever then). */
static inline bool time_left(const struct timespec *deadline, struct timespec *left)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left->tv_sec = deadline->tv_sec - now.tv_sec;
	left->tv_nsec = deadline->tv_nsec - now.tv_nsec;
	if (left->tv_nsec < 0) {
		left->tv_nsec += NSEC_PER_SEC;
		left->tv_sec--;
	}
	if (left->tv_sec < 0)
		left->tv_sec = left->tv_nsec = 0;
	return left->tv_sec || left->tv_nsec;
}

static inline bool deadline_passed(const struct timespec *deadline)
{
	struct timespec left;

	return !time_left(deadline, &left);
}

#endif
