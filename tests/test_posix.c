/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The POSIX face (-laio-compat-posix): aio_fsync and its family, per the
 * aio_fsync pages of POSIX, Linux and FreeBSD. The same source linked
 * without -laio-compat-posix runs on glibc's implementation; the tests
 * that fail there are where glibc differs.
 */
#include "util.h"

#include <aio.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NWRITES 16
#define CHUNK 65536
#define NOTIFY_SIG (SIGRTMIN + 1)
/* More requests than any context accepts in flight. */
#define CAP 70000

static const char *implementation(void)
{
	Dl_info info;

	if (dladdr((void *)aio_fsync, &info) && info.dli_fname)
		return info.dli_fname;
	return "?";
}

static int on_library(void)
{
	return strstr(implementation(), "libaio-compat-posix") != NULL;
}

/*
 * On the native backend buffered I/O runs inside io_submit, so a read of
 * an empty pipe would block the caller: the tests that keep a request in
 * flight with one run on io_uring (and on glibc's threads).
 */
static int can_hold_pipe_read(void)
{
	return !on_library() || strcmp(test_backend(), "native") != 0;
}

static void init_cb(struct aiocb *cb, int fd, void *buf, size_t len, off_t off)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_fildes = fd;
	cb->aio_buf = buf;
	cb->aio_nbytes = len;
	cb->aio_offset = off;
	cb->aio_sigevent.sigev_notify = SIGEV_NONE;
}

/* Waits for cb with aio_suspend (2 s at most) and returns aio_error. */
static int wait_cb(const struct aiocb *cb)
{
	const struct aiocb *list[1] = { cb };
	struct timespec ts = { 2, 0 };

	while (aio_error(cb) == EINPROGRESS)
		ck_assert_msg(aio_suspend(list, 1, &ts) == 0 || errno == EINTR, "aio_suspend: %s",
			      strerror(errno));
	return aio_error(cb);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

START_TEST(fsync_comes_from_the_library)
{
	ck_assert_msg(on_library(), "aio_fsync resolved to %s", implementation());
}
END_TEST

START_TEST(fsync_bad_op_is_einval)
{
	int ops[] = { 0, O_RDWR, O_WRONLY, O_APPEND, O_NONBLOCK, -1, 12345 };
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	struct aiocb cb;

	init_cb(&cb, fd, NULL, 0, 0);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		errno = 0;
		ck_assert_int_eq(aio_fsync(ops[i], &cb), -1);
		ck_assert_msg(errno == EINVAL, "op %#x: %s", ops[i], strerror(errno));
	}
	close(fd);
}
END_TEST

START_TEST(fsync_bad_sigev_notify_is_einval)
{
	int notify[] = { 3, 7, 99, -1 };
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	struct aiocb cb;

	for (size_t i = 0; i < sizeof(notify) / sizeof(notify[0]); i++) {
		init_cb(&cb, fd, NULL, 0, 0);
		cb.aio_sigevent.sigev_notify = notify[i];
		errno = 0;
		ck_assert_int_eq(aio_fsync(O_SYNC, &cb), -1);
		ck_assert_msg(errno == EINVAL, "sigev_notify %d: %s", notify[i], strerror(errno));
	}
	close(fd);
}
END_TEST

START_TEST(fsync_bad_signal_number_is_einval)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	struct aiocb cb;

	init_cb(&cb, fd, NULL, 0, 0);
	cb.aio_sigevent.sigev_notify = SIGEV_SIGNAL;
	cb.aio_sigevent.sigev_signo = 1000;
	errno = 0;
	ck_assert_int_eq(aio_fsync(O_SYNC, &cb), -1);
	ck_assert_int_eq(errno, EINVAL);
	close(fd);
}
END_TEST

/* EBADF at the call: for -1, a closed descriptor, and one not open for writing. */
START_TEST(fsync_bad_fd_is_ebadf)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	int closed = dup(fd);
	struct aiocb cb;

	close(closed);
	int bad[] = { -1, closed, 1 << 20 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		init_cb(&cb, bad[i], NULL, 0, 0);
		errno = 0;
		ck_assert_int_eq(aio_fsync(O_SYNC, &cb), -1);
		ck_assert_msg(errno == EBADF, "fd %d: %s", bad[i], strerror(errno));
		errno = 0;
		ck_assert_int_eq(aio_fsync(O_DSYNC, &cb), -1);
		ck_assert_int_eq(errno, EBADF);
	}
	close(fd);
}
END_TEST

START_TEST(fsync_read_only_fd_is_ebadf)
{
	int fd = open("/etc/hostname", O_RDONLY);
	struct aiocb cb;
	int ret;

	ck_assert_int_ge(fd, 0);
	init_cb(&cb, fd, NULL, 0, 0);
	errno = 0;
	ret = aio_fsync(O_SYNC, &cb);
	if (ret == 0) /* queued: then the error must come from aio_error */
		ck_assert_msg(wait_cb(&cb) == EBADF, "queued, aio_error %d", aio_error(&cb));
	else
		ck_assert_int_eq(errno, EBADF);
	close(fd);
}
END_TEST

/* Only aio_fildes and aio_sigevent are read: garbage elsewhere changes nothing. */
START_TEST(fsync_ignores_other_fields)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);
	struct aiocb cb;

	memset(&cb, 0xa5, sizeof(cb));
	cb.aio_fildes = fd;
	cb.aio_sigevent.sigev_notify = SIGEV_NONE;
	ck_assert_int_eq(aio_fsync(O_DSYNC, &cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 0);
	close(fd);
}
END_TEST

/*
 * Dirty data on a disk file: the sync mostly takes long enough to be seen
 * queued, though a fast flush may finish first; so over ten rounds it must
 * be seen in progress at least once, and end with 0 every time.
 */
START_TEST(fsync_in_progress_then_zero)
{
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR);
	char *buf = aligned_buf(1 << 22, 'p');
	int in_progress = 0;
	struct aiocb cb;

	for (int round = 0; round < 10; round++) {
		buf[0] = (char)round;
		ck_assert_int_eq(pwrite(fd, buf, 1 << 22, 0), 1 << 22);
		init_cb(&cb, fd, NULL, 0, 0);
		ck_assert_int_eq(aio_fsync(round % 2 ? O_DSYNC : O_SYNC, &cb), 0);
		in_progress += aio_error(&cb) == EINPROGRESS;
		ck_assert_int_eq(wait_cb(&cb), 0);
		ck_assert_int_eq(aio_return(&cb), 0);
	}
	ck_assert_msg(in_progress > 0, "aio_error never answered EINPROGRESS for a queued sync");
	free(buf);
	close(fd);
}
END_TEST

/*
 * The sync covers the 16 writes queued before it: when it completes,
 * every one of them has completed, and the data is in the file.
 */
START_TEST(fsync_completes_after_earlier_writes)
{
	int fd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);
	char *buf = aligned_buf(CHUNK * NWRITES, 0);
	struct aiocb w[NWRITES], s;

	for (int round = 0; round < 10; round++) {
		memset(buf, 'a' + round, CHUNK * NWRITES);
		for (int i = 0; i < NWRITES; i++) {
			init_cb(&w[i], fd, buf + i * CHUNK, CHUNK, (off_t)i * CHUNK);
			ck_assert_int_eq(aio_write(&w[i]), 0);
		}
		init_cb(&s, fd, NULL, 0, 0);
		ck_assert_int_eq(aio_fsync(round % 2 ? O_DSYNC : O_SYNC, &s), 0);
		ck_assert_int_eq(wait_cb(&s), 0);
		for (int i = 0; i < NWRITES; i++)
			ck_assert_msg(aio_error(&w[i]) == 0, "round %d: write %d still %s", round,
				      i, strerror(aio_error(&w[i])));
		ck_assert_int_eq(aio_return(&s), 0);
		for (int i = 0; i < NWRITES; i++)
			ck_assert_int_eq(aio_return(&w[i]), CHUNK);
	}
	free(buf);
	close(fd);
}
END_TEST

START_TEST(return_values)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	char out[100], in[200];
	struct aiocb cb;

	memset(out, 'r', sizeof(out));
	init_cb(&cb, fd, out, sizeof(out), 0);
	ck_assert_int_eq(aio_write(&cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 100);

	init_cb(&cb, fd, in, sizeof(in), 0);
	ck_assert_int_eq(aio_read(&cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 100); /* short: the file has 100 bytes */
	ck_assert_mem_eq(in, out, 100);

	init_cb(&cb, fd, in, sizeof(in), 4096);
	ck_assert_int_eq(aio_read(&cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 0); /* past the end */
	close(fd);
}
END_TEST

START_TEST(return_is_given_once)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	char out[10] = "0123456789";
	struct aiocb cb;

	init_cb(&cb, fd, out, sizeof(out), 0);
	ck_assert_int_eq(aio_write(&cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 10);
	errno = 0;
	ck_assert_int_eq(aio_return(&cb), -1);
	ck_assert_int_eq(errno, EINVAL);
	close(fd);
}
END_TEST

/* An error the kernel finds when the request runs: aio_error has it, aio_return is -1. */
START_TEST(error_from_the_request)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);
	struct aiocb cb;

	init_cb(&cb, fd, (void *)8, 4096, 0); /* unmapped buffer */
	ck_assert_int_eq(aio_read(&cb), 0);
	ck_assert_int_eq(wait_cb(&cb), EFAULT);
	ck_assert_int_eq(aio_return(&cb), -1);
	close(fd);
}
END_TEST

START_TEST(read_write_access_mode_is_ebadf)
{
	int ro = open("/etc/hostname", O_RDONLY);
	int wo = open("/dev/null", O_WRONLY);
	char buf[16] = { 0 };
	struct aiocb cb;
	int ret;

	init_cb(&cb, ro, buf, sizeof(buf), 0);
	ret = aio_write(&cb);
	ck_assert_msg(ret == -1 ? errno == EBADF : wait_cb(&cb) == EBADF, "aio_write on O_RDONLY");
	if (ret == 0)
		aio_return(&cb);
	init_cb(&cb, wo, buf, sizeof(buf), 0);
	ret = aio_read(&cb);
	ck_assert_msg(ret == -1 ? errno == EBADF : wait_cb(&cb) == EBADF, "aio_read on O_WRONLY");
	init_cb(&cb, -1, buf, sizeof(buf), 0);
	ret = aio_read(&cb);
	ck_assert_msg(ret == -1 ? errno == EBADF : wait_cb(&cb) == EBADF, "aio_read on -1");
	close(ro);
	close(wo);
}
END_TEST

static atomic_int signals_seen;
static siginfo_t last_info;
static atomic_int error_in_handler = -1;
static struct aiocb *handler_cb;

static void on_signal(int sig, siginfo_t *si, void *uctx)
{
	(void)sig;
	(void)uctx;
	last_info = *si;
	if (handler_cb)
		atomic_store(&error_in_handler, aio_error(handler_cb));
	atomic_fetch_add(&signals_seen, 1);
}

static void install_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(NOTIFY_SIG, &sa, NULL), 0);
}

/* Waits, without calling the library, until *count reaches want (2 s at most). */
static void wait_count(atomic_int *count, int want)
{
	for (int i = 0; i < 2000 && atomic_load(count) < want; i++)
		sleep_ms(1);
}

START_TEST(sigev_signal_delivered_once_with_value)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);
	struct aiocb cb;

	atomic_store(&signals_seen, 0);
	install_handler();
	init_cb(&cb, fd, NULL, 0, 0);
	handler_cb = &cb;
	cb.aio_sigevent.sigev_notify = SIGEV_SIGNAL;
	cb.aio_sigevent.sigev_signo = NOTIFY_SIG;
	cb.aio_sigevent.sigev_value.sival_int = 0x5eed;
	ck_assert_int_eq(aio_fsync(O_SYNC, &cb), 0);
	wait_count(&signals_seen, 1);
	sleep_ms(100);
	ck_assert_int_eq(atomic_load(&signals_seen), 1);
	ck_assert_int_eq(last_info.si_signo, NOTIFY_SIG);
	ck_assert_int_eq(last_info.si_code, SI_ASYNCIO);
	ck_assert_int_eq(last_info.si_value.sival_int, 0x5eed);
	ck_assert_int_eq(last_info.si_pid, getpid());
	ck_assert_int_eq(atomic_load(&error_in_handler), 0);
	ck_assert_int_eq(aio_return(&cb), 0);
	close(fd);
}
END_TEST

static atomic_int threads_seen;
static atomic_int thread_value;
static atomic_int thread_error = -1;

static void on_thread(union sigval value)
{
	struct aiocb *cb = value.sival_ptr;

	atomic_store(&thread_error, aio_error(cb));
	atomic_store(&thread_value, (int)cb->aio_reqprio + 1);
	atomic_fetch_add(&threads_seen, 1);
}

START_TEST(sigev_thread_runs_once_with_value)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);
	struct aiocb cb;

	atomic_store(&threads_seen, 0);
	init_cb(&cb, fd, NULL, 0, 0);
	cb.aio_sigevent.sigev_notify = SIGEV_THREAD;
	cb.aio_sigevent.sigev_notify_function = on_thread;
	cb.aio_sigevent.sigev_value.sival_ptr = &cb;
	ck_assert_int_eq(aio_fsync(O_DSYNC, &cb), 0);
	wait_count(&threads_seen, 1);
	sleep_ms(100);
	ck_assert_int_eq(atomic_load(&threads_seen), 1);
	ck_assert_int_eq(atomic_load(&thread_value), 1);
	ck_assert_int_eq(atomic_load(&thread_error), 0);
	ck_assert_int_eq(aio_return(&cb), 0);
	close(fd);
}
END_TEST

/* The program's thread attributes are used: here a small stack size is asked for. */
static atomic_size_t seen_stack;

static void on_thread_attr(union sigval value)
{
	pthread_attr_t attr;
	size_t size = 0;

	(void)value;
	pthread_getattr_np(pthread_self(), &attr);
	pthread_attr_getstacksize(&attr, &size);
	pthread_attr_destroy(&attr);
	atomic_store(&seen_stack, size);
	atomic_fetch_add(&threads_seen, 1);
}

START_TEST(sigev_thread_honours_attributes)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);
	/* Static: the creating thread may still read it after the function ran. */
	static pthread_attr_t attr;
	struct aiocb cb;

	atomic_store(&threads_seen, 0);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1 << 20);
	init_cb(&cb, fd, NULL, 0, 0);
	cb.aio_sigevent.sigev_notify = SIGEV_THREAD;
	cb.aio_sigevent.sigev_notify_function = on_thread_attr;
	cb.aio_sigevent.sigev_notify_attributes = &attr;
	ck_assert_int_eq(aio_fsync(O_SYNC, &cb), 0);
	wait_count(&threads_seen, 1);
	ck_assert_int_eq(atomic_load(&threads_seen), 1);
	ck_assert_uint_eq(atomic_load(&seen_stack), 1 << 20);
	close(fd);
}
END_TEST

static void fill_list(struct aiocb *cbs, struct aiocb **list, int n, int fd, char *buf, int op)
{
	for (int i = 0; i < n; i++) {
		init_cb(&cbs[i], fd, buf + i * 512, 512, (off_t)i * 512);
		cbs[i].aio_lio_opcode = op;
		list[i] = &cbs[i];
	}
}

START_TEST(lio_wait_completes_all)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	char out[8 * 512], in[8 * 512];
	struct aiocb cbs[8], *list[9];

	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (char)i;
	fill_list(cbs, list, 8, fd, out, LIO_WRITE);
	list[8] = NULL; /* NULL entries are skipped */
	ck_assert_int_eq(lio_listio(LIO_WAIT, list, 9, NULL), 0);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(aio_error(&cbs[i]), 0);
		ck_assert_int_eq(aio_return(&cbs[i]), 512);
	}
	fill_list(cbs, list, 8, fd, in, LIO_READ);
	cbs[3].aio_lio_opcode = LIO_NOP;
	ck_assert_int_eq(lio_listio(LIO_WAIT, list, 8, NULL), 0);
	for (int i = 0; i < 8; i++) {
		if (i == 3)
			continue;
		ck_assert_int_eq(aio_return(&cbs[i]), 512);
		ck_assert_mem_eq(in + i * 512, out + i * 512, 512);
	}
	close(fd);
}
END_TEST

START_TEST(lio_wait_failed_entry_is_eio)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	char buf[4 * 512] = { 0 };
	struct aiocb cbs[4], *list[4];

	fill_list(cbs, list, 4, fd, buf, LIO_WRITE);
	cbs[2].aio_fildes = -1;
	errno = 0;
	ck_assert_int_eq(lio_listio(LIO_WAIT, list, 4, NULL), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(aio_error(&cbs[2]), EBADF);
	ck_assert_int_eq(aio_return(&cbs[2]), -1);
	ck_assert_int_eq(aio_error(&cbs[0]), 0);
	ck_assert_int_eq(aio_return(&cbs[0]), 512);
	close(fd);
}
END_TEST

START_TEST(lio_bad_mode_and_sigevent_are_einval)
{
	struct sigevent sev = { .sigev_notify = 99 };
	struct aiocb *list[1] = { NULL };

	errno = 0;
	ck_assert_int_eq(lio_listio(7, list, 1, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_int_eq(lio_listio(LIO_NOWAIT, list, 1, &sev), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(lio_nowait_notifies_once_when_all_done)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	char buf[8 * 512];
	struct aiocb cbs[8], *list[8];
	struct sigevent sev;

	atomic_store(&threads_seen, 0);
	memset(buf, 'n', sizeof(buf));
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD;
	sev.sigev_notify_function = on_thread;
	sev.sigev_value.sival_ptr = &cbs[7];
	fill_list(cbs, list, 8, fd, buf, LIO_WRITE);
	ck_assert_int_eq(lio_listio(LIO_NOWAIT, list, 8, &sev), 0);
	wait_count(&threads_seen, 1);
	sleep_ms(100);
	ck_assert_int_eq(atomic_load(&threads_seen), 1);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(aio_error(&cbs[i]), 0);
	ck_assert_int_eq(atomic_load(&thread_error), 0);
	close(fd);
}
END_TEST

START_TEST(suspend_times_out_then_wakes)
{
	struct timespec ts = { 0, 50 * 1000000 };
	const struct aiocb *list[2];
	struct aiocb cb;
	char c = 0;
	int p[2];

	if (!can_hold_pipe_read())
		return;
	ck_assert_int_eq(pipe(p), 0);
	init_cb(&cb, p[0], &c, 1, 0);
	ck_assert_int_eq(aio_read(&cb), 0);
	list[0] = NULL;
	list[1] = &cb;
	errno = 0;
	ck_assert_int_eq(aio_suspend(list, 2, &ts), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(aio_error(&cb), EINPROGRESS);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ts.tv_sec = 2;
	ck_assert_int_eq(aio_suspend(list, 2, &ts), 0);
	ck_assert_int_eq(aio_return(&cb), 1);
	ck_assert_int_eq(c, 'x');
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(suspend_returns_at_once_when_done)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);
	struct timespec zero = { 0, 0 };
	const struct aiocb *list[1];
	struct aiocb cb;

	init_cb(&cb, fd, NULL, 0, 0);
	ck_assert_int_eq(aio_fsync(O_SYNC, &cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	list[0] = &cb;
	ck_assert_int_eq(aio_suspend(list, 1, &zero), 0);
	close(fd);
}
END_TEST

static void on_alarm(int sig)
{
	(void)sig;
}

START_TEST(suspend_interrupted_is_eintr)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	const struct aiocb *list[1];
	struct aiocb cb;
	char c;
	int p[2];

	if (!can_hold_pipe_read())
		return;
	ck_assert_int_eq(pipe(p), 0);
	init_cb(&cb, p[0], &c, 1, 0);
	ck_assert_int_eq(aio_read(&cb), 0);
	sigaction(SIGALRM, &sa, NULL);
	ualarm(50000, 0);
	list[0] = &cb;
	errno = 0;
	ck_assert_int_eq(aio_suspend(list, 1, NULL), -1);
	ck_assert_int_eq(errno, EINTR);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(wait_cb(&cb), 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Blocks in aio_read on the native backend, where a pipe's read runs inside the call. */
static void *read_pipe(void *arg)
{
	return (void *)(intptr_t)aio_read(arg);
}

struct suspender {
	const struct aiocb *cb;
	atomic_bool returned;
};

static void *suspend_on(void *arg)
{
	struct suspender *s = arg;
	const struct aiocb *list[1] = { s->cb };

	stack_unwinds_next();
	aio_suspend(list, 1, NULL);
	atomic_store(&s->returned, true);
	return NULL;
}

/* aio_suspend is a cancellation point: a cancel ends it, and leaves the face working. */
START_TEST(suspend_cancelled_mid_wait)
{
	struct suspender s = { 0 };
	struct timespec bound;
	pthread_t reader, thread;
	void *res = NULL;
	struct aiocb cb, w;
	int p[2], fd, tries = 0;
	char c = 0;

	/* valgrind keeps its lock through io_submit: no other thread runs while it blocks. */
	if (UNDER_VALGRIND && !can_hold_pipe_read()) {
		test_skip(NULL, "suspend_cancelled_mid_wait: a pipe read blocking in io_submit, "
				"under valgrind (no other thread runs until it returns)");
		return;
	}
	ck_assert_int_eq(pipe(p), 0);
	init_cb(&cb, p[0], &c, 1, 0);
	ck_assert_int_eq(pthread_create(&reader, NULL, read_pipe, &cb), 0);
	while (aio_error(&cb) != EINPROGRESS && tries++ < 2000)
		sleep_ms(1);
	ck_assert_int_eq(aio_error(&cb), EINPROGRESS);
	s.cb = &cb;
	ck_assert_int_eq(pthread_create(&thread, NULL, suspend_on, &s), 0);
	sleep_ms(50);
	ck_assert_int_eq(pthread_cancel(thread), 0);
	clock_gettime(CLOCK_REALTIME, &bound);
	bound.tv_sec += 5;
	ck_assert_msg(pthread_timedjoin_np(thread, &res, &bound) == 0,
		      "a cancelled aio_suspend still waits");
	ck_assert_ptr_eq(res, PTHREAD_CANCELED);
	ck_assert(!atomic_load(&s.returned));

	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(pthread_join(reader, &res), 0);
	ck_assert_int_eq((int)(intptr_t)res, 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 1);
	ck_assert_int_eq(c, 'x');
	fd = tmpfile_in(NULL, 0, O_RDWR);
	init_cb(&w, fd, "after", 5, 0);
	ck_assert_int_eq(aio_write(&w), 0);
	ck_assert_int_eq(wait_cb(&w), 0);
	ck_assert_int_eq(aio_return(&w), 5);
	close(fd);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(cancel_answers)
{
	int fd = tmpfile_in(NULL, 4096, O_RDWR);
	struct aiocb cb;

	init_cb(&cb, fd, NULL, 0, 0);
	ck_assert_int_eq(aio_fsync(O_SYNC, &cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_cancel(fd, &cb), AIO_ALLDONE);
	ck_assert_int_eq(aio_cancel(fd, NULL), AIO_ALLDONE);
	errno = 0;
	ck_assert_int_eq(aio_cancel(-1, NULL), -1);
	ck_assert_int_eq(errno, EBADF);
	errno = 0;
	ck_assert_int_eq(aio_cancel(fd + 1000, &cb), -1);
	ck_assert_int_eq(errno, EBADF);
	errno = 0;
	ck_assert_int_eq(aio_cancel(STDERR_FILENO, &cb), -1); /* not cb's descriptor */
	ck_assert_int_eq(errno, EINVAL);
	close(fd);
}
END_TEST

/* A request the kernel has started cannot be taken back. */
START_TEST(cancel_in_flight_is_notcanceled)
{
	struct aiocb cb;
	char c;
	int p[2];

	if (!can_hold_pipe_read())
		return;
	ck_assert_int_eq(pipe(p), 0);
	init_cb(&cb, p[0], &c, 1, 0);
	ck_assert_int_eq(aio_read(&cb), 0);
	sleep_ms(20);
	ck_assert_int_eq(aio_cancel(p[0], &cb), AIO_NOTCANCELED);
	ck_assert_int_eq(aio_cancel(p[0], NULL), AIO_NOTCANCELED);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 1);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Requests held in flight until the engine refuses more: EAGAIN, also for aio_fsync. */
START_TEST(out_of_resources_is_eagain)
{
	struct aiocb *cbs;
	char *bytes;
	int p[2], n = 0, fd;
	struct aiocb s;

	if (!can_hold_pipe_read() || !on_library())
		return; /* glibc queues without bound */
	cbs = calloc(CAP, sizeof(*cbs));
	bytes = calloc(CAP, 1);
	ck_assert_int_eq(pipe(p), 0);
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	for (; n < CAP; n++) {
		init_cb(&cbs[n], p[0], bytes + n, 1, 0);
		if (aio_read(&cbs[n]) < 0)
			break;
	}
	ck_assert_int_lt(n, CAP);
	ck_assert_int_eq(errno, EAGAIN);
	fd = tmpfile_in(NULL, 0, O_RDWR);
	init_cb(&s, fd, NULL, 0, 0);
	errno = 0;
	ck_assert_int_eq(aio_fsync(O_SYNC, &s), -1);
	ck_assert_int_eq(errno, EAGAIN);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(write(p[1], "y", 1), 1);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(wait_cb(&cbs[i]), 0);
	ck_assert_int_eq(aio_fsync(O_SYNC, &s), 0);
	ck_assert_int_eq(wait_cb(&s), 0);
	free(cbs);
	free(bytes);
	close(fd);
}
END_TEST

/* A forked child has its own engine: its requests complete and notify there. */
START_TEST(child_after_fork)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	struct aiocb cb;
	int status;
	pid_t pid;

	/*
	 * AddressSanitizer's allocator is not fork-safe while other threads
	 * use it: a child's new threads were seen to hang on its lock.
	 * ThreadSanitizer refuses to start threads in such a child.
	 */
	if (UNDER_ASAN || UNDER_TSAN) {
		test_skip(NULL, "child_after_fork: fork with threads under %s",
			  UNDER_ASAN ? "AddressSanitizer" : "ThreadSanitizer");
		close(fd);
		return;
	}

	init_cb(&cb, fd, "parent", 6, 0);
	ck_assert_int_eq(aio_write(&cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct aiocb c;

		init_cb(&c, fd, "child", 5, 6);
		if (aio_write(&c) || wait_cb(&c) || aio_return(&c) != 5)
			_exit(1);
		init_cb(&c, fd, NULL, 0, 0);
		_exit(aio_fsync(O_SYNC, &c) || wait_cb(&c) ? 2 : 0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(aio_return(&cb), 6);
	close(fd);
}
END_TEST

/*
 * A process whose main thread ends with pthread_exit() ends with its last
 * thread: the completion thread must not outlive the requests it serves.
 */
START_TEST(pthread_exit_ends_the_process)
{
	int fd, status = 0, ms;
	pid_t pid;

	/* Its own background thread keeps a process alive past main's pthread_exit. */
	if (UNDER_TSAN) {
		test_skip(NULL, "pthread_exit from main: under ThreadSanitizer");
		return;
	}
	fd = tmpfile_in(NULL, 0, O_RDWR);
	pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct aiocb c;

		init_cb(&c, fd, "child", 5, 0);
		if (aio_write(&c) || wait_cb(&c) || aio_return(&c) != 5)
			_exit(1);
		main_thread_exit();
	}
	for (ms = 0; ms < 5000 && waitpid(pid, &status, WNOHANG) != pid; ms += 10)
		sleep_ms(10);
	if (ms >= 5000) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		ck_abort_msg("the process lives on 5 s after its main thread's pthread_exit");
	}
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	close(fd);
}
END_TEST

/*
 * fork() while another thread submits: the face's fork handlers and its
 * first use in a process (which sets up its context) must take their
 * locks in one order. A process of its own runs it (this program, run
 * again with --fork-while-submitting), as the order the handlers were
 * registered in matters and the suite registers the library's first.
 */
#define FORK_ROUNDS 40
#define SUBMITS 200

/* Without Check: exit codes say what failed. */
static int write_and_wait(int fd, off_t off)
{
	const struct aiocb *list[1];
	struct aiocb cb;

	init_cb(&cb, fd, "x", 1, off);
	if (aio_write(&cb))
		return -1;
	list[0] = &cb;
	while (aio_error(&cb) == EINPROGRESS)
		aio_suspend(list, 1, NULL);
	return aio_return(&cb) == 1 ? 0 : -1;
}

static atomic_bool submitting;

static void *submitter(void *arg)
{
	int fd = (int)(intptr_t)arg;

	for (int i = 0; i < SUBMITS; i++)
		if (write_and_wait(fd, i))
			return (void *)1;
	atomic_store(&submitting, false);
	return NULL;
}

/* A child: its first aio_write sets the face up again, while this thread forks. */
static int fork_while_submitting(int fd)
{
	pthread_t thread;
	void *res;

	atomic_store(&submitting, true);
	if (pthread_create(&thread, NULL, submitter, (void *)(intptr_t)fd))
		return 3;
	while (atomic_load(&submitting)) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) != pid)
			return 4;
	}
	pthread_join(thread, &res);
	return res ? 5 : 0;
}

/* Each child must end within 5 s; 0 when all did, with status 0. */
static int fork_rounds(void)
{
	char path[] = "/dev/shm/aio-compat-test-XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0)
		return 1;
	unlink(path);
	if (write_and_wait(fd, 0))
		return 1;
	for (int round = 0; round < FORK_ROUNDS; round++) {
		pid_t pid = fork();
		int status = 0, ms;

		if (pid == 0)
			_exit(fork_while_submitting(fd));
		for (ms = 0; ms < 5000 && waitpid(pid, &status, WNOHANG) != pid; ms += 1)
			usleep(1000);
		if (ms >= 5000) {
			fprintf(stderr, "fork-while-submitting: round %d deadlocked\n", round);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return 2;
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "fork-while-submitting: round %d: status %#x\n", round,
				status);
			return 2;
		}
	}
	return 0;
}

START_TEST(fork_while_others_submit)
{
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int status = 0, ms;
	pid_t pid;

	/* As in child_after_fork: its allocator is not fork-safe with threads. */
	if (UNDER_ASAN || UNDER_TSAN) {
		test_skip(NULL, "fork with threads: under %s",
			  UNDER_ASAN ? "AddressSanitizer" : "ThreadSanitizer");
		return;
	}
	ck_assert_int_gt(len, 0);
	self[len] = '\0';
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(self, self, "--fork-while-submitting", (char *)NULL);
		_exit(127);
	}
	for (ms = 0; ms < 20000 && waitpid(pid, &status, WNOHANG) != pid; ms += 10)
		sleep_ms(10);
	if (ms >= 20000) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		ck_abort_msg("fork-while-submitting still runs after 20 s");
	}
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}
END_TEST

/* A zeroed aiocb asks for SIGEV_SIGNAL with signal 0: accepted, and nothing is sent. */
START_TEST(zeroed_sigevent_sends_nothing)
{
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	struct aiocb cb;
	sigset_t pending;

	memset(&cb, 0, sizeof(cb));
	cb.aio_fildes = fd;
	ck_assert_int_eq(cb.aio_sigevent.sigev_notify, SIGEV_SIGNAL);
	ck_assert_int_eq(aio_fsync(O_SYNC, &cb), 0);
	ck_assert_int_eq(wait_cb(&cb), 0);
	ck_assert_int_eq(aio_return(&cb), 0);
	sigpending(&pending);
	for (int sig = 1; sig <= SIGRTMAX; sig++)
		ck_assert_msg(!sigismember(&pending, sig), "signal %d pending", sig);
	close(fd);
}
END_TEST

static int from_library(void *fn)
{
	Dl_info info;

	return dladdr(fn, &info) && info.dli_fname && strstr(info.dli_fname, "libaio-compat-posix");
}

/* The names <aio.h> uses under _FILE_OFFSET_BITS=64. */
START_TEST(large_file_names)
{
	void *fns[] = { (void *)aio_read64,   (void *)aio_write64,  (void *)aio_fsync64,
			(void *)aio_error64,  (void *)aio_return64, (void *)aio_suspend64,
			(void *)aio_cancel64, (void *)lio_listio64 };
	int fd = tmpfile_in(NULL, 0, O_RDWR);
	const struct aiocb64 *wait[1];
	struct aiocb64 cb, *list[1];
	char out[64], in[64];

	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		ck_assert_msg(from_library(fns[i]), "*64 name %zu not from the library", i);
	memset(out, '6', sizeof(out));
	memset(&cb, 0, sizeof(cb));
	cb.aio_fildes = fd;
	cb.aio_buf = out;
	cb.aio_nbytes = sizeof(out);
	cb.aio_lio_opcode = LIO_WRITE;
	list[0] = &cb;
	ck_assert_int_eq(lio_listio64(LIO_WAIT, list, 1, NULL), 0);
	ck_assert_int_eq(aio_return64(&cb), 64);
	cb.aio_buf = in;
	ck_assert_int_eq(aio_read64(&cb), 0);
	wait[0] = &cb;
	ck_assert_int_eq(aio_suspend64(wait, 1, NULL), 0);
	ck_assert_int_eq(aio_error64(&cb), 0);
	ck_assert_int_eq(aio_return64(&cb), 64);
	ck_assert_mem_eq(in, out, 64);
	ck_assert_int_eq(aio_fsync64(O_SYNC, &cb), 0);
	ck_assert_int_eq(aio_suspend64(wait, 1, NULL), 0);
	ck_assert_int_eq(aio_return64(&cb), 0);
	ck_assert_int_eq(aio_cancel64(fd, &cb), AIO_ALLDONE);
	ck_assert_int_eq(aio_write64(&cb), 0);
	ck_assert_int_eq(aio_suspend64(wait, 1, NULL), 0);
	ck_assert_int_eq(aio_return64(&cb), 64);
	close(fd);
}
END_TEST

static Suite *posix_suite(void)
{
	Suite *s = suite_create("posix");
	TCase *fsync = tcase_create("aio_fsync");
	TCase *rw = tcase_create("read-write");
	TCase *notify = tcase_create("notify");
	TCase *list = tcase_create("lio_listio");
	TCase *wait = tcase_create("suspend-cancel");

	tcase_set_timeout(fsync, 30);
	tcase_set_timeout(wait, 30);
	tcase_set_timeout(rw, 30);
	tcase_add_test(fsync, fsync_comes_from_the_library);
	tcase_add_test(fsync, fsync_bad_op_is_einval);
	tcase_add_test(fsync, fsync_bad_sigev_notify_is_einval);
	tcase_add_test(fsync, fsync_bad_signal_number_is_einval);
	tcase_add_test(fsync, fsync_bad_fd_is_ebadf);
	tcase_add_test(fsync, fsync_read_only_fd_is_ebadf);
	tcase_add_test(fsync, fsync_ignores_other_fields);
	tcase_add_test(fsync, zeroed_sigevent_sends_nothing);
	tcase_add_test(fsync, fsync_in_progress_then_zero);
	tcase_add_test(fsync, fsync_completes_after_earlier_writes);
	tcase_add_test(fsync, out_of_resources_is_eagain);
	tcase_add_test(rw, return_values);
	tcase_add_test(rw, return_is_given_once);
	tcase_add_test(rw, error_from_the_request);
	tcase_add_test(rw, read_write_access_mode_is_ebadf);
	tcase_add_test(rw, child_after_fork);
	tcase_add_test(rw, pthread_exit_ends_the_process);
	tcase_add_test(rw, fork_while_others_submit);
	tcase_add_test(rw, large_file_names);
	tcase_add_test(notify, sigev_signal_delivered_once_with_value);
	tcase_add_test(notify, sigev_thread_runs_once_with_value);
	tcase_add_test(notify, sigev_thread_honours_attributes);
	tcase_add_test(list, lio_wait_completes_all);
	tcase_add_test(list, lio_wait_failed_entry_is_eio);
	tcase_add_test(list, lio_bad_mode_and_sigevent_are_einval);
	tcase_add_test(list, lio_nowait_notifies_once_when_all_done);
	tcase_add_test(wait, suspend_times_out_then_wakes);
	tcase_add_test(wait, suspend_returns_at_once_when_done);
	tcase_add_test(wait, suspend_interrupted_is_eintr);
	tcase_add_test(wait, suspend_cancelled_mid_wait);
	tcase_add_test(wait, cancel_answers);
	tcase_add_test(wait, cancel_in_flight_is_notcanceled);
	suite_add_tcase(s, fsync);
	suite_add_tcase(s, rw);
	suite_add_tcase(s, notify);
	suite_add_tcase(s, list);
	suite_add_tcase(s, wait);
	return s;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--fork-while-submitting"))
		return fork_rounds();
	return run_suite(posix_suite(), "posix");
}
