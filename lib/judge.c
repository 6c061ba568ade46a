/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The judge: on io_uring, what native AIO would refuse at submission.
 *
 * io_uring learns much only when a request runs, and reports it in the
 * event, or runs what native AIO refuses (a write to an eventfd, a read of
 * /proc/self/mem). Native AIO names it at once, so the library asks it: a
 * native AIO context of the process's own is shown copies of iocbs made
 * so that they cannot run, and its refusal is the answer. Each question is
 * a system call, so it is asked where a refusal is certain (to name the
 * error the kernel checks first), once per process for the RWF_ bits the
 * kernel knows, and once per fd number and kind of request on a context.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#ifndef RWF_NOAPPEND
#define RWF_NOAPPEND 0x00000020
#endif

/* The RWF_ bits every kernel with io_uring knows (RWF_APPEND came in 4.16). */
#define RWF_EVERY_KERNEL (RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND)

/* A buffer in the kernel's half: the import of it fails, with -EFAULT. */
#define UNREACHABLE ((void *)~0xfffUL)

/*
 * One context for the process (io_destroy of one costs an RCU grace
 * period), made at first need, and made again in a child after fork,
 * which inherits none. Where native AIO is missing there is no judge.
 */
static pthread_mutex_t judge_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long judge_id;
static bool judge_missing;

static void judge_prepare(void)
{
	pthread_mutex_lock(&judge_lock);
}

static void judge_parent(void)
{
	pthread_mutex_unlock(&judge_lock);
}

static void judge_child(void)
{
	judge_id = 0;
	pthread_mutex_unlock(&judge_lock);
}

static void judge_atfork(void)
{
	pthread_atfork(judge_prepare, judge_parent, judge_child);
}

static unsigned long judge(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	unsigned long id;

	pthread_once(&once, judge_atfork);
	pthread_mutex_lock(&judge_lock);
	if (!judge_id && !judge_missing && syscall(__NR_io_setup, 1, &judge_id) < 0) {
		judge_id = 0;
		/* aio-max-nr reached passes; the rest does not. */
		judge_missing = errno != EAGAIN;
	}
	id = judge_id;
	pthread_mutex_unlock(&judge_lock);
	return id;
}

/* False without a judge; else its refusal of the copy, or 0 if it ran it. */
static bool judge_asks(struct iocb *copy, int *refusal)
{
	unsigned long id = judge();
	struct io_event ev;

	if (!id)
		return false;
	*refusal = syscall(__NR_io_submit, id, 1L, &copy) < 0 ? -errno : 0;
	if (!*refusal)
		syscall(__NR_io_getevents, id, 1L, 1L, &ev, NULL);
	return true;
}

/*
 * Which error names a refused iocb can hang on the open file: its mode,
 * whether it takes RWF_NOWAIT, whether it can be read at all. So the judge
 * is shown a copy of the iocb whose offset of -1 fails the kernel's last
 * check: the copy is refused, never run. Only where native AIO is missing
 * does the library's own answer stand, a closed fd named first.
 */
int kernel_refusal(const struct iocb *io, int ours)
{
	struct iocb copy = *io;
	int refusal;

	copy.u.c.offset = -1;
	if (!judge_asks(&copy, &refusal))
		return fcntl(io->aio_fildes, F_GETFD) < 0 ? -EBADF : ours;
	/* A file that takes negative offsets ran it: ours is all there is. */
	return refusal ? refusal : ours;
}

/* A read of fd with these flags, which cannot run: the judge's refusal. */
static bool judge_read_flags(int fd, unsigned flags, int *refusal)
{
	struct iocb probe;

	memset(&probe, 0, sizeof(probe));
	probe.aio_lio_opcode = IO_CMD_PREAD;
	probe.aio_fildes = fd;
	probe.u.c.buf = UNREACHABLE;
	probe.aio_rw_flags = (int)flags;
	return judge_asks(&probe, refusal);
}

/*
 * kiocb_set_rw_flags() refuses a bit it does not know with -EOPNOTSUPP,
 * and then RWF_APPEND with RWF_NOAPPEND with -EINVAL, before it looks at
 * the file: so each bit is shown along with both. A kernel without
 * RWF_NOAPPEND (before 6.9) knows the older bits alone. Without a judge,
 * io_uring judges them all, in the event.
 */
static unsigned rw_flags_learn(int fd)
{
	const unsigned pair = RWF_APPEND | RWF_NOAPPEND;
	unsigned known = pair;
	int refusal;

	if (!judge_read_flags(fd, pair, &refusal))
		return ~0u;
	if (refusal != -EINVAL)
		return RWF_EVERY_KERNEL;
	for (unsigned bit = 1; bit; bit <<= 1)
		if (!(bit & pair) && judge_read_flags(fd, bit | pair, &refusal) &&
		    refusal == -EINVAL)
			known |= bit;
	return known;
}

/* The RWF_ bits the running kernel knows; fd is any open file. */
static unsigned kernel_rw_flags(int fd)
{
	static _Atomic unsigned learned; /* never 0 once learned */
	unsigned known = atomic_load_explicit(&learned, memory_order_relaxed);

	if (!known) {
		known = rw_flags_learn(fd);
		atomic_store_explicit(&learned, known, memory_order_relaxed);
	}
	return known;
}

/* Those of flags the running kernel does not know; fd is any open file. */
unsigned rw_flags_unknown(unsigned flags, int fd)
{
	if (likely(!(flags & ~RWF_EVERY_KERNEL)))
		return 0;
	return flags & ~kernel_rw_flags(fd);
}

/* Unremembered if there is no memory for it: the judge is asked again. */
static void fd_remember(struct aio_ctx *ctx, int fd, uint8_t kind)
{
	unsigned n = ctx->judged.nr ? ctx->judged.nr : 64;
	uint8_t *table;

	if ((unsigned)fd >= ctx->judged.nr) {
		while (n <= (unsigned)fd)
			n *= 2;
		table = realloc(ctx->judged.kind, n);
		if (!table)
			return;
		memset(table + ctx->judged.nr, 0, n - ctx->judged.nr);
		ctx->judged.kind = table;
		ctx->judged.nr = n;
	}
	ctx->judged.kind[fd] |= kind;
}

/*
 * Whether the file takes this kind of request at all, asked with a copy
 * that cannot run: a read or write with no flags and a buffer in the
 * kernel's half, which fails only once the file's checks have passed
 * (-EFAULT); a sync with a field set, which fails (-EINVAL) once the fd is
 * found. If not, the judge names the iocb's own refusal, flags and all.
 * Else the fd's requests of that kind go without asking from now on, until
 * an event says the number names another file (fd_event).
 */
int fd_judge(struct aio_ctx *ctx, const struct iocb *io)
{
	uint8_t kind = fd_request_kind(io->aio_lio_opcode);
	int passed = kind == FD_TAKES_SYNCS_POLLS ? -EINVAL : -EFAULT;
	struct iocb probe;
	int refusal;

	memset(&probe, 0, sizeof(probe));
	probe.aio_fildes = io->aio_fildes;
	if (kind == FD_TAKES_SYNCS_POLLS) {
		probe.aio_lio_opcode = IO_CMD_FSYNC;
		probe.u.c.nbytes = 1;
	} else {
		probe.aio_lio_opcode = kind == FD_TAKES_READS ? IO_CMD_PREAD : IO_CMD_PWRITE;
		probe.u.c.buf = UNREACHABLE;
	}
	if (judge_asks(&probe, &refusal) && refusal && refusal != passed)
		return kernel_refusal(io, refusal);
	/* check_sync() took its file: the next syncs need not look again. */
	if (opcode_is_sync(io->aio_lio_opcode))
		kind |= FD_SYNCABLE;
	fd_remember(ctx, io->aio_fildes, kind);
	return 0;
}

/*
 * A number closed and opened again on another file gives no event: what
 * was judged of each fd is forgotten once a second, and judged again at
 * its next request. The clock is the vDSO's: no system call.
 */
void fd_judgements_age(struct aio_ctx *ctx)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	if (likely(now.tv_sec == ctx->judged.at))
		return;
	ctx->judged.at = now.tv_sec;
	if (ctx->judged.kind)
		memset(ctx->judged.kind, 0, ctx->judged.nr);
}

/*
 * An event's error that a file judged to take the request would not give:
 * the number was closed, or names another file now. The next request on
 * it goes to the judge again.
 */
void fd_event(struct aio_ctx *ctx, int fd, long res)
{
	if (res == -EBADF || res == -EISDIR || res == -EINVAL)
		fd_forget(ctx, fd);
}

/* The fd's next request goes to the judge again. */
void fd_forget(struct aio_ctx *ctx, int fd)
{
	if ((unsigned)fd < ctx->judged.nr)
		ctx->judged.kind[fd] = 0;
}
