/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A libaio program that makes the AIO system calls itself on the handle
 * io_setup gave it, as MariaDB's InnoDB reaps with
 * syscall(__NR_io_getevents, ...). Built against the system <libaio.h> and
 * linked with -laio (or with -laio-compat); tests/preload.sh runs it on
 * libaio and on the library, and the two outputs must be the same.
 *
 *	raw-syscall-client DIR
 *
 * Prints one line per call: what was called, its return value and errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BLOCK 4096

/* The kernel's struct __aio_sigset. */
struct aio_sigset {
	const sigset_t *sigmask;
	size_t sigsetsize;
};

static int failures;

static void show(const char *what, long ret)
{
	printf("%s: %ld%s%s\n", what, ret, ret < 0 ? " " : "", ret < 0 ? strerror(errno) : "");
}

static void expect(int cond, const char *what)
{
	if (!cond) {
		printf("FAIL: %s\n", what);
		failures++;
	}
}

static long raw_submit(io_context_t ctx, struct iocb *cb)
{
	struct iocb *one[1] = { cb };

	return syscall(__NR_io_submit, ctx, 1L, one);
}

static long raw_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *ev,
			  struct timespec *ts)
{
	return syscall(__NR_io_getevents, ctx, min_nr, nr, ev, ts);
}

static void write_and_reap(io_context_t ctx, int fd, char *buf)
{
	struct iocb cb;
	struct io_event ev;

	io_prep_pwrite(&cb, fd, buf, BLOCK, 0);
	cb.data = &cb;
	show("io_submit pwrite", raw_submit(ctx, &cb));
	show("io_getevents min 1", raw_getevents(ctx, 1, 1, &ev, NULL));
	expect(ev.obj == &cb && ev.data == &cb, "the event names the write's iocb");
	show("  event res", (long)ev.res);
}

static void read_and_pgetevents(io_context_t ctx, int fd, char *buf)
{
	struct timespec ts = { 2, 0 };
	struct iocb cb, *one[1] = { &cb };
	struct io_event ev;
	sigset_t mask;
	struct aio_sigset usig = { &mask, _NSIG / 8 }, bad = { &mask, 4 };

	sigemptyset(&mask);
	memset(buf, 0, BLOCK);
	io_prep_pread(&cb, fd, buf, BLOCK, 0);
	show("io_submit (libaio's) pread", io_submit(ctx, 1, one));
	show("io_pgetevents sigsetsize 4",
	     syscall(__NR_io_pgetevents, ctx, 1L, 1L, &ev, &ts, &bad));
	show("io_pgetevents", syscall(__NR_io_pgetevents, ctx, 1L, 1L, &ev, &ts, &usig));
	show("  event res", (long)ev.res);
	expect(ev.obj == &cb && buf[BLOCK - 1] == 'x', "the read's event and data");
}

static void bad_calls(io_context_t ctx)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	struct iocb cb;
	struct io_event ev;

	show("io_getevents min 0, nothing in flight", raw_getevents(ctx, 0, 1, &ev, &ts));
	show("io_getevents min > nr", raw_getevents(ctx, 2, 1, &ev, NULL));
	show("io_submit nr -1", syscall(__NR_io_submit, ctx, -1L, NULL));
	io_prep_pread(&cb, -1, NULL, 0, 0);
	show("io_submit fd -1", raw_submit(ctx, &cb));
	show("io_cancel of an iocb not in flight", syscall(__NR_io_cancel, ctx, &cb, &ev));
	show("io_getevents on no context",
	     raw_getevents((io_context_t)0x7f0000000000UL, 0, 1, &ev, &ts));
}

static void poll_and_cancel(io_context_t ctx)
{
	struct iocb cb;
	struct io_event ev;
	int fds[2];

	if (pipe(fds)) {
		expect(0, "pipe");
		return;
	}
	io_prep_poll(&cb, fds[0], POLLIN);
	show("io_submit poll", raw_submit(ctx, &cb));
	show("io_cancel poll", syscall(__NR_io_cancel, ctx, &cb, &ev));
	show("io_getevents after cancel", raw_getevents(ctx, 1, 1, &ev, NULL));
	show("  event res", (long)ev.res);
	close(fds[0]);
	close(fds[1]);
}

/* A context the program made itself stays the kernel's, six arguments and all. */
static void kernel_context(int fd, char *buf)
{
	struct timespec ts = { 2, 0 };
	struct aio_sigset usig = { NULL, 0 };
	unsigned long kctx = 0;
	struct iocb cb, *one[1] = { &cb };
	struct io_event ev;

	show("raw io_setup", syscall(__NR_io_setup, 4L, &kctx));
	io_prep_pwrite(&cb, fd, buf, BLOCK, BLOCK);
	show("  io_submit", syscall(__NR_io_submit, kctx, 1L, one));
	show("  io_pgetevents", syscall(__NR_io_pgetevents, kctx, 1L, 1L, &ev, &ts, &usig));
	show("  event res", (long)ev.res);
	show("  io_destroy", syscall(__NR_io_destroy, kctx));
}

int main(int argc, char **argv)
{
	char path[4096], *buf;
	io_context_t ctx = 0;
	struct io_event ev;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: raw-syscall-client DIR\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/raw-syscall-client.XXXXXX", argv[1]);
	fd = mkstemp(path);
	if (fd < 0 || posix_memalign((void **)&buf, BLOCK, BLOCK)) {
		perror("raw-syscall-client");
		return 2;
	}
	unlink(path);
	memset(buf, 'x', BLOCK);
	show("io_setup (libaio's)", io_setup(8, &ctx));
	write_and_reap(ctx, fd, buf);
	read_and_pgetevents(ctx, fd, buf);
	bad_calls(ctx);
	poll_and_cancel(ctx);
	kernel_context(fd, buf);
	show("getpid", syscall(__NR_getpid) == getpid());
	show("close -1", syscall(__NR_close, -1));
	show("io_destroy", syscall(__NR_io_destroy, ctx));
	show("io_getevents after io_destroy", raw_getevents(ctx, 0, 1, &ev, NULL));
	show("io_destroy (libaio's) after io_destroy", io_destroy(ctx));
	close(fd);
	return failures ? 1 : 0;
}
