/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Allocation failures. Each run of a scenario fails one allocation, the
 * n-th, for n = 1, 2, ... until a run makes no more: malloc, calloc,
 * realloc, and the threads, eventfds and mappings the library and its
 * POSIX face ask for. Each run is a fresh process (the suite execs itself),
 * so what is done once per process fails too. Every call must then succeed
 * or give a clean error, every accepted request complete exactly once, a
 * sync after the writes accepted before it, with no descriptor left behind,
 * no crash and no hang.
 *
 * The program's own malloc, calloc, realloc, pthread_create, eventfd and
 * mmap take the libraries' calls: the dynamic linker binds those to the
 * executable's definitions. AddressSanitizer owns malloc: under it the
 * suite says SKIP and runs nothing.
 */
#include "util.h"

#include <aio.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* libaio.so.1 exports it (LIBAIO_0.4) but <libaio.h> leaves it commented out. */
int io_queue_wait(io_context_t ctx, struct timespec *timeout);

#define RUN_OK 0	 /* clean, and the n-th allocation was failed */
#define RUN_BAD 1	 /* a broken promise, told on stderr */
#define RUN_EXHAUSTED 2	 /* clean, and there was no n-th allocation */
#define RUN_REFERENCE 10 /* plus the descriptors a clean run keeps */
#define MAX_RUNS 2000
#define CHILD_LIMIT_S 60
#define WAIT_MS 10000
#define BLOCK 4096

static const char *self_path;

#if !UNDER_ASAN && !UNDER_TSAN
/* Allocations left before the one that fails; 0: none fails. */
static _Atomic long countdown;
static atomic_bool fired;

static bool fail_now(void)
{
	long left = atomic_load(&countdown);

	while (left > 0 && !atomic_compare_exchange_weak(&countdown, &left, left - 1))
		;
	if (left != 1)
		return false;
	atomic_store(&fired, true);
	return true;
}

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t nmemb, size_t size);
void *__libc_realloc(void *ptr, size_t size);

void *malloc(size_t size)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(size);
}

void *calloc(size_t nmemb, size_t size)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_calloc(nmemb, size);
}

void *realloc(void *ptr, size_t size)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_realloc(ptr, size);
}

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static create_fn real_create;

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (fail_now())
		return EAGAIN;
	return real_create(thread, attr, fn, arg);
}

int eventfd(unsigned int count, int flags)
{
	if (fail_now()) {
		errno = EMFILE;
		return -1;
	}
	return (int)syscall(SYS_eventfd2, count, flags);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (fail_now()) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

__attribute__((constructor)) static void find_real_create(void)
{
	real_create = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
}

static void arm(long n)
{
	atomic_store(&fired, false);
	atomic_store(&countdown, n);
}

/* Whether the n-th allocation came. */
static bool disarm(void)
{
	atomic_store(&countdown, 0);
	return atomic_load(&fired);
}
#else
static void arm(long n)
{
	(void)n;
}

static bool disarm(void)
{
	return false;
}
#endif

/* A run's complaints go to stderr; ck_assert belongs to the runner's process. */
static bool bad;

static void __attribute__((format(printf, 1, 2))) complain(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	bad = true;
}

static int fds_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static long ms_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Whether the thread of /proc/self/task entry name is one of io_uring's workers. */
static bool uring_worker(const char *name)
{
	char path[300], comm[16] = "";
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%s/comm", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (read(fd, comm, sizeof(comm) - 1) < 0)
		comm[0] = 0;
	close(fd);
	return !strncmp(comm, "iou-", 4);
}

/* The threads of this process but io_uring's workers; no allocation (getdents64). */
static int threads_running(void)
{
	char buf[4096];
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
	long len;

	if (fd < 0)
		return -1;
	while ((len = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < len;) {
			struct dirent64 *de = (struct dirent64 *)(buf + off);

			n += de->d_name[0] != '.' && !uring_worker(de->d_name);
			off += de->d_reclen;
		}
	}
	close(fd);
	return n;
}

/*
 * Until the libraries' threads, idle, have ended: what comes next starts
 * them again, and that may fail too.
 */
static void threads_end(void)
{
	struct timespec start;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (threads_running() > 1 && ms_since(&start) < WAIT_MS)
		usleep(10000);
	if (threads_running() != 1)
		complain("%d threads still running when idle", threads_running());
}

static int file_in(const char *dir, int flags)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "%s/aio-compat-alloc-XXXXXX", dir);
	fd = mkostemp(path, flags | O_CLOEXEC);
	if (fd < 0 && flags)
		return file_in(dir, 0);
	if (fd >= 0) {
		unlink(path);
		if (ftruncate(fd, 1 << 20))
			complain("ftruncate: %s", strerror(errno));
	}
	return fd;
}

/*
 * The libaio face: reads, writes, vectors and syncs in one io_submit,
 * several syncs on one fd behind writes (held, and the rule's table
 * growing), a poll, an iocb with an eventfd that is waited on without
 * calling in, a retry of what was refused, io_getevents; once the
 * library's threads have ended, another such iocb, then callbacks through
 * io_queue_run and io_queue_wait, and io_destroy.
 */
#define LIB_IOCBS 24

struct lib_run {
	io_context_t ctx;
	struct iocb io[LIB_IOCBS];
	struct iovec iov[2];
	int nr;
	int accepted; /* io[0 .. accepted - 1] */
	int arrival[LIB_IOCBS];
	int arrived;
	int ran; /* callbacks */
};

static char *wbuf, *rbuf;

static bool is_write(const struct iocb *io)
{
	return io->aio_lio_opcode == IO_CMD_PWRITE || io->aio_lio_opcode == IO_CMD_PWRITEV;
}

static bool is_sync(const struct iocb *io)
{
	return io->aio_lio_opcode == IO_CMD_FSYNC || io->aio_lio_opcode == IO_CMD_FDSYNC;
}

/* Submits io[from .. to - 1], retrying a call refused as a whole once. */
static void lib_submit(struct lib_run *r, int to)
{
	int refused = 0;

	while (r->accepted < to && refused < 2) {
		struct iocb *list[LIB_IOCBS];
		int n = to - r->accepted, ret;

		for (int i = 0; i < n; i++)
			list[i] = &r->io[r->accepted + i];
		ret = io_submit(r->ctx, n, list);
		if (ret > 0) {
			r->accepted += ret;
			refused = 0;
			continue;
		}
		if (ret != -EAGAIN) {
			complain("io_submit of %d: %d, not a count or -EAGAIN", n, ret);
			return;
		}
		refused++;
	}
}

static void lib_note(struct lib_run *r, const struct io_event *ev)
{
	long i = (struct iocb *)ev->obj - r->io;

	if (i < 0 || i >= r->accepted) {
		complain("event for an iocb never accepted (%p)", (void *)ev->obj);
		return;
	}
	if (r->arrival[i] >= 0)
		complain("iocb %ld completed twice", i);
	r->arrival[i] = r->arrived++;
}

/* Takes events until every accepted iocb from first on has one. */
static void lib_reap(struct lib_run *r, int first)
{
	struct timespec start;
	bool late = false;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct io_event ev[LIB_IOCBS];
		struct timespec ts = { 0, 100 * 1000000 };
		int missing = 0, n;

		for (int i = first; i < r->accepted; i++)
			missing += r->arrival[i] < 0;
		if (!missing)
			return;
		if (late) {
			complain("%d accepted iocbs never completed", missing);
			return;
		}
		/* Before the wait: a stalled machine still waits once more. */
		late = ms_since(&start) > WAIT_MS;
		n = io_getevents(r->ctx, 1, LIB_IOCBS, ev, &ts);
		if (n < 0) {
			complain("io_getevents: %d", n);
			return;
		}
		for (int i = 0; i < n; i++)
			lib_note(r, &ev[i]);
	}
}

/* What was refused never runs: no event beyond one per accepted iocb. */
static void lib_expect_no_more(struct lib_run *r)
{
	struct io_event ev[LIB_IOCBS];
	struct timespec ts = { 0, 20 * 1000000 };
	int n = io_getevents(r->ctx, 1, LIB_IOCBS, ev, &ts);

	for (int i = 0; i < n; i++)
		lib_note(r, &ev[i]);
	if (n)
		complain("%d events beyond one per accepted iocb", n);
}

/* Each sync after every write on its fd accepted before it. */
static void lib_check_order(struct lib_run *r)
{
	for (int s = 0; s < r->accepted; s++) {
		if (!is_sync(&r->io[s]))
			continue;
		for (int w = 0; w < s; w++)
			if (is_write(&r->io[w]) && r->io[w].aio_fildes == r->io[s].aio_fildes &&
			    r->arrival[w] > r->arrival[s])
				complain("sync %d completed before write %d", s, w);
	}
}

/* io_set_callback takes the iocb's data field for the callback itself. */
static struct lib_run *queue_run_of;

static void lib_callback(io_context_t ctx, struct iocb *io, long res, long res2)
{
	struct lib_run *r = queue_run_of;

	(void)ctx;
	(void)res2;
	if (res < 0 && !is_sync(io))
		complain("callback: res %ld", res);
	r->ran++;
}

static void lib_queue_phase(struct lib_run *r, int fd)
{
	int first = r->accepted, want;
	struct timespec start;

	io_prep_pwrite(&r->io[r->nr], fd, wbuf, BLOCK, 8 * BLOCK);
	io_prep_fsync(&r->io[r->nr + 1], fd);
	io_prep_pread(&r->io[r->nr + 2], fd, rbuf, BLOCK, 0);
	for (int i = r->nr; i < r->nr + 3; i++)
		io_set_callback(&r->io[i], lib_callback);
	queue_run_of = r;
	r->nr += 3;
	lib_submit(r, r->nr);
	want = r->accepted - first;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (bool late = false; r->ran < want && !late;) {
		struct timespec ts = { 0, 100 * 1000000 };
		int ret;

		late = ms_since(&start) >= WAIT_MS;
		ret = io_queue_wait(r->ctx, &ts);

		if (ret && ret != -EINTR)
			complain("io_queue_wait: %d", ret);
		ret = io_queue_run(r->ctx);
		if (ret)
			complain("io_queue_run: %d", ret);
	}
	if (r->ran != want)
		complain("%d of %d callbacks ran", r->ran, want);
}

/* Accepted, an iocb with an eventfd signals it with nobody calling in. */
static void lib_expect_signal(struct lib_run *r, int efd)
{
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	uint64_t count;

	if (r->accepted == r->nr && poll(&pfd, 1, WAIT_MS) != 1)
		complain("the eventfd was never signalled");
	if (read(efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		complain("read eventfd: %s", strerror(errno));
}

/* With the library's threads ended: the eventfd's helper starts anew. */
static void lib_eventfd_phase(struct lib_run *r, int shm, int efd)
{
	int first = r->accepted;

	threads_end();
	io_prep_pread(&r->io[r->nr], shm, rbuf, BLOCK, 0);
	io_set_eventfd(&r->io[r->nr++], efd);
	lib_submit(r, r->nr);
	lib_expect_signal(r, efd);
	lib_reap(r, first);
}

static void lib_scenario(struct lib_run *r, int direct, int shm, int pipefd[2], int efd)
{
	int ret, off = 0;

	memset(r->arrival, -1, sizeof(r->arrival));
	ret = io_setup(64, &r->ctx);
	if (ret) {
		if (ret != -ENOMEM && ret != -EAGAIN && ret != -EMFILE)
			complain("io_setup: %d", ret);
		return;
	}
	/* Five syncs behind writes on one fd: more epochs than the table starts with. */
	for (int i = 0; i < 5; i++) {
		io_prep_pwrite(&r->io[r->nr++], direct, wbuf, BLOCK, (off++) * BLOCK);
		io_prep_fdsync(&r->io[r->nr++], direct);
	}
	io_prep_pread(&r->io[r->nr++], shm, rbuf, BLOCK, 0);
	r->iov[0] = (struct iovec){ wbuf, BLOCK / 2 };
	r->iov[1] = (struct iovec){ wbuf + BLOCK / 2, BLOCK / 2 };
	io_prep_pwritev(&r->io[r->nr++], shm, r->iov, 2, BLOCK);
	io_prep_fsync(&r->io[r->nr++], shm);
	io_prep_poll(&r->io[r->nr++], pipefd[0], POLLIN);
	io_prep_pread(&r->io[r->nr], shm, rbuf, BLOCK, 0);
	io_set_eventfd(&r->io[r->nr++], efd);
	lib_submit(r, r->nr);
	/* The eventfd's iocb is last: accepted, it must signal with nobody calling in. */
	lib_expect_signal(r, efd);
	if (write(pipefd[1], "x", 1) != 1)
		complain("write pipe: %s", strerror(errno));
	lib_reap(r, 0);
	lib_check_order(r);
	lib_expect_no_more(r);
	lib_eventfd_phase(r, shm, efd);
	lib_queue_phase(r, shm);
	ret = io_destroy(r->ctx);
	if (ret)
		complain("io_destroy: %d", ret);
}

/*
 * The POSIX face: aio_write, aio_fsync behind them, lio_listio waiting and
 * not, a SIGEV_THREAD notice, aio_suspend, aio_error, aio_return; then,
 * once its threads have ended, a write and a sync again.
 */
#define PX_CBS 12

struct px_run {
	struct aiocb cb[PX_CBS];
	bool queued[PX_CBS];
	bool is_sync[PX_CBS];
	int nr;
};

static atomic_int notices;

static void px_notice(union sigval v)
{
	(void)v;
	atomic_fetch_add(&notices, 1);
}

static struct aiocb *px_new(struct px_run *r, int fd, off_t off)
{
	struct aiocb *cb = &r->cb[r->nr++];

	memset(cb, 0, sizeof(*cb));
	cb->aio_fildes = fd;
	cb->aio_buf = wbuf;
	cb->aio_nbytes = BLOCK;
	cb->aio_offset = off;
	cb->aio_lio_opcode = LIO_WRITE;
	cb->aio_sigevent.sigev_notify = SIGEV_NONE;
	return cb;
}

static void px_call(struct px_run *r, struct aiocb *cb, int ret)
{
	if (!ret) {
		r->queued[cb - r->cb] = true;
		return;
	}
	if (ret != -1 || errno != EAGAIN)
		complain("aiocb %ld: %d (%s), not 0 or EAGAIN", (long)(cb - r->cb), ret,
			 strerror(errno));
}

static void px_fsync(struct px_run *r, int fd)
{
	struct aiocb *cb = px_new(r, fd, 0);

	r->is_sync[cb - r->cb] = true;
	px_call(r, cb, aio_fsync(O_DSYNC, cb));
}

/* Entries of a list: queued unless aio_error says it never was. */
static void px_list(struct px_run *r, int mode, int first, int ret)
{
	if (ret && (errno != EAGAIN && errno != EIO))
		complain("lio_listio: %s", strerror(errno));
	for (int i = first; i < r->nr; i++) {
		int err = aio_error(&r->cb[i]);

		r->queued[i] = err == EINPROGRESS || err == 0;
		if (err && err != EINPROGRESS && err != EAGAIN && !(err == -1 && errno == EINVAL))
			complain("lio_listio entry %d: %d", i, err);
		if (mode == LIO_WAIT && err == EINPROGRESS)
			complain("LIO_WAIT returned with entry %d in flight", i);
	}
}

static bool px_done(struct px_run *r, int i)
{
	return aio_error(&r->cb[i]) != EINPROGRESS;
}

/* Waits for every queued request; a finished sync finds its writes finished. */
static void px_wait(struct px_run *r)
{
	const struct aiocb *list[PX_CBS];
	struct timespec start;
	bool pending = true;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (bool late = false; pending && !late;) {
		struct timespec ts = { 0, 100 * 1000000 };
		int n = 0;

		late = ms_since(&start) >= WAIT_MS;
		pending = false;
		for (int i = 0; i < r->nr; i++) {
			if (!r->queued[i])
				continue;
			if (!px_done(r, i)) {
				list[n++] = &r->cb[i];
				pending = true;
				continue;
			}
			for (int w = 0; r->is_sync[i] && w < i; w++)
				if (r->queued[w] && !r->is_sync[w] &&
				    r->cb[w].aio_lio_opcode == LIO_WRITE &&
				    r->cb[w].aio_fildes == r->cb[i].aio_fildes && !px_done(r, w))
					complain("aio_fsync %d finished before aio_write %d", i, w);
		}
		if (n && aio_suspend(list, n, &ts) && errno != EAGAIN && errno != EINTR)
			complain("aio_suspend: %s", strerror(errno));
	}
	if (pending)
		complain("queued requests never finished");
	for (int i = 0; i < r->nr; i++) {
		if (!r->queued[i])
			continue;
		if (aio_error(&r->cb[i]))
			complain("aiocb %d: error %d", i, aio_error(&r->cb[i]));
		if (aio_return(&r->cb[i]) < 0 && !r->is_sync[i])
			complain("aiocb %d: aio_return failed", i);
		if (aio_return(&r->cb[i]) != -1 || errno != EINVAL)
			complain("aiocb %d returned twice", i);
	}
}

static void px_scenario(struct px_run *r, int direct, int shm)
{
	struct aiocb *list[4];
	struct aiocb *cb;
	struct sigevent sev = { .sigev_notify = SIGEV_NONE };
	struct timespec start;
	int first, ret;

	for (int i = 0; i < 3; i++) {
		cb = px_new(r, direct, i * BLOCK);
		px_call(r, cb, aio_write(cb));
	}
	px_fsync(r, direct);
	first = r->nr;
	list[0] = px_new(r, shm, 0);
	list[1] = px_new(r, shm, BLOCK);
	list[2] = px_new(r, shm, 2 * BLOCK);
	list[2]->aio_buf = rbuf;
	list[2]->aio_lio_opcode = LIO_READ;
	ret = lio_listio(LIO_WAIT, list, 3, NULL);
	px_list(r, LIO_WAIT, first, ret);
	first = r->nr;
	list[0] = px_new(r, direct, 4 * BLOCK);
	list[1] = px_new(r, direct, 5 * BLOCK);
	ret = lio_listio(LIO_NOWAIT, list, 2, &sev);
	px_list(r, LIO_NOWAIT, first, ret);
	px_fsync(r, direct);
	cb = px_new(r, shm, 6 * BLOCK);
	cb->aio_sigevent.sigev_notify = SIGEV_THREAD;
	cb->aio_sigevent.sigev_notify_function = px_notice;
	px_call(r, cb, aio_write(cb));
	px_wait(r);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (r->queued[cb - r->cb] && !atomic_load(&notices) && ms_since(&start) < WAIT_MS)
		usleep(1000);
	if (r->queued[cb - r->cb] && atomic_load(&notices) != 1)
		complain("the SIGEV_THREAD notice came %d times", atomic_load(&notices));
}

/* With the faces' threads ended: a write and a sync behind it start them anew. */
static void px_after_idle(int direct)
{
	static struct px_run r;
	struct aiocb *cb;

	threads_end();
	cb = px_new(&r, direct, 7 * BLOCK);
	px_call(&r, cb, aio_write(cb));
	px_fsync(&r, direct);
	px_wait(&r);
}

/* After a run: the POSIX face still queues, which it does on its context. */
static void px_works(int fd)
{
	struct px_run r = { .nr = 0 };
	struct aiocb *cb = px_new(&r, fd, 0);

	px_call(&r, cb, aio_write(cb));
	if (!r.queued[0])
		complain("aio_write refused with nothing failing");
	px_wait(&r);
}

/*
 * One run, in a process of its own: the scenario with the n-th allocation
 * failing (none for n = 0). Exits RUN_OK, RUN_EXHAUSTED or RUN_BAD; a
 * POSIX run checks its descriptor count against the first run's (want).
 */
static int child_run(const char *what, long n, int want)
{
	int direct = file_in("/var/tmp", O_DIRECT), shm = file_in("/dev/shm", 0), pipefd[2];
	int efd = (int)syscall(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK), before, after;
	static struct lib_run lr;
	static struct px_run pr;
	bool hit;

	if (direct < 0 || shm < 0 || efd < 0 || pipe2(pipefd, O_CLOEXEC)) {
		fprintf(stderr, "setup: %s\n", strerror(errno));
		return RUN_BAD;
	}
	wbuf = aligned_alloc(BLOCK, BLOCK);
	rbuf = aligned_alloc(BLOCK, BLOCK);
	memset(wbuf, 0x5a, BLOCK);
	before = fds_open();
	arm(n);
	if (!strcmp(what, "lib"))
		lib_scenario(&lr, direct, shm, pipefd, efd);
	else
		px_scenario(&pr, direct, shm);
	if (strcmp(what, "lib"))
		px_after_idle(direct);
	hit = disarm();
	if (!strcmp(what, "posix"))
		px_works(shm);
	after = fds_open();
	/*
	 * The POSIX face on auto asks for a ring, and takes auto, native AIO,
	 * which needs none, if it found no memory; a ring refused its native
	 * side's eventfd goes without it (the descriptor limit's case).
	 */
	if (want >= 0 && after - before != want &&
	    !(after == before && !strcmp(test_backend(), "auto")) &&
	    !(after - before == want - 1 &&
	      (!strcmp(test_backend(), "uring") ||
	       (!strcmp(test_backend(), "auto") && !strcmp(what, "posix")))))
		complain("%d descriptors left behind (%d expected)", after - before, want);
	if (bad)
		return RUN_BAD;
	if (want < 0)
		return RUN_REFERENCE + after - before; /* the first run tells the rest */
	return hit ? RUN_OK : RUN_EXHAUSTED;
}

/* Runs the scenario in a child; its exit status, or -1 for a crash or a hang. */
static int spawn(const char *what, long n, int want)
{
	char nbuf[24], wbuf_[24];
	struct timespec start;
	int status;
	pid_t pid;

	snprintf(nbuf, sizeof(nbuf), "%ld", n);
	snprintf(wbuf_, sizeof(wbuf_), "%d", want);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		execl(self_path, self_path, "--run", what, nbuf, wbuf_, (char *)NULL);
		_exit(127);
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (ms_since(&start) > CHILD_LIMIT_S * 1000L) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			ck_abort_msg("%s, allocation %ld failing: hung", what, n);
		}
		usleep(2000);
	}
	ck_assert_msg(WIFEXITED(status), "%s, allocation %ld failing: killed by signal %d", what, n,
		      WTERMSIG(status));
	return WEXITSTATUS(status);
}

static void every_allocation(const char *what)
{
	int want = spawn(what, 0, -1) - RUN_REFERENCE;
	long n;

	ck_assert_msg(want >= 0 && want < 16, "%s with nothing failing: exit %d", what,
		      want + RUN_REFERENCE);
	for (n = 1; n < MAX_RUNS; n++) {
		int ret = spawn(what, n, want);

		ck_assert_msg(ret != RUN_BAD, "%s, allocation %ld failing: see above", what, n);
		ck_assert_msg(ret == RUN_OK || ret == RUN_EXHAUSTED, "%s, allocation %ld: exit %d",
			      what, n, ret);
		if (ret == RUN_EXHAUSTED)
			break;
	}
	ck_assert_msg(n > 1, "%s: no allocation seen", what);
	printf("%s: %ld allocations failed in turn, each cleanly\n", what, n - 1);
	fflush(stdout);
}

START_TEST(every_allocation_lib)
{
	every_allocation("lib");
}
END_TEST

START_TEST(every_allocation_posix)
{
	every_allocation("posix");
}
END_TEST

static Suite *alloc_suite(void)
{
	Suite *s = suite_create("alloc");
	TCase *tc = tcase_create("fail-nth");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, every_allocation_lib);
	tcase_add_test(tc, every_allocation_posix);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	self_path = argv[0];
	if (argc == 5 && !strcmp(argv[1], "--run"))
		return child_run(argv[2], atol(argv[3]), atoi(argv[4]));
	if (UNDER_ASAN || UNDER_TSAN) {
		printf("SKIP: alloc: failing allocations takes the program's own malloc, "
		       "which %s owns\n",
		       UNDER_ASAN ? "AddressSanitizer" : "ThreadSanitizer");
		return EXIT_SKIP;
	}
	return run_suite(alloc_suite(), "alloc");
}
