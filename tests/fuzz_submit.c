/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: arbitrary iocbs (opcodes, flags, fds, lengths, offsets,
 * priorities, reserved fields, pointers that are NULL, in the first page,
 * in the kernel half, or inside this program's own buffers) through
 * io_submit, io_getevents and io_cancel, on a native, a uring and an auto
 * context.
 *
 * Every call must return the kernel's kind of answer: a count in range or
 * an error the kernel gives for that call; every accepted iocb must
 * complete exactly once, with a result in range or a kernel error, and
 * nothing else may complete. Anything else aborts.
 *
 * A signal with a handler that does nothing is set to reach the calling
 * thread at most 300 microseconds into each context's share of an input,
 * as a program's timers do: the calls it interrupts may answer -EINTR where
 * the kernel's would, and nothing may be lost or doubled for it.
 *
 * Input: a sequence of 32-byte records, each one call.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "aio-compat.h"

/* The kernel's iocb flags; libaio's header spells out only the first. */
#ifndef IOCB_FLAG_RESFD
#define IOCB_FLAG_RESFD (1 << 0)
#endif
#ifndef IOCB_FLAG_IOPRIO
#define IOCB_FLAG_IOPRIO (1 << 1)
#endif

#define RECORD 32
#define MAX_IOCBS 64
#define BUF_SIZE (256 * 1024)
#define NR_IOVECS 2048
#define FILE_SIZE 65536
/* How long the accepted iocbs of an input may take to complete; -timeout is 30. */
#define DRAIN_SECONDS 10
/* The signal comes within this many microseconds of a context's start. */
#define SIGNAL_WITHIN_US 300

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static io_context_t contexts[3];
static const enum aio_compat_backend kinds[3] = { AIO_COMPAT_NATIVE, AIO_COMPAT_URING,
						  AIO_COMPAT_AUTO };
static int fds[12];
static int nr_fds;
static int file_fd, direct_fd, pipe_r, pipe_w, event_fd;
static char *buf;	     /* every valid pointer lands in here */
static struct iovec *iovecs; /* so does every iovec array */

/* What the harness knows of each iocb of the pool. */
static struct iocb iocbs[MAX_IOCBS];
static int in_flight[MAX_IOCBS];
static long max_res[MAX_IOCBS];
static int nr_in_flight;
static int trace;	    /* FUZZ_TRACE=1: print every call, to reproduce a crash by hand */
static timer_t interrupter; /* SIGUSR1, to the thread that makes the calls */

#define die(...)                                                                                   \
	do {                                                                                       \
		fprintf(stderr, "fuzz_submit: " __VA_ARGS__);                                      \
		fputc('\n', stderr);                                                               \
		abort();                                                                           \
	} while (0)

static int open_or_die(const char *path, int flags)
{
	int fd = open(path, flags, 0600);

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	return fd;
}

static void on_signal(int sig)
{
	(void)sig;
}

/* No SA_RESTART: a call the signal interrupts ends, as in a program whose handler has none. */
static void interrupter_setup(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1 };

	sev._sigev_un._tid = gettid();
	if (sigaction(SIGUSR1, &sa, NULL) || timer_create(CLOCK_MONOTONIC, &sev, &interrupter))
		die("cannot set up the interrupting signal: %s", strerror(errno));
}

static void interrupter_set(long ns)
{
	struct itimerspec when = { { 0, 0 }, { 0, ns } };

	if (timer_settime(interrupter, 0, &when, NULL))
		die("timer_settime: %s", strerror(errno));
}

/*
 * Once, at a moment the input chooses, within SIGNAL_WITHIN_US (a third
 * to a half of the contexts' shares last that long); disarmed at the
 * share's end, so that no signal reaches libFuzzer's own work.
 */
static void interrupter_arm(const uint8_t *data, size_t size, int c)
{
	uint32_t us = (uint32_t)size * 2654435761u + (uint32_t)c * 40503u;

	for (size_t i = 0; i < size; i += RECORD)
		us = us * 31 + data[i];
	interrupter_set(1000L * (1 + us % SIGNAL_WITHIN_US));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/var/tmp/aio-compat-fuzz-XXXXXX";
	int p[2], fd;

	(void)argc;
	(void)argv;
	trace = getenv("FUZZ_TRACE") != NULL;
	interrupter_setup();
	for (int c = 0; c < 3; c++)
		if (aio_compat_setup(MAX_IOCBS, &contexts[c], kinds[c]))
			die("cannot set up a %s context", aio_compat_backend_name(kinds[c]));
	if (posix_memalign((void **)&buf, 4096, BUF_SIZE) ||
	    posix_memalign((void **)&iovecs, 4096, NR_IOVECS * sizeof(*iovecs)))
		die("out of memory");
	memset(buf, 0, BUF_SIZE);
	memset(iovecs, 0, NR_IOVECS * sizeof(*iovecs));
	fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp: %s", strerror(errno));
	file_fd = open_or_die(path, O_RDWR);
	direct_fd = open_or_die(path, O_RDWR | O_DIRECT);
	fds[nr_fds++] = file_fd;
	fds[nr_fds++] = direct_fd;
	fds[nr_fds++] = open_or_die(path, O_RDONLY);
	fds[nr_fds++] = open_or_die(path, O_WRONLY);
	unlink(path);
	close(fd);
	/* Non-blocking, so that a read of an empty pipe cannot hang io_submit. */
	if (pipe2(p, O_NONBLOCK))
		die("pipe2: %s", strerror(errno));
	pipe_r = p[0];
	/*
	 * On io_uring a read of an empty O_NONBLOCK pipe or eventfd waits for
	 * data instead of failing with EAGAIN (README, differences); only
	 * FUZZ_NONBLOCK_READS offers them as read targets.
	 */
#ifdef FUZZ_NONBLOCK_READS
	fds[nr_fds++] = p[0];
#endif
	pipe_w = fds[nr_fds++] = p[1];
	event_fd = eventfd(0, EFD_NONBLOCK);
#ifdef FUZZ_NONBLOCK_READS
	fds[nr_fds++] = event_fd;
#endif
	fds[nr_fds++] = open_or_die("/dev/null", O_RDWR);
	fds[nr_fds++] = open_or_die("/tmp", O_RDONLY | O_DIRECTORY);
	fds[nr_fds++] = -1;
	fds[nr_fds++] = 1000; /* closed */
	fds[nr_fds++] = INT_MAX;
	return 0;
}

static uint64_t get(const uint8_t *r, int at, int bytes)
{
	uint64_t v = 0;

	memcpy(&v, r + at, bytes);
	return v;
}

/* A pointer and how many bytes behind it belong to this program. */
static void *pick_pointer(uint8_t sel, uint32_t off, size_t *room)
{
	*room = 0;
	switch (sel % 8) {
	case 0:
		return NULL;
	case 1:
		return (void *)(uintptr_t)(off % 4096);
	case 2:
		return (void *)0xffff800000000000UL;
	default:
		off %= BUF_SIZE;
		*room = BUF_SIZE - off;
		return buf + off;
	}
}

static int valid_submit_error(int err)
{
	return err == -EINVAL || err == -EFAULT || err == -EBADF || err == -EAGAIN ||
	       err == -EOPNOTSUPP || err == -ESPIPE || err == -EPERM;
}

static int valid_event_error(long err)
{
	switch (-err) {
	case EINVAL:
	case EFAULT:
	case EBADF:
	case EAGAIN:
	case EOPNOTSUPP:
	case ESPIPE:
	case EPERM:
	case EFBIG:
	case ENOSPC:
	case EIO:
	case EISDIR:
	case ENXIO:
	case ENODEV:
	case EINTR:
	case ECANCELED:
	case EROFS:
		return 1;
	}
	return 0;
}

/* Fills the iocb from a record, keeping valid pointers inside buf. */
static void make_iocb(struct iocb *cb, const uint8_t *r)
{
	uint8_t op = r[1], fdsel = r[2], ptrsel = r[3], misc = r[4];
	size_t room;
	void *p = pick_pointer(ptrsel, (uint32_t)get(r, 8, 4), &room);
	uint64_t len = get(r, 12, 4);
	int64_t off = (int64_t)get(r, 16, 8);

	memset(cb, 0, sizeof(*cb));
	cb->aio_fildes = fds[fdsel % nr_fds];
	cb->aio_lio_opcode = op < 200 ? op % 10 : op; /* 0-8 and some unknown ones */
	if (misc & 1)
		off = (int64_t)((uint64_t)off % (4 * FILE_SIZE));
	if (misc & 2)
		len %= 8193;
	if (cb->aio_lio_opcode == IO_CMD_PREADV || cb->aio_lio_opcode == IO_CMD_PWRITEV) {
		unsigned nr = (unsigned)(len % (NR_IOVECS + 1)), first = r[24] % 64;

		if (misc & 4)
			nr = (unsigned)(len % 9);
		for (unsigned i = 0; i < nr && i + first < NR_IOVECS; i++) {
			size_t iroom;
			void *ip =
			    pick_pointer(r[25] + (uint8_t)i, (uint32_t)(get(r, 26, 2) * i), &iroom);
			size_t ilen = (size_t)get(r, 28, 2) >> (i % 4);

			iovecs[first + i] =
			    (struct iovec){ ip, iroom ? (ilen < iroom ? ilen : iroom) : ilen };
		}
		/* An array in buf would hold whatever reads left there: never used. */
		cb->u.v.vec = (misc & 8) && !room ? p : (void *)(iovecs + first);
		cb->u.v.nr = (misc & 16) ? (unsigned long)-(long)nr : nr;
		cb->u.v.offset = off;
		if (first + nr > NR_IOVECS && !(misc & 16))
			cb->u.v.nr = NR_IOVECS - first;
	} else {
		cb->u.c.buf = p;
		/* A valid pointer never runs past this program's buffer. */
		cb->u.c.nbytes = room && len > room ? room : len;
		cb->u.c.offset = off;
		if (cb->aio_lio_opcode == IO_CMD_POLL)
			cb->u.c.buf = (void *)(uintptr_t)(r[24] | r[25] << 8);
		if ((cb->aio_lio_opcode == IO_CMD_FSYNC || cb->aio_lio_opcode == IO_CMD_FDSYNC ||
		     cb->aio_lio_opcode == IO_CMD_POLL) &&
		    !(misc & 32)) {
			cb->u.c.nbytes = 0;
			cb->u.c.offset = 0;
			if (cb->aio_lio_opcode != IO_CMD_POLL)
				cb->u.c.buf = NULL;
		}
	}
	if (misc & 64)
		cb->aio_rw_flags = (int)get(r, 20, 4);
	else if (r[20] & 1)
		cb->aio_rw_flags = r[21] & 0x1f; /* HIPRI DSYNC SYNC NOWAIT APPEND */
	if (r[5] & 1) {
		cb->u.c.flags |= IOCB_FLAG_RESFD;
		cb->u.c.resfd = r[5] & 2 ? event_fd : fds[r[6] % nr_fds];
	}
	if (r[5] & 4) {
		cb->u.c.flags |= IOCB_FLAG_IOPRIO;
		cb->aio_reqprio = (short)get(r, 6, 2);
	}
	if (r[5] & 8)
		cb->u.c.flags |= (unsigned)r[7] << 2;
	if (misc & 128)
		cb->key = r[7];
}

static int is_ours(const void *vec)
{
	return (const char *)vec >= (const char *)iovecs &&
	       (const char *)vec < (const char *)(iovecs + NR_IOVECS);
}

/* The largest res a successful request may have. */
static long result_bound(const struct iocb *cb)
{
	long total = 0;

	switch (cb->aio_lio_opcode) {
	case IO_CMD_PREAD:
	case IO_CMD_PWRITE:
		return (long)cb->u.c.nbytes;
	case IO_CMD_PREADV:
	case IO_CMD_PWRITEV:
		if (!is_ours(cb->u.v.vec))
			return 0;
		for (unsigned long i = 0; i < cb->u.v.nr && cb->u.v.vec + i < iovecs + NR_IOVECS;
		     i++)
			total += (long)cb->u.v.vec[i].iov_len;
		return total;
	case IO_CMD_POLL:
		return 0xffff;
	default:
		return 0;
	}
}

static void account(struct io_event *ev, int n)
{
	for (int i = 0; i < n; i++) {
		struct iocb *cb = ev[i].obj;
		long idx = cb - iocbs, res = (long)ev[i].res;

		if (trace)
			fprintf(stderr, "  event [%ld] res %ld\n", idx, res);
		if (idx < 0 || idx >= MAX_IOCBS || cb != &iocbs[idx])
			die("event for an iocb never submitted: %p", (void *)cb);
		if (!in_flight[idx])
			die("iocb %ld completed twice (res %ld)", idx, res);
		if (ev[i].data != cb->data)
			die("event data %p, iocb data %p", ev[i].data, cb->data);
		if (res > max_res[idx] || (res < 0 && !valid_event_error(res)))
			die("iocb %ld opcode %d fd %d: res %ld (at most %ld)", idx,
			    cb->aio_lio_opcode, cb->aio_fildes, res, max_res[idx]);
		in_flight[idx] = 0;
		nr_in_flight--;
	}
}

static void do_submit(io_context_t ctx, const uint8_t *r)
{
	struct iocb *list[8];
	int want = 1 + r[0] % 8, n = 0, ret;

	for (int i = 0; i < MAX_IOCBS && n < want; i++) {
		int idx = (r[26] + i) % MAX_IOCBS;
		uint8_t rec[RECORD];

		if (in_flight[idx])
			continue;
		/* Later iocbs of a batch differ from the first one. */
		memcpy(rec, r, RECORD);
		rec[1] += (uint8_t)n;
		rec[2] += (uint8_t)(3 * n);
		rec[4] ^= (uint8_t)(n << 1);
		make_iocb(&iocbs[idx], rec);
		iocbs[idx].data = (void *)(uintptr_t)(0x1000 + idx);
		list[n++] = &iocbs[idx];
	}
	ret = io_submit(ctx, n, list);
	if (trace) {
		fprintf(stderr, "io_submit(%d) = %d\n", n, ret);
		for (int i = 0; i < n; i++)
			fprintf(stderr,
				"  [%ld] opcode %d fd %d buf %p nbytes %lu offset %lld "
				"rw_flags %#x flags %#x resfd %u prio %d key %u\n",
				(long)(list[i] - iocbs), list[i]->aio_lio_opcode,
				list[i]->aio_fildes, list[i]->u.c.buf, list[i]->u.c.nbytes,
				list[i]->u.c.offset, list[i]->aio_rw_flags, list[i]->u.c.flags,
				list[i]->u.c.resfd, list[i]->aio_reqprio, list[i]->key);
	}
	if (ret < 0 ? !valid_submit_error(ret) : ret > n)
		die("io_submit of %d returned %d", n, ret);
	if (ret == 0 && n > 0)
		die("io_submit of %d returned 0", n);
	for (int i = 0; i < ret; i++) {
		long idx = list[i] - iocbs;

		in_flight[idx] = 1;
		max_res[idx] = result_bound(list[i]);
		nr_in_flight++;
	}
}

static void do_getevents(io_context_t ctx, const uint8_t *r)
{
	struct io_event ev[MAX_IOCBS];
	long min_nr = (int8_t)r[1] % 8, nr = (int8_t)r[2] % (MAX_IOCBS + 1);
	struct timespec ts = { 0, (r[3] % 4) * 1000000L };
	int ret = io_getevents(ctx, min_nr, nr, ev, &ts);

	if (trace)
		fprintf(stderr, "io_getevents(%ld, %ld) = %d\n", min_nr, nr, ret);
	/* libFuzzer's own SIGALRM (its -timeout watch) is a real signal. */
	if (ret == -EINTR)
		return;
	if (ret < 0) {
		if (ret != -EINVAL || (min_nr >= 0 && nr >= 0 && min_nr <= nr))
			die("io_getevents(%ld, %ld) returned %d", min_nr, nr, ret);
		return;
	}
	if (min_nr < 0 || nr < 0 || min_nr > nr || ret > nr)
		die("io_getevents(%ld, %ld) returned %d", min_nr, nr, ret);
	account(ev, ret);
}

static void do_cancel(io_context_t ctx, const uint8_t *r)
{
	struct iocb *cb = r[1] & 1 ? NULL : &iocbs[r[2] % MAX_IOCBS];
	struct io_event ev;
	int ret = io_cancel(ctx, cb, &ev);

	if (trace)
		fprintf(stderr, "io_cancel([%ld]) = %d\n", cb ? (long)(cb - iocbs) : -1L, ret);
	if (ret == 0)
		account(&ev, 1);
	else if (ret != -EINPROGRESS && ret != -EINVAL && ret != -EFAULT && ret != -EAGAIN)
		die("io_cancel returned %d", ret);
}

/* What never completed, printed before the harness aborts. */
static void lost(io_context_t ctx)
{
	for (int i = 0; i < MAX_IOCBS; i++)
		if (in_flight[i])
			fprintf(stderr,
				"lost: %s opcode %d fd %d buf %p nbytes %lu offset %lld "
				"rw_flags %#x flags %#x resfd %u prio %d\n",
				aio_compat_backend_name(aio_compat_backend(ctx)),
				iocbs[i].aio_lio_opcode, iocbs[i].aio_fildes, iocbs[i].u.c.buf,
				iocbs[i].u.c.nbytes, iocbs[i].u.c.offset, iocbs[i].aio_rw_flags,
				iocbs[i].u.c.flags, iocbs[i].u.c.resfd, iocbs[i].aio_reqprio);
	die("%d accepted iocbs never completed", nr_in_flight);
}

static long seconds_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec - start->tv_sec;
}

/* Everything accepted must complete: polls are cancelled, the rest waited for. */
static void drain(io_context_t ctx)
{
	struct timespec start;
	struct io_event ev[MAX_IOCBS];
	struct timespec zero = { 0, 0 };
	char scratch[65536];
	int ret;

	for (int i = 0; i < MAX_IOCBS; i++) {
		if (in_flight[i] && iocbs[i].aio_lio_opcode == IO_CMD_POLL) {
			if (io_cancel(ctx, &iocbs[i], ev) == 0)
				account(ev, 1);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (nr_in_flight) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		/*
		 * Looked at before the wait: a machine that stalled past the
		 * limit (a busy host) still waits once more before an iocb is
		 * called lost.
		 */
		bool late = seconds_since(&start) >= DRAIN_SECONDS;

		/* On io_uring a write to the full pipe waits for room (README). */
		while (read(pipe_r, scratch, sizeof(scratch)) > 0)
			;
		ret = io_getevents(ctx, 1, MAX_IOCBS, ev, &ts);

		if (ret < 0 && ret != -EINTR)
			die("io_getevents while draining: %d", ret);
		if (ret > 0)
			account(ev, ret);
		if (late && nr_in_flight)
			lost(ctx);
	}
	/* The kernel answers a look at a pending signal with -EINTR, timeout or not. */
	do
		ret = io_getevents(ctx, 0, MAX_IOCBS, ev, &zero);
	while (ret == -EINTR);
	if (ret != 0)
		die("an event after every iocb completed (%d)", ret);
	while (read(pipe_r, scratch, sizeof(scratch)) > 0)
		;
	if (read(event_fd, scratch, 8) < 0 && errno != EAGAIN)
		die("eventfd read: %s", strerror(errno));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int c = 0; c < 3; c++) {
		io_context_t ctx = contexts[c];

		if (trace)
			fprintf(stderr, "-- %s\n", aio_compat_backend_name(kinds[c]));
		if (ftruncate(file_fd, FILE_SIZE))
			die("ftruncate: %s", strerror(errno));
		interrupter_arm(data, size, c);
		for (size_t at = 0; at + RECORD <= size && at < 64 * RECORD; at += RECORD) {
			const uint8_t *r = data + at;

			switch (r[31] % 8) {
			case 0:
			case 1:
			case 2:
			case 3:
			case 4:
				do_submit(ctx, r);
				break;
			case 5:
			case 6:
				do_getevents(ctx, r);
				break;
			default:
				do_cancel(ctx, r);
				break;
			}
		}
		drain(ctx);
		interrupter_set(0);
	}
	return 0;
}
