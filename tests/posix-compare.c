/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Prints, one line per rule, what the <aio.h> implementation this program
 * is linked with answers. Built twice (with -laio-compat-posix, and
 * without it for glibc's) and run side by side by posix-compare.sh.
 */
#include <aio.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *rule, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(const char *rule, const char *fmt, ...)
{
	va_list ap;

	printf("%-44s ", rule);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* "0", "-1 EINVAL", ... for a call's result and errno. */
static const char *outcome(long ret, int err)
{
	static char buf[64];

	if (ret == -1)
		snprintf(buf, sizeof(buf), "-1 %s", strerrorname_np(err));
	else
		snprintf(buf, sizeof(buf), "%ld", ret);
	return buf;
}

static const char *errname(int err)
{
	return err ? strerrorname_np(err) : "0";
}

static void init_cb(struct aiocb *cb, int fd, void *buf, size_t len, off_t off)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_fildes = fd;
	cb->aio_buf = buf;
	cb->aio_nbytes = len;
	cb->aio_offset = off;
}

/* aio_error after waiting up to ms milliseconds for cb. */
static int wait_cb(const struct aiocb *cb, long ms)
{
	const struct aiocb *list[1] = { cb };
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	if (aio_error(cb) == EINPROGRESS)
		aio_suspend(list, 1, &ts);
	return aio_error(cb);
}

static int scratch_fd(const char *dir, int flags)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/aio-compare-XXXXXX", dir);
	fd = mkostemp(path, flags);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	unlink(path);
	return fd;
}

static const char *implementation(void)
{
	Dl_info info;

	if (dladdr((void *)aio_fsync, &info) && info.dli_fname)
		return strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1
						    : info.dli_fname;
	return "?";
}

static void probe_calls(void)
{
	struct aiocb cb;
	int fd = scratch_fd("/dev/shm", 0), ro = open("/etc/hostname", O_RDONLY), ret;
	char buf[16] = "0123456789abcdef";

	say("aio_fsync comes from", "%s", implementation());
	init_cb(&cb, fd, NULL, 0, 0);
	ret = aio_fsync(O_RDWR, &cb);
	say("aio_fsync(O_RDWR)", "%s", outcome(ret, errno));
	init_cb(&cb, fd, NULL, 0, 0);
	cb.aio_sigevent.sigev_notify = 99;
	ret = aio_fsync(O_SYNC, &cb);
	say("aio_fsync, sigev_notify 99", "%s", outcome(ret, errno));
	if (ret == 0)
		wait_cb(&cb, 1000);
	init_cb(&cb, fd, NULL, 0, 0);
	cb.aio_sigevent.sigev_notify = SIGEV_SIGNAL;
	cb.aio_sigevent.sigev_signo = 1000;
	ret = aio_fsync(O_SYNC, &cb);
	say("aio_fsync, SIGEV_SIGNAL signo 1000", "%s", outcome(ret, errno));
	if (ret == 0)
		wait_cb(&cb, 1000);
	init_cb(&cb, -1, NULL, 0, 0);
	ret = aio_fsync(O_SYNC, &cb);
	say("aio_fsync, fd -1", "%s", outcome(ret, errno));
	init_cb(&cb, ro, NULL, 0, 0);
	ret = aio_fsync(O_SYNC, &cb);
	say("aio_fsync, O_RDONLY fd", "%s%s%s", outcome(ret, errno), ret == 0 ? ", aio_error " : "",
	    ret == 0 ? errname(wait_cb(&cb, 1000)) : "");
	init_cb(&cb, ro, buf, sizeof(buf), 0);
	ret = aio_write(&cb);
	say("aio_write, O_RDONLY fd", "%s%s%s", outcome(ret, errno), ret == 0 ? ", aio_error " : "",
	    ret == 0 ? errname(wait_cb(&cb, 1000)) : "");
	init_cb(&cb, fd, buf, sizeof(buf), 0);
	aio_write(&cb);
	wait_cb(&cb, 1000);
	ret = (int)aio_return(&cb);
	say("aio_return", "%d", ret);
	ret = (int)aio_return(&cb);
	say("aio_return again", "%s", outcome(ret, errno));
	init_cb(&cb, fd, NULL, 0, 0);
	errno = 0;
	ret = aio_error(&cb);
	say("aio_error, aiocb never queued", "%s", ret == -1 ? outcome(ret, errno) : errname(ret));
	ret = aio_cancel(STDERR_FILENO, &cb);
	say("aio_cancel, fd not the aiocb's", "%s", outcome(ret, errno));
	ret = aio_cancel(fd, NULL);
	say("aio_cancel, nothing queued", "%s",
	    ret == AIO_ALLDONE ? "AIO_ALLDONE" : outcome(ret, errno));
	close(ro);
	close(fd);
}

static void probe_lio(void)
{
	struct sigevent sev = { .sigev_notify = 99 };
	struct aiocb *list[1] = { NULL };
	int ret;

	ret = lio_listio(LIO_NOWAIT, list, 1, &sev);
	say("lio_listio(LIO_NOWAIT), sigev_notify 99", "%s", outcome(ret, errno));
	ret = lio_listio(7, list, 1, NULL);
	say("lio_listio(mode 7)", "%s", outcome(ret, errno));
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void probe_pipe(void)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	const struct aiocb *list[1];
	struct aiocb cb;
	char c;
	int p[2], ret;

	/* Native AIO reads a pipe inside io_submit: aio_read would block. */
	if (getenv("AIO_COMPAT_BACKEND") && !strcmp(getenv("AIO_COMPAT_BACKEND"), "native") &&
	    strstr(implementation(), "libaio-compat-posix")) {
		say("aio_cancel, read blocked on a pipe", "(blocks in aio_read on native)");
		say("aio_suspend interrupted by a signal", "(blocks in aio_read on native)");
		return;
	}
	if (pipe(p))
		return;
	init_cb(&cb, p[0], &c, 1, 0);
	aio_read(&cb);
	usleep(20000);
	ret = aio_cancel(p[0], &cb);
	say("aio_cancel, read blocked on a pipe", "%s",
	    ret == AIO_NOTCANCELED ? "AIO_NOTCANCELED"
	    : ret == AIO_CANCELED  ? "AIO_CANCELED"
	    : ret == AIO_ALLDONE   ? "AIO_ALLDONE"
				   : outcome(ret, errno));
	if (ret != AIO_CANCELED) {
		sigaction(SIGALRM, &sa, NULL);
		ualarm(50000, 0);
		list[0] = &cb;
		ret = aio_suspend(list, 1, NULL);
		say("aio_suspend interrupted by a signal", "%s", outcome(ret, errno));
		ret = write(p[1], "x", 1);
		wait_cb(&cb, 1000);
	}
	aio_return(&cb);
	close(p[0]);
	close(p[1]);
}

static atomic_int signals;
static siginfo_t seen;
static struct aiocb *handler_cb;
static int handler_error = -2;

static void on_signal(int sig, siginfo_t *si, void *uctx)
{
	(void)sig;
	(void)uctx;
	seen = *si;
	handler_error = aio_error(handler_cb);
	atomic_fetch_add(&signals, 1);
}

static void probe_signal(void)
{
	struct sigaction sa = { .sa_sigaction = on_signal, .sa_flags = SA_SIGINFO };
	int fd = scratch_fd("/dev/shm", 0);
	struct aiocb cb;

	sigaction(SIGRTMIN, &sa, NULL);
	init_cb(&cb, fd, NULL, 0, 0);
	handler_cb = &cb;
	cb.aio_sigevent.sigev_notify = SIGEV_SIGNAL;
	cb.aio_sigevent.sigev_signo = SIGRTMIN;
	cb.aio_sigevent.sigev_value.sival_int = 42;
	aio_fsync(O_SYNC, &cb);
	for (int i = 0; i < 1000 && !atomic_load(&signals); i++)
		usleep(1000);
	usleep(50000);
	say("SIGEV_SIGNAL: count, si_code, si_value", "%d, %s, %d", atomic_load(&signals),
	    seen.si_code == SI_ASYNCIO ? "SI_ASYNCIO" : "other", seen.si_value.sival_int);
	say("SIGEV_SIGNAL: si_pid is the process", "%s", seen.si_pid == getpid() ? "yes" : "no");
	say("aio_error inside the handler", "%s", errname(handler_error));
	close(fd);
}

/* Rounds out of 10 in which the sync completed after all 16 earlier writes. */
static void probe_order(void)
{
	enum {
		N = 16,
		CHUNK = 65536
	};
	int fd = scratch_fd("/var/tmp", O_DIRECT), ordered = 0;
	struct aiocb w[N], s;
	char *buf;

	if (posix_memalign((void **)&buf, 4096, N * CHUNK))
		return;
	memset(buf, 'o', N * CHUNK);
	for (int round = 0; round < 10; round++) {
		int late = 0;

		for (int i = 0; i < N; i++) {
			init_cb(&w[i], fd, buf + i * CHUNK, CHUNK, (off_t)i * CHUNK);
			aio_write(&w[i]);
		}
		init_cb(&s, fd, NULL, 0, 0);
		aio_fsync(O_SYNC, &s);
		wait_cb(&s, 5000);
		for (int i = 0; i < N; i++)
			late += aio_error(&w[i]) == EINPROGRESS;
		ordered += !late;
		for (int i = 0; i < N; i++)
			wait_cb(&w[i], 5000), aio_return(&w[i]);
		aio_return(&s);
	}
	say("aio_fsync after 16 writes: ordered rounds", "%d/10", ordered);
	free(buf);
	close(fd);
}

static void probe_fork(void)
{
	int fd = scratch_fd("/dev/shm", 0), status = 0;
	struct aiocb cb;
	pid_t pid;

	init_cb(&cb, fd, "p", 1, 0);
	aio_write(&cb);
	wait_cb(&cb, 1000);
	aio_return(&cb);
	pid = fork();
	if (pid == 0) {
		init_cb(&cb, fd, "c", 1, 1);
		aio_write(&cb);
		_exit(wait_cb(&cb, 2000) == 0 ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	say("aio_write in a child forked after AIO use", "%s",
	    WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "completes"
							  : "does not complete in 2 s");
	close(fd);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	probe_calls();
	probe_lio();
	probe_pipe();
	probe_signal();
	probe_order();
	probe_fork();
	return 0;
}
