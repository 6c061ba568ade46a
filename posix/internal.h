/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The POSIX <aio.h> face: every request goes through one process-wide
 * libaio-compat context, so the honest-fsync rule orders aio_fsync after
 * the aio_write calls on its descriptor queued before it.
 */
#ifndef POSIX_INTERNAL_H
#define POSIX_INTERNAL_H

#include <aio.h>
#include <libaio.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#define PUBLIC __attribute__((visibility("default")))

struct thread_notice;

/* The requests of one lio_listio call, for its LIO_WAIT or sigevent. */
struct lio_group {
	int outstanding;
	bool failed;
	bool wait; /* LIO_WAIT: the caller frees it; else the last completion does */
	struct sigevent sev;
	struct thread_notice *notice; /* SIGEV_THREAD's, made when queued */
};

/*
 * One queued request. The kernel-facing iocb comes first: the event's obj
 * leads back here. aio_error and aio_return find it by its aiocb.
 */
struct posix_req {
	struct iocb iocb;
	struct aiocb *cb;
	struct posix_req *next; /* hash chain */
	struct lio_group *group;
	struct sigevent sev;	      /* copied: the aiocb may be reused once done */
	struct thread_notice *notice; /* SIGEV_THREAD's, until it completes */
	ssize_t ret;
	int err; /* EINPROGRESS until it completes */
};

/* engine.c */
struct posix_req *req_new(struct aiocb *cb, int *err);
int req_submit(struct posix_req **reqs, int nr);
void req_fail(struct posix_req *req, int err);
void req_drop(struct posix_req *req);
void group_release(struct lio_group *group, int n);
int req_status(const struct aiocb *cb, int *err, ssize_t *ret, bool consume);
bool req_busy_locked(const struct aiocb *cb);
int req_cancel_scan(int fd, const struct aiocb *cb);
int wait_until(bool (*done)(void *arg), void *arg, const struct timespec *timeout,
	       bool cancellable);
void engine_lock(void);
void engine_unlock(void);

/* notify.c */
int sigevent_check(const struct sigevent *sev);
int notice_prepare(const struct sigevent *sev, struct thread_notice **notice);
void sigevent_notify(const struct sigevent *sev, struct thread_notice *notice);
void notice_free(struct thread_notice *notice);

#endif
