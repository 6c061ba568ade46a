/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine behind <aio.h>: one libaio-compat context per process, set up
 * on first use and again in a forked child; a table of requests keyed by
 * aiocb; a completion thread that stores each result, wakes waiters and
 * only then notifies, so a signal handler's aio_error sees the result.
 * The thread runs while requests are in flight: idle, it waits a while
 * for more and then ends, so that it never keeps alive a process whose
 * main thread has called pthread_exit(); the next submission starts another.
 */
#include "internal.h"
#include "../lib/shared.h"

#include <aio-compat.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TABLE_SIZE 1024
#define REAP_BATCH 64
#define SUBMIT_BATCH 64
/* Requests in flight at once; past this aio_read and friends answer EAGAIN. */
#define MAX_INFLIGHT 1024
#define MIN_INFLIGHT 128
#define REAP_TICK_NS (20 * 1000000L)

static pthread_mutex_t engine_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static pthread_cond_t engine_busy = PTHREAD_COND_INITIALIZER;
static io_context_t engine_ctx;
static atomic_bool engine_ready;
/* Requests submitted and not yet reaped; the completion thread idles at 0. */
static long in_flight;
static bool thread_running;
static struct posix_req *table[TABLE_SIZE];
/* Bumped after every batch of completions; aio_suspend waits on it. */
static _Atomic uint32_t generation;

void engine_lock(void)
{
	pthread_mutex_lock(&engine_mutex);
}

void engine_unlock(void)
{
	pthread_mutex_unlock(&engine_mutex);
}

static struct posix_req **bucket(const struct aiocb *cb)
{
	uintptr_t h = (uintptr_t)cb;

	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ULL;
	return &table[(h >> 32) % TABLE_SIZE];
}

static struct posix_req *lookup(const struct aiocb *cb)
{
	struct posix_req *req;

	for (req = *bucket(cb); req; req = req->next)
		if (req->cb == cb)
			return req;
	return NULL;
}

static void req_free(struct posix_req *req)
{
	notice_free(req->notice);
	free(req);
}

static void unlink_req(struct posix_req *req)
{
	struct posix_req **p;

	for (p = bucket(req->cb); *p; p = &(*p)->next) {
		if (*p == req) {
			*p = req->next;
			return;
		}
	}
}

static void futex_wake_all(void)
{
	syscall(SYS_futex, &generation, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/*
 * 0 once woken or when generation moved past seen, else ETIMEDOUT or
 * EINTR. A cancellable wait takes a cancel while it sleeps, where no lock
 * is held and nothing is left to undo.
 */
static int futex_wait(uint32_t seen, const struct timespec *timeout, bool cancellable)
{
	int type, err = 0;

	if (cancellable)
		pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &type);
	if (syscall(SYS_futex, &generation, FUTEX_WAIT_PRIVATE, seen, timeout, NULL, 0) < 0)
		err = errno;
	if (cancellable)
		pthread_setcanceltype(type, NULL);
	return err == ETIMEDOUT || err == EINTR ? err : 0;
}

/* Finishes a lio_listio group; called without the lock held. */
static void group_finish(struct lio_group *group)
{
	sigevent_notify(&group->sev, group->notice);
	free(group);
}

/* Drops n references; true when the group is complete and nobody waits on it. */
static bool group_put_locked(struct lio_group *group, int n)
{
	group->outstanding -= n;
	return group->outstanding == 0 && !group->wait;
}

void group_release(struct lio_group *group, int n)
{
	bool finish;

	engine_lock();
	finish = group_put_locked(group, n);
	engine_unlock();
	atomic_fetch_add(&generation, 1);
	futex_wake_all();
	if (finish)
		group_finish(group);
}

struct notice {
	struct sigevent sev;
	struct thread_notice *thread;
	struct lio_group *group;
};

static void complete_locked(const struct io_event *ev, struct notice *out)
{
	struct posix_req *req = (struct posix_req *)ev->obj;
	long res = (long)ev->res;

	req->err = res < 0 ? (int)-res : 0;
	req->ret = res < 0 ? -1 : res;
	out->sev = req->sev;
	out->thread = req->notice;
	req->notice = NULL;
	out->group = NULL;
	if (req->group) {
		if (req->err)
			req->group->failed = true;
		if (group_put_locked(req->group, 1))
			out->group = req->group;
		req->group = NULL;
	}
}

/*
 * Whether requests are in flight, or come within the linger; the thread
 * ends when this says no, under the lock that req_submit checks it under.
 */
static bool work_to_reap(void)
{
	struct timespec deadline;
	bool work;

	engine_lock();
	deadline_from(&deadline, &(struct timespec){ 0, THREAD_LINGER_NS });
	while (!in_flight && pthread_cond_clockwait(&engine_busy, &engine_mutex, CLOCK_MONOTONIC,
						    &deadline) != ETIMEDOUT)
		;
	work = in_flight != 0;
	thread_running = work;
	engine_unlock();
	return work;
}

/*
 * While requests are in flight the wait is bounded, so a wake-up lost
 * between another thread's io_submit and this wait costs a tick, not a
 * hang.
 */
static int reap(io_context_t ctx, struct io_event *ev)
{
	struct timespec tick = { 0, REAP_TICK_NS };

	return io_getevents(ctx, 1, REAP_BATCH, ev, &tick);
}

static void *completion_thread(void *arg)
{
	io_context_t ctx = arg;
	struct io_event ev[REAP_BATCH];
	struct notice notices[REAP_BATCH];

	while (work_to_reap()) {
		int n = reap(ctx, ev);

		if (n == -EINTR || n == 0)
			continue;
		if (n < 0)
			break; /* the context is gone: a forked child's stale copy */
		engine_lock();
		for (int i = 0; i < n; i++)
			complete_locked(&ev[i], &notices[i]);
		in_flight -= n;
		engine_unlock();
		atomic_fetch_add(&generation, 1);
		futex_wake_all();
		for (int i = 0; i < n; i++) {
			sigevent_notify(&notices[i].sev, notices[i].thread);
			if (notices[i].group)
				group_finish(notices[i].group);
		}
	}
	engine_lock();
	thread_running = false;
	engine_unlock();
	return NULL;
}

/* In a forked child the parent's requests and context are not ours. */
static void atfork_prepare(void)
{
	engine_lock();
}

static void atfork_parent(void)
{
	engine_unlock();
}

static void atfork_child(void)
{
	for (int i = 0; i < TABLE_SIZE; i++) {
		struct posix_req *req = table[i];

		while (req) {
			struct posix_req *next = req->next;

			req_free(req);
			req = next;
		}
		table[i] = NULL;
	}
	engine_ctx = NULL;
	engine_ready = false;
	in_flight = 0;
	thread_running = false;
	pthread_mutex_init(&engine_mutex, NULL);
	pthread_cond_init(&engine_busy, NULL);
}

static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/*
 * POSIX AIO never keeps its caller waiting, whatever the file: aio_read of
 * an empty pipe returns at once. The library's ring on io_uring does that,
 * where native AIO, and so auto, reads a pipe inside io_submit. So the
 * face asks for the ring unless AIO_COMPAT_BACKEND names a backend, and
 * takes auto where the ring cannot be had.
 */
static int context_setup(int nr, io_context_t *ctx)
{
	const char *env = getenv("AIO_COMPAT_BACKEND");

	if ((!env || !*env || !strcmp(env, "auto")) && !aio_compat_setup(nr, ctx, AIO_COMPAT_URING))
		return 0;
	return io_setup(nr, ctx);
}

/*
 * The context is set up outside the engine lock: io_setup takes the
 * registry's lock, and the fork handlers take both, in the order they
 * were registered in, which depends on which came first in the process.
 * So no thread ever holds the engine lock while it takes another lock of
 * the library. Two first calls at once may each set one up: the second
 * to finish destroys its own.
 */
static int engine_start(void)
{
	io_context_t ctx = NULL;
	int ret;

	if (atomic_load_explicit(&engine_ready, memory_order_acquire))
		return 0;
	pthread_once(&atfork_once, register_atfork);
	ret = context_setup(MAX_INFLIGHT, &ctx);
	if (ret == -EAGAIN)
		ret = context_setup(MIN_INFLIGHT, &ctx);
	if (ret < 0)
		return -ret;
	engine_lock();
	if (!engine_ready) {
		engine_ctx = ctx;
		atomic_store_explicit(&engine_ready, true, memory_order_release);
		ctx = NULL;
	}
	engine_unlock();
	if (ctx)
		io_destroy(ctx);
	return 0;
}

struct posix_req *req_new(struct aiocb *cb, int *err)
{
	struct posix_req *req, *old;

	/* No context (ENOSYS, EPERM, aio-max-nr): resources, to POSIX. */
	if (engine_start()) {
		*err = EAGAIN;
		return NULL;
	}
	*err = 0;
	engine_lock();
	old = lookup(cb);
	if (old && old->err == EINPROGRESS) {
		*err = EINVAL; /* the aiocb is still in use */
		goto out;
	}
	/* Made before the old result goes, which a refusal must leave. */
	req = calloc(1, sizeof(*req));
	if (!req) {
		*err = EAGAIN;
		goto out;
	}
	if (old) {
		unlink_req(old);
		req_free(old);
	}
	req->cb = cb;
	req->err = EINPROGRESS;
	req->ret = -1;
	req->iocb.data = req;
	req->next = *bucket(cb);
	*bucket(cb) = req;
	engine_unlock();
	return req;
out:
	engine_unlock();
	return NULL;
}

void req_fail(struct posix_req *req, int err)
{
	engine_lock();
	req->err = err;
	req->ret = -1;
	req->group = NULL;
	engine_unlock();
}

void req_drop(struct posix_req *req)
{
	engine_lock();
	unlink_req(req);
	engine_unlock();
	req_free(req);
}

/*
 * Submits nr requests in order; returns how many the context took, or a
 * negative errno when it took none. Stops at the first refusal.
 */
int req_submit(struct posix_req **reqs, int nr)
{
	struct iocb *iocbs[SUBMIT_BATCH];
	io_context_t ctx;
	int done = 0, ret = 0;

	/* Counted before the kernel sees them: they may complete at once. */
	engine_lock();
	ctx = engine_ctx;
	if (!thread_running) {
		if (thread_start_detached(completion_thread, ctx)) {
			engine_unlock();
			return -EAGAIN;
		}
		thread_running = true;
	}
	in_flight += nr;
	pthread_cond_signal(&engine_busy);
	engine_unlock();
	while (done < nr) {
		int batch = nr - done < SUBMIT_BATCH ? nr - done : SUBMIT_BATCH;

		for (int i = 0; i < batch; i++)
			iocbs[i] = &reqs[done + i]->iocb;
		ret = io_submit(ctx, batch, iocbs);
		if (ret < 0)
			break;
		done += ret;
		if (ret < batch)
			break;
	}
	engine_lock();
	in_flight -= nr - done;
	engine_unlock();
	return done || ret >= 0 ? done : ret;
}

/*
 * The status of cb: 0 with err and ret filled, or -1 when cb names no
 * request. consume (aio_return) forgets a finished request.
 */
int req_status(const struct aiocb *cb, int *err, ssize_t *ret, bool consume)
{
	struct posix_req *req;

	engine_lock();
	req = lookup(cb);
	if (!req) {
		engine_unlock();
		return -1;
	}
	*err = req->err;
	*ret = req->ret;
	if (consume && req->err != EINPROGRESS)
		unlink_req(req);
	else
		req = NULL;
	engine_unlock();
	if (req)
		req_free(req);
	return 0;
}

/* True while cb names a request in flight; a caller of wait_until holds the lock. */
bool req_busy_locked(const struct aiocb *cb)
{
	struct posix_req *req = lookup(cb);

	return req && req->err == EINPROGRESS;
}

/*
 * Neither kernel interface can take back a read, write or sync once
 * submitted, so nothing is cancelled. The descriptor is the iocb's: a
 * finished request's aiocb may already be freed: AIO_NOTCANCELED while any matching
 * request is in flight, else AIO_ALLDONE.
 */
int req_cancel_scan(int fd, const struct aiocb *cb)
{
	int answer = AIO_ALLDONE;

	engine_lock();
	if (cb) {
		struct posix_req *req = lookup(cb);

		if (req && req->err == EINPROGRESS)
			answer = AIO_NOTCANCELED;
	} else {
		for (int i = 0; i < TABLE_SIZE && answer == AIO_ALLDONE; i++)
			for (struct posix_req *req = table[i]; req; req = req->next)
				if (req->err == EINPROGRESS && (int)req->iocb.aio_fildes == fd)
					answer = AIO_NOTCANCELED;
	}
	engine_unlock();
	return answer;
}

/*
 * Waits until done(arg), checked under the lock, is true: 0, or EAGAIN
 * when the relative timeout passes, or EINTR when a signal arrives. Only
 * a cancellable wait is a cancellation point.
 */
int wait_until(bool (*done)(void *arg), void *arg, const struct timespec *timeout, bool cancellable)
{
	struct timespec deadline, left, *wait_for = NULL;
	bool limited = false;

	if (timeout) {
		if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= NSEC_PER_SEC)
			return EINVAL;
		limited = deadline_from(&deadline, timeout);
	}
	for (;;) {
		uint32_t seen = atomic_load(&generation);
		bool ok;

		engine_lock();
		ok = done(arg);
		engine_unlock();
		if (ok)
			return 0;
		if (limited) {
			if (!time_left(&deadline, &left))
				return EAGAIN;
			wait_for = &left;
		}
		switch (futex_wait(seen, wait_for, cancellable)) {
		case ETIMEDOUT:
			return EAGAIN;
		case EINTR:
			return EINTR;
		}
	}
}
