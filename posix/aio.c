/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <aio.h> on libaio-compat: aio_read, aio_write, aio_fsync, aio_error,
 * aio_return, aio_suspend, aio_cancel, lio_listio.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

enum access {
	ACCESS_READ,
	ACCESS_WRITE,
};

/* EBADF unless fd is open with the access the request needs. */
static int check_fd(int fd, enum access access)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || (flags & O_PATH))
		return EBADF;
	if (access == ACCESS_READ && (flags & O_ACCMODE) == O_WRONLY)
		return EBADF;
	if (access == ACCESS_WRITE && (flags & O_ACCMODE) == O_RDONLY)
		return EBADF;
	return 0;
}

/* What the call can refuse before queueing a read or write. */
static int check_rw(const struct aiocb *cb, enum access access)
{
	int err = sigevent_check(&cb->aio_sigevent);

	if (!err && (cb->aio_reqprio < 0 || cb->aio_reqprio > AIO_PRIO_DELTA_MAX))
		err = EINVAL;
	return err ? err : check_fd(cb->aio_fildes, access);
}

/* EAGAIN when there is no memory for what its notice will take. */
static int prep(struct posix_req *req, struct aiocb *cb, int cmd)
{
	void *buf = (void *)cb->aio_buf;

	switch (cmd) {
	case IO_CMD_PREAD:
		io_prep_pread(&req->iocb, cb->aio_fildes, buf, cb->aio_nbytes, cb->aio_offset);
		break;
	case IO_CMD_PWRITE:
		io_prep_pwrite(&req->iocb, cb->aio_fildes, buf, cb->aio_nbytes, cb->aio_offset);
		break;
	case IO_CMD_FSYNC:
		io_prep_fsync(&req->iocb, cb->aio_fildes);
		break;
	default:
		io_prep_fdsync(&req->iocb, cb->aio_fildes);
		break;
	}
	req->iocb.data = req;
	req->sev = cb->aio_sigevent;
	return notice_prepare(&req->sev, &req->notice);
}

static int fail(int err)
{
	errno = err;
	return -1;
}

static int submit_single(struct aiocb *cb, int cmd)
{
	struct posix_req *req;
	int err, ret;

	req = req_new(cb, &err);
	if (!req)
		return fail(err);
	err = prep(req, cb, cmd);
	ret = err ? -err : req_submit(&req, 1);
	if (ret == 1)
		return 0;
	req_drop(req);
	return fail(-ret);
}

PUBLIC int aio_read(struct aiocb *cb)
{
	int err = check_rw(cb, ACCESS_READ);

	return err ? fail(err) : submit_single(cb, IO_CMD_PREAD);
}

PUBLIC int aio_write(struct aiocb *cb)
{
	int err = check_rw(cb, ACCESS_WRITE);

	return err ? fail(err) : submit_single(cb, IO_CMD_PWRITE);
}

/*
 * Only aio_fildes and aio_sigevent are read. The honest-fsync rule of the
 * shared context issues the sync after every aio_write on the descriptor
 * queued before it. A descriptor not open for writing is EBADF, as the
 * Linux page and POSIX.1-2001 say.
 */
PUBLIC int aio_fsync(int op, struct aiocb *cb)
{
	int err;

	if (op != O_SYNC && op != O_DSYNC)
		return fail(EINVAL);
	err = sigevent_check(&cb->aio_sigevent);
	if (!err)
		err = check_fd(cb->aio_fildes, ACCESS_WRITE);
	if (err)
		return fail(err);
	return submit_single(cb, op == O_SYNC ? IO_CMD_FSYNC : IO_CMD_FDSYNC);
}

/* EINVAL for an aiocb that names no request, or one already returned. */
PUBLIC int aio_error(const struct aiocb *cb)
{
	ssize_t ret;
	int err;

	if (req_status(cb, &err, &ret, false) < 0)
		return fail(EINVAL);
	return err;
}

/* The result once: the request is forgotten, and asking again is EINVAL. */
PUBLIC ssize_t aio_return(struct aiocb *cb)
{
	ssize_t ret;
	int err;

	if (req_status(cb, &err, &ret, true) < 0 || err == EINPROGRESS)
		return fail(EINVAL);
	return ret;
}

struct suspend_list {
	const struct aiocb *const *list;
	int nent;
};

static bool any_done(void *arg)
{
	const struct suspend_list *s = arg;
	bool any = false;

	for (int i = 0; i < s->nent; i++) {
		if (!s->list[i])
			continue;
		if (!req_busy_locked(s->list[i]))
			return true;
		any = true;
	}
	return !any;
}

/* A cancellation point, as POSIX has it: a cancel acts on entry or while it sleeps. */
PUBLIC int aio_suspend(const struct aiocb *const list[], int nent, const struct timespec *timeout)
{
	struct suspend_list s = { list, nent };
	int err;

	pthread_testcancel();
	if (nent < 0)
		return fail(EINVAL);
	err = wait_until(any_done, &s, timeout, true);
	return err ? fail(err) : 0;
}

PUBLIC int aio_cancel(int fd, struct aiocb *cb)
{
	if (fcntl(fd, F_GETFL) < 0)
		return fail(EBADF);
	if (cb && cb->aio_fildes != fd)
		return fail(EINVAL);
	return req_cancel_scan(fd, cb);
}

static bool group_done(void *arg)
{
	return ((struct lio_group *)arg)->outstanding == 0;
}

/*
 * An interrupted LIO_WAIT hands its group to the completions. Not a
 * cancellation point (nor is glibc's): the group would have no owner.
 */
static int lio_wait(struct lio_group *group)
{
	int err = wait_until(group_done, group, NULL, false);
	bool failed;

	engine_lock();
	failed = group->failed;
	if (err && group->outstanding) {
		group->wait = false;
		group = NULL;
	}
	engine_unlock();
	free(group);
	if (err)
		return fail(err);
	return failed ? fail(EIO) : 0;
}

/*
 * Queues one entry of a list, or records why it cannot be; *again is set
 * when that is a lack of resources.
 */
static struct posix_req *lio_entry(struct aiocb *cb, struct lio_group *group, bool *again)
{
	struct posix_req *req;
	int cmd, err, new_err;

	if (cb->aio_lio_opcode == LIO_READ) {
		cmd = IO_CMD_PREAD;
		err = check_rw(cb, ACCESS_READ);
	} else if (cb->aio_lio_opcode == LIO_WRITE) {
		cmd = IO_CMD_PWRITE;
		err = check_rw(cb, ACCESS_WRITE);
	} else {
		cmd = 0;
		err = EINVAL;
	}
	req = req_new(cb, &new_err);
	if (req && !err)
		err = prep(req, cb, cmd);
	if (req && err)
		req_fail(req, err);
	if (!req || err) {
		*again |= err == EAGAIN || (!req && new_err == EAGAIN);
		group->failed = true;
		return NULL;
	}
	req->group = group;
	return req;
}

PUBLIC int lio_listio(int mode, struct aiocb *const list[], int nent, struct sigevent *sev)
{
	struct posix_req **reqs;
	struct lio_group *group;
	int n = 0, submitted, err = 0;
	bool again = false;

	if ((mode != LIO_WAIT && mode != LIO_NOWAIT) || nent < 0)
		return fail(EINVAL);
	if (mode == LIO_NOWAIT && sev && sigevent_check(sev))
		return fail(EINVAL);
	group = calloc(1, sizeof(*group));
	reqs = calloc(nent ? nent : 1, sizeof(*reqs));
	if (!group || !reqs) {
		free(group);
		free(reqs);
		return fail(EAGAIN);
	}
	group->wait = mode == LIO_WAIT;
	group->sev.sigev_notify = SIGEV_NONE;
	if (mode == LIO_NOWAIT && sev)
		group->sev = *sev;
	if (notice_prepare(&group->sev, &group->notice)) {
		free(group);
		free(reqs);
		return fail(EAGAIN);
	}
	for (int i = 0; i < nent; i++) {
		if (!list[i] || list[i]->aio_lio_opcode == LIO_NOP)
			continue;
		reqs[n] = lio_entry(list[i], group, &again);
		if (reqs[n])
			n++;
	}
	/* One reference for this call, so the group outlives the submission. */
	group->outstanding = n + 1;
	submitted = n ? req_submit(reqs, n) : 0;
	if (submitted < 0) {
		err = -submitted;
		submitted = 0;
	}
	for (int i = submitted; i < n; i++)
		req_fail(reqs[i], err ? err : EAGAIN);
	free(reqs);
	if (submitted < n || again) {
		engine_lock();
		group->failed = true;
		engine_unlock();
		err = EAGAIN;
	}
	if (mode == LIO_WAIT) {
		group_release(group, 1 + n - submitted);
		if (err) {
			/* POSIX: EAGAIN, after what was queued has finished. */
			lio_wait(group);
			return fail(err);
		}
		return lio_wait(group);
	}
	engine_lock();
	err = err ? err : group->failed ? EIO : 0;
	engine_unlock();
	group_release(group, 1 + n - submitted);
	return err ? fail(err) : 0;
}

/*
 * Under _FILE_OFFSET_BITS=64 <aio.h> renames every call to its *64 twin.
 * On 64-bit Linux struct aiocb64 is struct aiocb.
 */
_Static_assert(sizeof(struct aiocb64) == sizeof(struct aiocb), "aiocb64 differs from aiocb");

PUBLIC int aio_read64(struct aiocb64 *cb)
{
	return aio_read((struct aiocb *)cb);
}

PUBLIC int aio_write64(struct aiocb64 *cb)
{
	return aio_write((struct aiocb *)cb);
}

PUBLIC int aio_fsync64(int op, struct aiocb64 *cb)
{
	return aio_fsync(op, (struct aiocb *)cb);
}

PUBLIC int aio_error64(const struct aiocb64 *cb)
{
	return aio_error((const struct aiocb *)cb);
}

PUBLIC ssize_t aio_return64(struct aiocb64 *cb)
{
	return aio_return((struct aiocb *)cb);
}

PUBLIC int aio_suspend64(const struct aiocb64 *const list[], int nent,
			 const struct timespec *timeout)
{
	return aio_suspend((const struct aiocb *const *)list, nent, timeout);
}

PUBLIC int aio_cancel64(int fd, struct aiocb64 *cb)
{
	return aio_cancel(fd, (struct aiocb *)cb);
}

PUBLIC int lio_listio64(int mode, struct aiocb64 *const list[], int nent, struct sigevent *sev)
{
	return lio_listio(mode, (struct aiocb *const *)list, nent, sev);
}
