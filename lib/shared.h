/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the library and its POSIX face (posix/) both need: starting a
 * thread of their own. Static inline, compiled into each: the face links
 * only the library's exported API, and the two static archives must link
 * side by side, so neither can take such a symbol from the other.
 */
#ifndef AIO_COMPAT_SHARED_H
#define AIO_COMPAT_SHARED_H

#include <pthread.h>
#include <signal.h>

/*
 * How long an idle thread of the library (the ticker, a context's helper,
 * the POSIX face's completion thread) waits for new work before it ends:
 * long enough that a program's next burst usually finds it, short enough
 * that none outlives the program's own threads for long.
 */
#define THREAD_LINGER_NS (100 * 1000000L)

/*
 * A thread of the library's own: it must not take the program's signals,
 * so it starts with all of them blocked. Detached: nothing waits for its
 * end. 0, or pthread_create's error.
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
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&thread, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return ret;
}

#endif
