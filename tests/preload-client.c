/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A plain libaio program, built against the system <libaio.h> and linked
 * with -laio, as programs in the wild are. tests/preload.sh runs it under
 * tools/aio-compat-run and checks that the library served it.
 *
 *	preload-client DIR libaio|uring|native|auto
 *
 * Writes blocks into a file in DIR, syncs them with io_fsync and a
 * callback run by io_queue_run, reads them back waiting on an eventfd and
 * reaping straight from the context's ring as QEMU's linux-aio does, and
 * checks every byte. The last argument is who must serve it: libaio
 * itself, or the library on the named backend. Prints "preload-client: ok"
 * and exits 0 when all is as expected.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aio-ring.h"

#define NBLOCKS 64
#define BLOCK 4096
#define BATCH 16

static int failures;

#define check(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("preload-client: FAIL %s:%d: ", __FILE__, __LINE__);                \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static char *blocks;
static int fsync_calls;
static long fsync_res = -1;

static unsigned char pattern(int block, int byte)
{
	return (unsigned char)(block * 31 + byte * 7 + 1);
}

static const char *library_of(void *fn)
{
	Dl_info info;
	const char *slash;

	if (!fn || !dladdr(fn, &info) || !info.dli_fname)
		return "?";
	slash = strrchr(info.dli_fname, '/');
	return slash ? slash + 1 : info.dli_fname;
}

/* Every entry point, of each symbol version, must come from the same place. */
static void check_binding(const char *expect)
{
	static const struct {
		const char *name;
		void *fn;
	} fns[] = {
		{ "io_queue_init@LIBAIO_0.1", (void *)io_queue_init },
		{ "io_submit@LIBAIO_0.1", (void *)io_submit },
		{ "io_queue_run@LIBAIO_0.1", (void *)io_queue_run },
		{ "io_setup@LIBAIO_0.4", (void *)io_setup },
		{ "io_getevents@LIBAIO_0.4", (void *)io_getevents },
		{ "io_destroy@LIBAIO_0.4", (void *)io_destroy },
		{ "io_pgetevents@LIBAIO_0.5", (void *)io_pgetevents },
	};
	const char *want = strcmp(expect, "libaio") ? "libaio-compat.so" : "libaio.so";

	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		const char *lib = library_of(fns[i].fn);

		printf("preload-client: %s from %s\n", fns[i].name, lib);
		check(!strncmp(lib, want, strlen(want)), "%s served by %s, expected %s*",
		      fns[i].name, lib, want);
	}
}

/*
 * The library's extension is found by name: this program is not linked
 * to it and must also run on libaio alone.
 */
static void check_backend(io_context_t ctx, const char *expect)
{
	int (*backend_of)(io_context_t) =
	    (int (*)(io_context_t))dlsym(RTLD_DEFAULT, "aio_compat_backend");
	const char *(*name_of)(int) =
	    (const char *(*)(int))dlsym(RTLD_DEFAULT, "aio_compat_backend_name");
	const char *name;

	if (!strcmp(expect, "libaio")) {
		check(!backend_of, "aio_compat_backend found without the library");
		printf("preload-client: backend libaio\n");
		return;
	}
	check(backend_of && name_of, "aio_compat_backend not found");
	if (!backend_of || !name_of)
		return;
	name = name_of(backend_of(ctx));
	printf("preload-client: backend %s\n", name ? name : "?");
	check(name && !strcmp(name, expect), "backend %s, expected %s", name ? name : "?", expect);
}

static void write_blocks(io_context_t ctx, int fd)
{
	struct iocb iocbs[NBLOCKS], *ptrs[BATCH];
	struct io_event ev[BATCH];

	for (int b = 0; b < NBLOCKS; b++)
		for (int i = 0; i < BLOCK; i++)
			blocks[b * BLOCK + i] = (char)pattern(b, i);
	for (int first = 0; first < NBLOCKS; first += BATCH) {
		struct timespec ts = { 10, 0 };
		int n;

		for (int k = 0; k < BATCH; k++) {
			int b = first + k;

			io_prep_pwrite(&iocbs[b], fd, blocks + b * BLOCK, BLOCK,
				       (long long)b * BLOCK);
			iocbs[b].data = &iocbs[b];
			ptrs[k] = &iocbs[b];
		}
		n = io_submit(ctx, BATCH, ptrs);
		check(n == BATCH, "io_submit of %d writes: %d", BATCH, n);
		if (n <= 0)
			return;
		n = io_getevents(ctx, n, BATCH, ev, &ts);
		check(n == BATCH, "io_getevents: %d, expected %d", n, BATCH);
		for (int k = 0; k < n; k++) {
			check((long)ev[k].res == BLOCK, "write res %ld", (long)ev[k].res);
			check(ev[k].data == ev[k].obj, "event data %p, obj %p", ev[k].data,
			      (void *)ev[k].obj);
		}
	}
}

static void on_fsync(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	(void)ctx;
	(void)iocb;
	(void)res2;
	fsync_calls++;
	fsync_res = res;
}

/* libaio's io_queue_run does not wait: poll it for up to 10 s. */
static void sync_blocks(io_context_t ctx, int fd)
{
	struct timespec pause = { 0, 1000000 };
	struct iocb iocb;
	int ret = io_fsync(ctx, &iocb, on_fsync, fd);

	check(ret == 1, "io_fsync: %d", ret);
	for (int i = 0; ret == 1 && !fsync_calls && i < 10000; i++) {
		ret = io_queue_run(ctx);
		check(ret == 0, "io_queue_run: %d", ret);
		if (!fsync_calls)
			nanosleep(&pause, NULL);
		ret = ret == 0 ? 1 : ret;
	}
	check(fsync_calls == 1 && fsync_res == 0, "fsync callback ran %d times, res %ld",
	      fsync_calls, fsync_res);
}

/* What QEMU's linux-aio does: no library call to learn of completions. */
static int reap_ring(io_context_t ctx, struct io_event *out, int max)
{
	struct aio_ring *ring = (struct aio_ring *)ctx;
	unsigned head = __atomic_load_n(&ring->head, __ATOMIC_RELAXED);
	unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
	int n = 0;

	while (head != tail && n < max) {
		out[n++] = ring->io_events[head];
		head = (head + 1) % ring->nr;
	}
	__atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
	return n;
}

static void read_blocks(io_context_t ctx, int fd, char *back)
{
	struct aio_ring *ring = (struct aio_ring *)ctx;
	struct iocb iocbs[NBLOCKS], *ptrs[NBLOCKS];
	struct io_event ev[NBLOCKS];
	int efd = eventfd(0, EFD_CLOEXEC);
	int done = 0, n;
	uint64_t total = 0;

	check(efd >= 0, "eventfd: %s", strerror(errno));
	check(ring->magic == AIO_RING_MAGIC, "ring magic %#x", ring->magic);
	if (efd < 0 || ring->magic != AIO_RING_MAGIC)
		return;
	for (int b = 0; b < NBLOCKS; b++) {
		io_prep_pread(&iocbs[b], fd, back + b * BLOCK, BLOCK, (long long)b * BLOCK);
		io_set_eventfd(&iocbs[b], efd);
		iocbs[b].data = &iocbs[b];
		ptrs[b] = &iocbs[b];
	}
	n = io_submit(ctx, NBLOCKS, ptrs);
	check(n == NBLOCKS, "io_submit of %d reads: %d", NBLOCKS, n);
	while (n > 0 && done < n) {
		uint64_t signalled;
		int got;

		alarm(10);
		if (read(efd, &signalled, sizeof(signalled)) != sizeof(signalled)) {
			check(0, "read eventfd: %s", strerror(errno));
			break;
		}
		alarm(0);
		total += signalled;
		got = reap_ring(ctx, ev, NBLOCKS);
		/*
		 * Every completion signalled is in the ring by then, or was taken
		 * on an earlier round: a completion is published before it is
		 * signalled, so it may be seen before its signal arrives.
		 */
		check(done + got >= (int)total, "eventfd signalled %llu in all, ring held %d",
		      (unsigned long long)total, done + got);
		for (int k = 0; k < got; k++) {
			check((long)ev[k].res == BLOCK, "read res %ld", (long)ev[k].res);
			check(ev[k].data == ev[k].obj, "event data %p, obj %p", ev[k].data,
			      (void *)ev[k].obj);
		}
		done += got;
	}
	close(efd);
	check(!memcmp(back, blocks, (size_t)NBLOCKS * BLOCK), "data read back differs");
}

/* One more read, reaped with io_pgetevents (LIBAIO_0.5). */
static void pgetevents_one(io_context_t ctx, int fd, char *back)
{
	struct timespec ts = { 10, 0 };
	struct iocb iocb, *ptr = &iocb;
	struct io_event ev;
	sigset_t none;
	int n;

	sigemptyset(&none);
	io_prep_pread(&iocb, fd, back, BLOCK, (NBLOCKS - 1) * BLOCK);
	n = io_submit(ctx, 1, &ptr);
	check(n == 1, "io_submit: %d", n);
	n = io_pgetevents(ctx, 1, 1, &ev, &ts, &none);
	check(n == 1 && (long)ev.res == BLOCK && ev.obj == &iocb, "io_pgetevents: %d, res %ld", n,
	      n == 1 ? (long)ev.res : 0L);
}

int main(int argc, char **argv)
{
	io_context_t ctx = NULL;
	char path[4096], *back = NULL;
	int fd, ret;

	if (argc != 3 || (strcmp(argv[2], "libaio") && strcmp(argv[2], "uring") &&
			  strcmp(argv[2], "native") && strcmp(argv[2], "auto"))) {
		fprintf(stderr, "usage: preload-client DIR libaio|uring|native|auto\n");
		return 2;
	}
	check_binding(argv[2]);
	snprintf(path, sizeof(path), "%s/preload-client-XXXXXX", argv[1]);
	fd = mkstemp(path);
	if (fd < 0) {
		printf("preload-client: FAIL %s: %s\n", path, strerror(errno));
		return 1;
	}
	unlink(path);
	if (posix_memalign((void **)&blocks, BLOCK, (size_t)NBLOCKS * BLOCK) ||
	    posix_memalign((void **)&back, BLOCK, (size_t)NBLOCKS * BLOCK))
		return 1;
	memset(back, 0, (size_t)NBLOCKS * BLOCK);

	ret = io_queue_init(NBLOCKS, &ctx);
	check(ret == 0, "io_queue_init: %d", ret);
	if (ret == 0) {
		check_backend(ctx, argv[2]);
		write_blocks(ctx, fd);
		sync_blocks(ctx, fd);
		read_blocks(ctx, fd, back);
		pgetevents_one(ctx, fd, back);
		ret = io_queue_release(ctx);
		check(ret == 0, "io_queue_release: %d", ret);
	}
	close(fd);
	printf("preload-client: %s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
