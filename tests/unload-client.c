/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A plugin's life: the library is dlopen()ed, used until its threads run,
 * and dlclose()d, and the program carries on. Not linked with the library.
 * tests/test_unload runs it.
 *
 *	unload-client libaio|posix LIBDIR
 *
 * libaio: on each backend this kernel has, a context gets a write, a write
 * with an eventfd (the context's helper thread) and a write from a thread
 * that outlives the dlclose (its exit runs the library's thread-specific
 * data destructor); the context is destroyed and the library closed.
 * posix: aio_write and aio_suspend through libaio-compat-posix.so.1. Then
 * the program sleeps past the library's idle threads' linger, works a
 * little, and exits 0. Exit codes above 1 name the step that failed.
 */
#include <dlfcn.h>
#include <aio.h>
#include <errno.h>
#include <libaio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aio-compat.h"

#define BLOCK 512

struct libaio {
	void *handle;
	int (*setup)(int, io_context_t *, int);
	int (*submit)(io_context_t, long, struct iocb **);
	int (*getevents)(io_context_t, long, long, struct io_event *, struct timespec *);
	int (*destroy)(io_context_t);
};

static char libdir[4096];

static void *open_lib(const char *name)
{
	char path[4200];
	void *handle;

	snprintf(path, sizeof(path), "%s/%s", libdir, name);
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		fprintf(stderr, "unload-client: %s\n", dlerror());
	return handle;
}

static int open_libaio(struct libaio *l)
{
	l->handle = open_lib("libaio-compat.so.1");
	if (!l->handle)
		return -1;
	l->setup = (int (*)(int, io_context_t *, int))dlsym(l->handle, "aio_compat_setup");
	l->submit = (int (*)(io_context_t, long, struct iocb **))dlsym(l->handle, "io_submit");
	l->getevents = (int (*)(io_context_t, long, long, struct io_event *,
				struct timespec *))dlsym(l->handle, "io_getevents");
	l->destroy = (int (*)(io_context_t))dlsym(l->handle, "io_destroy");
	return l->setup && l->submit && l->getevents && l->destroy ? 0 : -1;
}

/* One write of fd at off, reaped; with an eventfd when efd >= 0. */
static int write_one(const struct libaio *l, io_context_t ctx, int fd, long long off, int efd)
{
	static char buf[BLOCK];
	struct iocb cb, *cbp = &cb;
	struct io_event ev;

	io_prep_pwrite(&cb, fd, buf, sizeof(buf), off);
	if (efd >= 0)
		io_set_eventfd(&cb, efd);
	if (l->submit(ctx, 1, &cbp) != 1)
		return -1;
	if (l->getevents(ctx, 1, 1, &ev, NULL) != 1 || ev.res != sizeof(buf))
		return -1;
	return 0;
}

/* A thread that writes, then waits to exit until the library is closed. */
struct writer {
	const struct libaio *l;
	io_context_t ctx;
	int fd, ret;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool wrote, may_exit;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	w->ret = write_one(w->l, w->ctx, w->fd, BLOCK * 2, -1);
	pthread_mutex_lock(&w->lock);
	w->wrote = true;
	pthread_cond_broadcast(&w->cond);
	while (!w->may_exit)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int libaio_round(int backend, int fd)
{
	struct writer w = { .fd = fd,
			    .lock = PTHREAD_MUTEX_INITIALIZER,
			    .cond = PTHREAD_COND_INITIALIZER };
	int efd = eventfd(0, EFD_CLOEXEC), ret;
	io_context_t ctx = NULL;
	struct libaio l;
	pthread_t thread;

	if (efd < 0 || open_libaio(&l))
		return 2;
	ret = l.setup(8, &ctx, backend);
	if (ret == -ENOSYS || ret == -EPERM) {
		printf("unload-client: backend %d unavailable (%s), skipped\n", backend,
		       strerror(-ret));
		dlclose(l.handle);
		close(efd);
		return 0;
	}
	if (ret)
		return 3;
	if (write_one(&l, ctx, fd, 0, -1) || write_one(&l, ctx, fd, BLOCK, efd))
		return 4;
	w.l = &l;
	w.ctx = ctx;
	if (pthread_create(&thread, NULL, writer_main, &w))
		return 5;
	pthread_mutex_lock(&w.lock);
	while (!w.wrote)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	if (w.ret || l.destroy(ctx))
		return 6;
	if (dlclose(l.handle))
		return 7;
	pthread_mutex_lock(&w.lock);
	w.may_exit = true;
	pthread_cond_broadcast(&w.cond);
	pthread_mutex_unlock(&w.lock);
	pthread_join(thread, NULL);
	close(efd);
	return 0;
}

static int posix_round(int fd)
{
	void *lib = open_lib("libaio-compat.so.1");
	void *posix = lib ? open_lib("libaio-compat-posix.so.1") : NULL;
	int (*write_fn)(struct aiocb *);
	int (*suspend_fn)(const struct aiocb *const[], int, const struct timespec *);
	int (*error_fn)(const struct aiocb *);
	ssize_t (*return_fn)(struct aiocb *);
	static char buf[BLOCK];
	const struct aiocb *list[1];
	struct aiocb cb;

	if (!posix)
		return 2;
	write_fn = (int (*)(struct aiocb *))dlsym(posix, "aio_write");
	suspend_fn = (int (*)(const struct aiocb *const[], int, const struct timespec *))dlsym(
	    posix, "aio_suspend");
	error_fn = (int (*)(const struct aiocb *))dlsym(posix, "aio_error");
	return_fn = (ssize_t(*)(struct aiocb *))dlsym(posix, "aio_return");
	if (!write_fn || !suspend_fn || !error_fn || !return_fn)
		return 3;
	memset(&cb, 0, sizeof(cb));
	cb.aio_fildes = fd;
	cb.aio_buf = buf;
	cb.aio_nbytes = sizeof(buf);
	cb.aio_sigevent.sigev_notify = SIGEV_NONE;
	if (write_fn(&cb))
		return 4;
	list[0] = &cb;
	while (error_fn(&cb) == EINPROGRESS)
		suspend_fn(list, 1, NULL);
	if (return_fn(&cb) != sizeof(buf))
		return 5;
	if (dlclose(posix) || dlclose(lib))
		return 7;
	return 0;
}

/* Past the linger of the library's idle threads, then some work. */
static int carry_on(int fd)
{
	const struct timespec pause = { 0, 300 * 1000000L };
	char buf[BLOCK];

	nanosleep(&pause, NULL);
	for (int i = 0; i < 64; i++) {
		void *p = malloc(1 << (i % 20));

		if (!p || pread(fd, buf, sizeof(buf), 0) != sizeof(buf))
			return 8;
		free(p);
	}
	return 0;
}

int main(int argc, char **argv)
{
	char path[] = "/dev/shm/aio-compat-unload-XXXXXX";
	int fd, ret;

	if (argc != 3 || strlen(argv[2]) >= sizeof(libdir)) {
		fprintf(stderr, "usage: unload-client libaio|posix LIBDIR\n");
		return 1;
	}
	strcpy(libdir, argv[2]);
	fd = mkstemp(path);
	if (fd < 0)
		return 1;
	unlink(path);
	if (!strcmp(argv[1], "posix")) {
		ret = posix_round(fd);
	} else {
		ret = libaio_round(AIO_COMPAT_NATIVE, fd);
		if (!ret)
			ret = libaio_round(AIO_COMPAT_URING, fd);
	}
	if (!ret)
		ret = carry_on(fd);
	close(fd);
	if (!ret)
		printf("unload-client %s: ok\n", argv[1]);
	return ret;
}
