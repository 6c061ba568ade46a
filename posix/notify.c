/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Completion notices as sigevent(7) describes them: a signal queued to
 * the process with si_code SI_ASYNCIO and the caller's si_value, or a
 * function run in a new thread with that value.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SIGEV_THREAD_ID
#define SIGEV_THREAD_ID 4
#endif

/*
 * 0, or EINVAL for a notification method or signal number not served. A
 * zeroed aiocb asks for SIGEV_SIGNAL with signal 0: like kill(pid, 0) that
 * sends nothing, and it is how most programs ask for no notice.
 */
int sigevent_check(const struct sigevent *sev)
{
	switch (sev->sigev_notify) {
	case SIGEV_NONE:
		return 0;
	case SIGEV_SIGNAL:
	case SIGEV_THREAD_ID:
		return sev->sigev_signo >= 0 && sev->sigev_signo < NSIG ? 0 : EINVAL;
	case SIGEV_THREAD:
		return sev->sigev_notify_function ? 0 : EINVAL;
	default:
		return EINVAL;
	}
}

static void queue_signal(const struct sigevent *sev)
{
	siginfo_t info;
	pid_t pid = getpid();

	memset(&info, 0, sizeof(info));
	info.si_signo = sev->sigev_signo;
	info.si_code = SI_ASYNCIO;
	info.si_pid = pid;
	info.si_uid = getuid();
	info.si_value = sev->sigev_value;
	if (sev->sigev_notify == SIGEV_THREAD_ID)
		syscall(SYS_rt_tgsigqueueinfo, pid, sev->_sigev_un._tid, info.si_signo, &info);
	else
		syscall(SYS_rt_sigqueueinfo, pid, info.si_signo, &info);
}

struct thread_notice {
	void (*function)(union sigval);
	union sigval value;
};

/*
 * What a SIGEV_THREAD notice will take, allocated when the request is
 * queued (EAGAIN without memory): a completion must not lose its notice.
 */
int notice_prepare(const struct sigevent *sev, struct thread_notice **notice)
{
	*notice = NULL;
	if (sev->sigev_notify != SIGEV_THREAD)
		return 0;
	*notice = malloc(sizeof(**notice));
	if (!*notice)
		return EAGAIN;
	(*notice)->function = sev->sigev_notify_function;
	(*notice)->value = sev->sigev_value;
	return 0;
}

void notice_free(struct thread_notice *notice)
{
	free(notice);
}

static void *notice_thread(void *arg)
{
	struct thread_notice notice = *(struct thread_notice *)arg;

	free(arg);
	notice.function(notice.value);
	return NULL;
}

/*
 * The program's attributes are used as given; a joinable thread nobody
 * will join is detached here, as it would otherwise leak. Without the
 * resources for a thread (EAGAIN), it is asked for again until it comes,
 * as the kernel waits for memory rather than drop a completion.
 */
static void run_thread(const struct sigevent *sev, struct thread_notice *notice)
{
	const struct timespec pause = { 0, 1000000 };
	pthread_attr_t own, *attr = sev->sigev_notify_attributes;
	int state = PTHREAD_CREATE_DETACHED, ret;
	pthread_t thread;

	if (!attr) {
		pthread_attr_init(&own);
		pthread_attr_setdetachstate(&own, PTHREAD_CREATE_DETACHED);
		attr = &own;
	}
	pthread_attr_getdetachstate(attr, &state);
	while ((ret = pthread_create(&thread, attr, notice_thread, notice)) == EAGAIN)
		nanosleep(&pause, NULL);
	if (ret)
		free(notice);
	else if (state != PTHREAD_CREATE_DETACHED)
		pthread_detach(thread);
	if (attr == &own)
		pthread_attr_destroy(&own);
}

/* Takes the notice notice_prepare() made for sev. */
void sigevent_notify(const struct sigevent *sev, struct thread_notice *notice)
{
	switch (sev->sigev_notify) {
	case SIGEV_SIGNAL:
	case SIGEV_THREAD_ID:
		if (sev->sigev_signo)
			queue_signal(sev);
		break;
	case SIGEV_THREAD:
		run_thread(sev, notice);
		break;
	default:
		break;
	}
}
