/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Seeded differential test against the real libaio: the same random
 * batches of valid and invalid iocbs go to libaio.so.1 (dlopen'd, so both
 * live in one process) and to this library, each on its own copy of a
 * file. Per iocb, the outcome must be the same: refused by io_submit with
 * the same error, or accepted and completed with the same res and res2;
 * reads must bring back the same bytes, and the two files must end equal.
 *
 * On the uring backend, the README lists errors that io_uring learns only
 * when the request runs: libaio's io_submit refusal with -EBADF (an fd
 * that is closed or not open for that direction), -EOPNOTSUPP (rw_flags a
 * file cannot honour) or -EPERM (a priority class that needs a
 * capability) may come as the event's res instead. Exactly those count as
 * equal; every other difference fails.
 *
 *   diff-libaio [-s SEED] [-n BATCHES] [-v]     (AIO_COMPAT_BACKEND picks the backend)
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "aio-compat.h"

#define MAX_BATCH 8
#define REGION (16 * 1024) /* each iocb of a batch has its own part of the file */
#define BUF 8192
#define FILE_SIZE (MAX_BATCH * REGION)
#define FAR (1LL << 40) /* a second set of regions, in a hole */
#define KERNEL_PTR ((void *)0xffff800000000000UL)

struct api {
	const char *name;
	int (*setup)(int, io_context_t *);
	int (*destroy)(io_context_t);
	int (*submit)(io_context_t, long, struct iocb **);
	int (*getevents)(io_context_t, long, long, struct io_event *, struct timespec *);
};

/* One side: an API, a context, its own file and buffers. */
struct side {
	struct api api;
	io_context_t ctx;
	int fd, ro_fd, wo_fd;
	int disk_fd; /* with -d: a second file, on another file system; else -1 */
	char *bufs[MAX_BATCH];
	struct iovec iov[MAX_BATCH][4];
	struct iocb cbs[MAX_BATCH];
	int submit_err[MAX_BATCH]; /* 0: accepted */
	long res[MAX_BATCH], res2[MAX_BATCH];
};

/* What the generator chose for one iocb, applied the same to both sides. */
struct choice {
	int opcode, fd_kind, ptr_kind, nr_vecs, flags_kind, prio_kind, reserved;
	long long offset;
	size_t nbytes;
	int rw_flags;
};

static unsigned long long rng;
static const char *disk_dir;
static int verbose, uring;
static int closed_fd;

static unsigned rand_u(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)(rng >> 33) % n;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void load_libaio(struct api *a)
{
	void *h = dlopen("libaio.so.1", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		fprintf(stderr, "diff-libaio: %s\n", dlerror());
		exit(77);
	}
	a->name = "libaio";
	*(void **)&a->setup = dlsym(h, "io_setup");
	*(void **)&a->destroy = dlsym(h, "io_destroy");
	*(void **)&a->submit = dlsym(h, "io_submit");
	*(void **)&a->getevents = dlsym(h, "io_getevents");
	if (!a->setup || !a->destroy || !a->submit || !a->getevents)
		die("dlsym");
}

static void load_compat(struct api *a)
{
	a->name = "aio-compat";
	a->setup = io_setup;
	a->destroy = io_destroy;
	a->submit = io_submit;
	a->getevents = io_getevents;
}

static int file_in(const char *dir)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/aio-compat-diff-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp");
	unlink(path);
	return fd;
}

static void side_init(struct side *s)
{
	char path[] = "/dev/shm/aio-compat-diff-XXXXXX";

	s->fd = mkstemp(path);
	if (s->fd < 0)
		die("mkstemp");
	s->ro_fd = open(path, O_RDONLY);
	s->wo_fd = open(path, O_WRONLY);
	if (s->ro_fd < 0 || s->wo_fd < 0)
		die("open");
	unlink(path);
	s->disk_fd = disk_dir ? file_in(disk_dir) : -1;
	for (int i = 0; i < MAX_BATCH; i++)
		if (posix_memalign((void **)&s->bufs[i], 4096, BUF))
			die("posix_memalign");
	s->ctx = NULL;
	if (s->api.setup(64, &s->ctx))
		die("io_setup");
}

static void choose(struct choice *c, int slot)
{
	static const int opcodes[] = { IO_CMD_PREAD,
				       IO_CMD_PWRITE,
				       IO_CMD_PREADV,
				       IO_CMD_PWRITEV,
				       IO_CMD_FSYNC,
				       IO_CMD_FDSYNC,
				       IO_CMD_NOOP,
				       4,
				       9,
				       42 };
	static const int rw_flags[] = { 0,	    0,	       0,	  RWF_DSYNC, RWF_SYNC,
					RWF_NOWAIT, RWF_HIPRI, RWF_DSYNC, 1 << 30,   -1 };

	memset(c, 0, sizeof(*c));
	c->opcode = opcodes[rand_u(8) ? rand_u(6) : rand_u(10)];
	c->fd_kind = rand_u(8) ? 0 : 1 + (int)rand_u(5);
	if (!c->fd_kind && disk_dir && rand_u(2))
		c->fd_kind = 6;
	c->ptr_kind = rand_u(10) ? 0 : 1 + (int)rand_u(3);
	c->nbytes = rand_u(10) ? rand_u(BUF + 1) : (size_t)1 << (20 + rand_u(44));
	if (c->nbytes > BUF && c->ptr_kind == 0)
		c->nbytes = BUF; /* a valid buffer is never overrun */
	switch (rand_u(12)) {
	case 0:
		c->offset = -1 - (long long)rand_u(4096);
		break;
	case 1:
		c->offset = FAR + (long long)slot * REGION;
		break;
	case 2:
		c->offset = LLONG_MAX - rand_u(4096);
		break;
	default:
		c->offset = (long long)slot * REGION + rand_u(REGION - BUF);
	}
	c->nr_vecs = rand_u(12) ? 1 + (int)rand_u(4) : (rand_u(2) ? 0 : -1);
	c->rw_flags = rand_u(3) ? 0 : rw_flags[rand_u(10)];
	c->flags_kind = rand_u(16) ? 0 : 1 + (int)rand_u(3);
	c->prio_kind = rand_u(16) ? 0 : 1 + (int)rand_u(3);
	c->reserved = rand_u(24) == 0;
}

static void apply(struct side *s, int slot, const struct choice *c)
{
	struct iocb *cb = &s->cbs[slot];
	char *buf = s->bufs[slot];
	void *ptr = buf;
	int fd;

	switch (c->fd_kind) {
	case 0:
		fd = s->fd;
		break;
	case 1:
		fd = -1;
		break;
	case 2:
		fd = closed_fd;
		break;
	case 3:
		fd = s->ro_fd;
		break;
	case 4:
		fd = s->wo_fd;
		break;
	case 6:
		fd = s->disk_fd;
		break;
	default:
		fd = INT_MAX;
		break;
	}
	switch (c->ptr_kind) {
	case 1:
		ptr = NULL;
		break;
	case 2:
		ptr = KERNEL_PTR;
		break;
	case 3:
		ptr = (void *)16;
		break;
	}
	memset(buf, 0xaa, BUF);
	memset(cb, 0, sizeof(*cb));
	switch (c->opcode) {
	case IO_CMD_PREAD:
		io_prep_pread(cb, fd, ptr, c->nbytes, c->offset);
		break;
	case IO_CMD_PWRITE:
		/* The bytes written depend on the slot, not on the side. */
		memset(buf, 'A' + slot, BUF);
		io_prep_pwrite(cb, fd, ptr, c->nbytes, c->offset);
		break;
	case IO_CMD_PREADV:
	case IO_CMD_PWRITEV: {
		int nr = c->nr_vecs > 0 ? c->nr_vecs : 0;
		size_t each = nr ? c->nbytes / (size_t)nr : 0;

		if (c->opcode == IO_CMD_PWRITEV)
			memset(buf, 'a' + slot, BUF);
		for (int i = 0; i < nr; i++)
			s->iov[slot][i] = (struct iovec){ buf + i * each, each };
		if (c->ptr_kind)
			s->iov[slot][0].iov_base = ptr;
		if (c->opcode == IO_CMD_PREADV)
			io_prep_preadv(cb, fd, s->iov[slot], nr, c->offset);
		else
			io_prep_pwritev(cb, fd, s->iov[slot], nr, c->offset);
		if (c->nr_vecs < 0)
			cb->u.v.nr = (unsigned long)-1;
		break;
	}
	case IO_CMD_FSYNC:
		io_prep_fsync(cb, fd);
		break;
	case IO_CMD_FDSYNC:
		io_prep_fdsync(cb, fd);
		break;
	default:
		io_prep_pread(cb, fd, ptr, c->nbytes, c->offset);
		cb->aio_lio_opcode = c->opcode;
	}
	cb->aio_rw_flags = c->rw_flags;
	if (c->flags_kind == 1)
		cb->u.c.flags |= 1 << 1; /* IOCB_FLAG_IOPRIO */
	else if (c->flags_kind == 2)
		cb->u.c.flags |= 1 << 5; /* unknown */
	if (c->prio_kind)
		cb->aio_reqprio = (short)(c->prio_kind == 1   ? (1 << 13) | 4 /* RT */
					  : c->prio_kind == 2 ? (2 << 13) | 7 /* BE */
							      : (7 << 13));   /* no such class */
	if (c->reserved)
		cb->u.c.__pad3 = 1; /* the kernel's aio_reserved2 */
	cb->data = (void *)(uintptr_t)(slot + 1);
}

/* Submits like a program that skips refused iocbs: one error per refusal. */
static void submit_batch(struct side *s, int n)
{
	struct iocb *list[MAX_BATCH];
	int at = 0;

	for (int i = 0; i < n; i++) {
		list[i] = &s->cbs[i];
		s->submit_err[i] = 0;
		s->res[i] = LONG_MIN;
	}
	while (at < n) {
		int ret = s->api.submit(s->ctx, n - at, list + at);

		if (ret < 0) {
			s->submit_err[at++] = ret;
		} else if (ret == 0) {
			fprintf(stderr, "%s: io_submit returned 0\n", s->api.name);
			exit(1);
		} else {
			at += ret;
		}
	}
}

static void reap_batch(struct side *s, int n)
{
	int want = 0, got = 0;

	for (int i = 0; i < n; i++)
		want += !s->submit_err[i];
	while (got < want) {
		struct io_event ev[MAX_BATCH];
		struct timespec ts = { 5, 0 };
		int ret = s->api.getevents(s->ctx, 1, want - got, ev, &ts);

		/*
		 * libaio's io_getevents sleeps in the kernel, which io_uring's
		 * task work, queued on this thread by the other side's
		 * requests, interrupts with no signal.
		 */
		if (ret == -EINTR && s->api.setup != io_setup)
			continue;
		if (ret <= 0) {
			fprintf(stderr, "%s: io_getevents returned %d with %d of %d reaped\n",
				s->api.name, ret, got, want);
			exit(1);
		}
		for (int i = 0; i < ret; i++) {
			long slot = (long)(uintptr_t)ev[i].data - 1;

			if (slot < 0 || slot >= n || ev[i].obj != &s->cbs[slot] ||
			    s->res[slot] != LONG_MIN) {
				fprintf(stderr, "%s: a stray or doubled event (slot %ld)\n",
					s->api.name, slot);
				exit(1);
			}
			s->res[slot] = (long)ev[i].res;
			s->res2[slot] = (long)ev[i].res2;
		}
		got += ret;
	}
}

/* The README's uring exceptions: an error moved from io_submit to the event. */
static int moved_to_event(int submit_err, long res)
{
	return uring &&
	       (submit_err == -EBADF || submit_err == -EOPNOTSUPP || submit_err == -EPERM) &&
	       res == submit_err;
}

static void describe(const struct iocb *cb)
{
	fprintf(stderr,
		"  opcode %d fd %d buf %p nbytes %lu offset %lld rw_flags %#x flags %#x "
		"prio %#x reserved2 %u\n",
		cb->aio_lio_opcode, cb->aio_fildes, cb->u.c.buf, cb->u.c.nbytes, cb->u.c.offset,
		cb->aio_rw_flags, cb->u.c.flags, (unsigned short)cb->aio_reqprio,
		(unsigned)cb->u.c.__pad3);
}

static int compare_batch(struct side *ref, struct side *lib, int n, long batch, int *ruled)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		int same = ref->submit_err[i] == lib->submit_err[i] &&
			   (ref->submit_err[i] ||
			    (ref->res[i] == lib->res[i] && ref->res2[i] == lib->res2[i]));

		if (!same && ref->submit_err[i] && !lib->submit_err[i] &&
		    moved_to_event(ref->submit_err[i], lib->res[i])) {
			(*ruled)++;
			continue;
		}
		if (same && !ref->submit_err[i] && ref->res[i] > 0 &&
		    (ref->cbs[i].aio_lio_opcode == IO_CMD_PREAD ||
		     ref->cbs[i].aio_lio_opcode == IO_CMD_PREADV) &&
		    memcmp(ref->bufs[i], lib->bufs[i], BUF))
			same = 0;
		if (!same || verbose) {
			fprintf(stderr, "batch %ld iocb %d: libaio %d/%ld, aio-compat %d/%ld%s\n",
				batch, i, ref->submit_err[i], ref->submit_err[i] ? 0 : ref->res[i],
				lib->submit_err[i], lib->submit_err[i] ? 0 : lib->res[i],
				same ? "" : "  DIFFERENT");
			describe(&lib->cbs[i]);
		}
		bad += !same;
	}
	return bad;
}

static int compare_file(int a, int b, long batch)
{
	struct stat sa, sb;
	static char ba[FILE_SIZE], bb[FILE_SIZE];

	if (fstat(a, &sa) || fstat(b, &sb))
		die("fstat");
	if (sa.st_size != sb.st_size) {
		fprintf(stderr, "batch %ld: file sizes %lld and %lld\n", batch,
			(long long)sa.st_size, (long long)sb.st_size);
		return 1;
	}
	if (pread(a, ba, FILE_SIZE, 0) < 0 || pread(b, bb, FILE_SIZE, 0) < 0)
		die("pread");
	if (memcmp(ba, bb, FILE_SIZE)) {
		fprintf(stderr, "batch %ld: file contents differ\n", batch);
		return 1;
	}
	/* Writes far out (1 TiB) are compared there too. */
	for (int i = 0; i < MAX_BATCH; i++) {
		off_t off = FAR + (off_t)i * REGION;

		if (pread(a, ba, REGION, off) != pread(b, bb, REGION, off) ||
		    memcmp(ba, bb, REGION)) {
			fprintf(stderr, "batch %ld: contents at 1 TiB differ\n", batch);
			return 1;
		}
	}
	return 0;
}

static int compare_files(struct side *a, struct side *b, long batch)
{
	return compare_file(a->fd, b->fd, batch) ||
	       (disk_dir && compare_file(a->disk_fd, b->disk_fd, batch));
}

/* The same bytes in a side's files, none of them extended by a write. */
static void files_fill(struct side *s, const char *init)
{
	int fds[2] = { s->fd, s->disk_fd };

	for (int i = 0; i < 2 && fds[i] >= 0; i++)
		if (pwrite(fds[i], init, FILE_SIZE, 0) != FILE_SIZE ||
		    ftruncate(fds[i], FAR + FILE_SIZE))
			die("pwrite");
}

int main(int argc, char **argv)
{
	static struct side ref, lib;
	unsigned long long seed = 1;
	long batches = 1000, failures = 0;
	int opt, ruled = 0;
	char *init = malloc(FILE_SIZE);

	while ((opt = getopt(argc, argv, "s:n:d:v")) != -1) {
		switch (opt) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			batches = atol(optarg);
			break;
		case 'd':
			disk_dir = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			fprintf(stderr, "usage: %s [-s SEED] [-n BATCHES] [-d DIR] [-v]\n",
				argv[0]);
			return 2;
		}
	}
	rng = seed;
	load_libaio(&ref.api);
	load_compat(&lib.api);
	side_init(&ref);
	side_init(&lib);
	uring = aio_compat_backend(lib.ctx) != AIO_COMPAT_NATIVE;
	closed_fd = dup(0);
	close(closed_fd);
	for (int i = 0; i < FILE_SIZE; i++)
		init[i] = (char)rand_u(256);
	/*
	 * Past every region already, so that no write extends the file: a
	 * read would otherwise see EOF or a hole depending on the order in
	 * which the kernel ran the batch.
	 */
	files_fill(&ref, init);
	files_fill(&lib, init);

	for (long b = 0; b < batches; b++) {
		int n = 1 + (int)rand_u(MAX_BATCH);

		for (int i = 0; i < n; i++) {
			struct choice c;

			choose(&c, i);
			apply(&ref, i, &c);
			apply(&lib, i, &c);
		}
		submit_batch(&ref, n);
		reap_batch(&ref, n);
		submit_batch(&lib, n);
		reap_batch(&lib, n);
		failures += compare_batch(&ref, &lib, n, b, &ruled);
		if (compare_files(&ref, &lib, b))
			failures++;
		if (failures > 20)
			break;
	}
	printf("diff-libaio: backend %s, seed %llu, %ld batches: %ld differences, "
	       "%d errors moved to the event by rule\n",
	       aio_compat_backend_name(aio_compat_backend(lib.ctx)), seed, batches, failures,
	       ruled);
	ref.api.destroy(ref.ctx);
	lib.api.destroy(lib.ctx);
	free(init);
	return failures ? 1 : 0;
}
