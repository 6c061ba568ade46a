/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The eventfds of IOCB_FLAG_RESFD, held by reference as the kernel holds
 * them: from io_submit until the event is posted and signalled, whatever
 * the program does with the number meanwhile. Each context keeps a
 * duplicate of every eventfd its requests name:
 *
 * - while requests that name it are in flight, the number is trusted to
 *   mean the same eventfd, and submission costs no system call;
 * - once none are, it is trusted again only after the kernel says the
 *   number still names the duplicate's file (fd_same); else a new
 *   duplicate is made.
 *
 * The duplicates, and a held sync's own (submit.c), are taken high among
 * the numbers (fd_hold), away from those the program uses.
 *
 * A signal is written after the context's lock is released (ctx_unlock),
 * so a duplicate no longer wanted is closed only under the lock, when no
 * thread is between its unlock and its writes (ctx->efd.signalling is 0).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/*
 * The kernel takes only an eventfd here. Its inode is the one all
 * anonymous-inode files share, which is as far as fstat can tell. Learnt
 * once an eventfd could be made (concurrent learners store the same):
 * until then, for want of a descriptor or memory, the iocb is refused for
 * now (-EAGAIN), as the kernel refuses a request it lacks resources for.
 */
static _Atomic dev_t anon_dev;
static _Atomic ino_t anon_ino;

static ino_t anon_learn(void)
{
	int fd = eventfd(0, EFD_CLOEXEC);
	struct stat sb;

	if (fd < 0)
		return 0;
	if (!fstat(fd, &sb)) {
		atomic_store_explicit(&anon_dev, sb.st_dev, memory_order_relaxed);
		atomic_store_explicit(&anon_ino, sb.st_ino, memory_order_release);
	}
	close_nocancel(fd);
	return atomic_load_explicit(&anon_ino, memory_order_acquire);
}

static int check_eventfd(int fd)
{
	ino_t ino = atomic_load_explicit(&anon_ino, memory_order_acquire);
	struct stat sb;

	if (fd < 0 || fstat(fd, &sb))
		return -EBADF;
	if (unlikely(!ino))
		ino = anon_learn();
	if (!ino)
		return -EAGAIN;
	if (sb.st_dev != atomic_load_explicit(&anon_dev, memory_order_relaxed) || sb.st_ino != ino)
		return -EINVAL;
	return 0;
}

/*
 * The lowest number for the library's own descriptors: high, so that they
 * take neither the number a program's next open() would get nor one the
 * program believes closed (and expects -EBADF from).
 */
static pthread_once_t high_once = PTHREAD_ONCE_INIT;
static int high_fd;

static void high_learn(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl))
		high_fd = rl.rlim_cur / 2 < 1024 ? (int)(rl.rlim_cur / 2) : 1024;
}

/* A descriptor of the library's own for the file fd names, or -errno. */
int fd_hold(int fd)
{
	int held;

	pthread_once(&high_once, high_learn);
	held = fcntl(fd, F_DUPFD_CLOEXEC, high_fd);
	if (held < 0 && errno != EBADF)
		held = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (held >= 0)
		return held;
	return errno == EBADF ? -EBADF : -EAGAIN;
}

#ifndef F_DUPFD_QUERY
#define F_DUPFD_QUERY 1027 /* F_LINUX_SPECIFIC_BASE + 3, Linux 6.10 */
#endif

static _Atomic bool no_dupfd_query;

/*
 * Whether two numbers name the same open file. F_DUPFD_QUERY asks only
 * that, where kcmp(2) looks the process up and checks ptrace access: a
 * program that submits one request at a time pays this at every
 * io_submit. Before Linux 6.10 it is refused (-EINVAL), and kcmp answers.
 */
bool fd_same(const struct aio_ctx *ctx, int a, int b)
{
	if (!atomic_load_explicit(&no_dupfd_query, memory_order_relaxed)) {
		int same = fcntl(a, F_DUPFD_QUERY, b);

		if (same >= 0 || errno != EINVAL)
			return same == 1;
		atomic_store_explicit(&no_dupfd_query, true, memory_order_relaxed);
	}
	return syscall(SYS_kcmp, ctx->efd.pid, ctx->efd.pid, KCMP_FILE, a, b) == 0;
}

/* Duplicates nobody signals any more: closed once no signal is under way. */
static void close_retired(struct aio_ctx *ctx)
{
	if (atomic_load_explicit(&ctx->efd.signalling, memory_order_acquire))
		return;
	for (unsigned i = 0; i < ctx->efd.nr_holds; i++) {
		struct eventfd_hold *e = &ctx->efd.holds[i];

		if (e->prog < 0 && e->fd >= 0) {
			close_nocancel(e->fd);
			e->fd = -1;
		}
	}
	ctx->efd.retired = 0;
}

static int hold_new(struct aio_ctx *ctx, int prog)
{
	struct eventfd_hold *e = NULL;
	int ret = check_eventfd(prog), fd;

	if (ret)
		return ret;
	for (unsigned i = 0; i < ctx->efd.nr_holds && !e; i++)
		if (ctx->efd.holds[i].fd < 0)
			e = &ctx->efd.holds[i];
	if (!e) {
		e = realloc(ctx->efd.holds, (ctx->efd.nr_holds + 1) * sizeof(*e));
		if (!e)
			return -EAGAIN;
		ctx->efd.holds = e;
		e += ctx->efd.nr_holds++;
	}
	fd = fd_hold(prog);
	if (fd < 0) {
		e->fd = -1;
		e->prog = -1;
		return fd;
	}
	*e = (struct eventfd_hold){ .prog = prog, .fd = fd, .users = 1 };
	return (int)(e - ctx->efd.holds);
}

/* The slot of the eventfd the program names, held once more, or -errno. */
int eventfd_get(struct aio_ctx *ctx, int prog)
{
	if (unlikely(ctx->efd.retired))
		close_retired(ctx);
	for (unsigned i = 0; i < ctx->efd.nr_holds; i++) {
		struct eventfd_hold *e = &ctx->efd.holds[i];

		if (e->prog != prog)
			continue;
		if (e->users || fd_same(ctx, prog, e->fd)) {
			e->users++;
			return (int)i;
		}
		e->prog = -1;
		ctx->efd.retired++;
		break;
	}
	return hold_new(ctx, prog);
}

void eventfd_put(struct aio_ctx *ctx, int slot)
{
	ctx->efd.holds[slot].users--;
}

int eventfd_of(const struct aio_ctx *ctx, int slot)
{
	return ctx->efd.holds[slot].fd;
}

/* At teardown: no request is left to signal one. */
void eventfd_release_all(struct aio_ctx *ctx)
{
	for (unsigned i = 0; i < ctx->efd.nr_holds; i++)
		if (ctx->efd.holds[i].fd >= 0)
			close_nocancel(ctx->efd.holds[i].fd);
	free(ctx->efd.holds);
	ctx->efd.holds = NULL;
	ctx->efd.nr_holds = 0;
}
