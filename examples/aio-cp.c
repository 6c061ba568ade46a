/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * aio-cp: copies a file with a fixed number of blocks in flight.
 *
 *	aio-cp [-d depth] [-b blocksize] [--direct] [--backend=auto|uring|native] SRC DST
 *
 * Each block is read into its own buffer; the read's callback submits the
 * write of the same buffer, and the write's callback frees the block for
 * the next read. io_queue_run runs the callbacks. At the end DST is cut to
 * SRC's length and synced with io_fsync.
 *
 * With --direct both files are opened with O_DIRECT, except for a last
 * block whose length is not a multiple of the page size: O_DIRECT cannot
 * write it, so it goes through a second, buffered descriptor.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_DIRECT */
#endif
#include <aio-compat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* <libaio.h> leaves this one commented out; libaio and this library export it. */
int io_queue_wait(io_context_t ctx, struct timespec *timeout);

#define DIRECT_ALIGN 4096
#define STALL_SECONDS 30

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct copy;

struct block {
	struct iocb iocb;
	struct copy *cp;
	long long offset; /* of the block, in SRC and DST alike */
	size_t len;
	size_t done; /* bytes of the current read or write */
	bool writing;
	struct block *next; /* on the free or retry list */
	char *buf;
};

struct copy {
	io_context_t ctx;
	const char *src_name, *dst_name;
	int src, dst;		/* O_DIRECT with --direct */
	int src_tail, dst_tail; /* buffered, for an unaligned last block */
	bool direct;
	size_t bs;
	unsigned depth;
	long long size;
	long long next_offset; /* of the next block to read */
	long long copied;
	unsigned inflight;
	unsigned long completions;
	struct block *blocks;
	struct block *free;
	struct block *retry; /* io_submit said EAGAIN in a callback */
	bool synced;
	int error;
};

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void io_error(struct copy *cp, const struct block *b, long res)
{
	int err = res < 0 ? (int)-res : EIO;

	if (cp->error)
		return;
	fprintf(stderr, "aio-cp: %s %s at offset %lld: %s\n", b->writing ? "write" : "read",
		b->writing ? cp->dst_name : cp->src_name, b->offset + (long long)b->done,
		res < 0	     ? strerror(err)
		: b->writing ? "wrote nothing"
			     : "unexpected end of file");
	cp->error = err;
}

static void block_free(struct copy *cp, struct block *b)
{
	b->next = cp->free;
	cp->free = b;
}

static void block_done(io_context_t ctx, struct iocb *iocb, long res, long res2);

/* Prepares the read or write of what is left of the block. */
static void block_prep(struct copy *cp, struct block *b)
{
	bool tail = cp->direct && b->len % DIRECT_ALIGN;
	char *buf = b->buf + b->done;
	size_t left = b->len - b->done;
	long long off = b->offset + (long long)b->done;

	if (b->writing)
		io_prep_pwrite(&b->iocb, tail ? cp->dst_tail : cp->dst, buf, left, off);
	else
		io_prep_pread(&b->iocb, tail ? cp->src_tail : cp->src, buf, left, off);
	io_set_callback(&b->iocb, block_done);
}

/* Submits one block's next step; a full queue puts it on the retry list. */
static void block_submit(struct copy *cp, struct block *b)
{
	struct iocb *iocb = &b->iocb;
	int ret;

	block_prep(cp, b);
	ret = io_submit(cp->ctx, 1, &iocb);
	if (ret == 1) {
		cp->inflight++;
	} else if (ret == -EAGAIN) {
		b->next = cp->retry;
		cp->retry = b;
	} else {
		io_error(cp, b, ret < 0 ? ret : -EAGAIN);
		block_free(cp, b);
	}
}

/*
 * A finished read turns into the write of the same buffer; a short
 * transfer goes on from where it stopped.
 */
static void block_done(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	struct block *b = container_of(iocb, struct block, iocb);
	struct copy *cp = b->cp;

	(void)ctx;
	(void)res2;
	cp->inflight--;
	cp->completions++;
	if (res <= 0 || cp->error) {
		if (!cp->error)
			io_error(cp, b, res);
		block_free(cp, b);
		return;
	}
	b->done += (size_t)res;
	if (b->done < b->len) {
		block_submit(cp, b);
	} else if (!b->writing) {
		b->writing = true;
		b->done = 0;
		block_submit(cp, b);
	} else {
		cp->copied += (long long)b->len;
		block_free(cp, b);
	}
}

/* Starts reads of the next blocks into every free buffer. */
static void fill(struct copy *cp)
{
	struct block *b;

	while ((b = cp->retry)) {
		cp->retry = b->next;
		block_submit(cp, b);
		if (cp->retry == b)
			return;
	}
	while (!cp->error && cp->next_offset < cp->size && (b = cp->free)) {
		long long left = cp->size - cp->next_offset;

		cp->free = b->next;
		b->offset = cp->next_offset;
		b->len = left < (long long)cp->bs ? (size_t)left : cp->bs;
		b->done = 0;
		b->writing = false;
		cp->next_offset += (long long)b->len;
		block_submit(cp, b);
		if (cp->retry)
			return;
	}
}

/* Waits for completions and runs their callbacks: every read, write and the sync. */
static int dispatch(struct copy *cp)
{
	unsigned long before = cp->completions;
	struct timespec t0;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		struct timespec ts = { 1, 0 };

		ret = io_queue_wait(cp->ctx, &ts);
		if (ret < 0 && ret != -ETIME && ret != -EINTR) {
			fprintf(stderr, "aio-cp: io_queue_wait: %s\n", strerror(-ret));
			return ret;
		}
		ret = io_queue_run(cp->ctx);
		if (ret < 0) {
			fprintf(stderr, "aio-cp: io_queue_run: %s\n", strerror(-ret));
			return ret;
		}
		if (cp->completions != before)
			return 0;
	} while (seconds_since(&t0) < STALL_SECONDS);
	fprintf(stderr, "aio-cp: no completion for %d s with %u in flight\n", STALL_SECONDS,
		cp->inflight);
	return -ETIMEDOUT;
}

static void sync_done(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	struct copy *cp = container_of(iocb, struct block, iocb)->cp;

	(void)ctx;
	(void)res2;
	cp->inflight--;
	cp->completions++;
	if (res != 0) {
		fprintf(stderr, "aio-cp: fsync %s: %s\n", cp->dst_name,
			strerror(res < 0 ? (int)-res : EIO));
		cp->error = res < 0 ? (int)-res : EIO;
	}
	cp->synced = true;
}

static int copy_sync(struct copy *cp)
{
	struct block *b = &cp->blocks[0];
	int ret;

	if (ftruncate(cp->dst, cp->size)) {
		fprintf(stderr, "aio-cp: truncate %s: %s\n", cp->dst_name, strerror(errno));
		return -errno;
	}
	ret = io_fsync(cp->ctx, &b->iocb, sync_done, cp->dst);
	if (ret != 1) {
		fprintf(stderr, "aio-cp: io_fsync %s: %s\n", cp->dst_name,
			strerror(ret < 0 ? -ret : EAGAIN));
		return ret < 0 ? ret : -EAGAIN;
	}
	cp->inflight++;
	while (!cp->synced) {
		ret = dispatch(cp);
		if (ret)
			return ret;
	}
	return cp->error ? -cp->error : 0;
}

static int copy_run(struct copy *cp)
{
	int ret = 0;

	for (;;) {
		fill(cp);
		if (!cp->inflight && (cp->error || (cp->next_offset >= cp->size && !cp->retry)))
			break;
		ret = dispatch(cp);
		if (ret) {
			cp->error = -ret;
			return ret;
		}
	}
	if (cp->error)
		return -cp->error;
	return copy_sync(cp);
}

static int open_fail(const char *name, const char *why)
{
	fprintf(stderr, "aio-cp: %s: %s\n", name, why);
	return -1;
}

static int open_files(struct copy *cp)
{
	int dflag = cp->direct ? O_DIRECT : 0;
	struct stat s, d;

	cp->src = open(cp->src_name, O_RDONLY | dflag);
	if (cp->src < 0 || fstat(cp->src, &s))
		return open_fail(cp->src_name, strerror(errno));
	if (!S_ISREG(s.st_mode))
		return open_fail(cp->src_name, "not a regular file");
	cp->size = s.st_size;
	/* Not O_TRUNC: copying a file onto itself must not empty it first. */
	cp->dst = open(cp->dst_name, O_WRONLY | O_CREAT | dflag, s.st_mode & 0777);
	if (cp->dst < 0 || fstat(cp->dst, &d))
		return open_fail(cp->dst_name, strerror(errno));
	if (s.st_dev == d.st_dev && s.st_ino == d.st_ino)
		return open_fail(cp->dst_name, "is the same file as the source");
	if (ftruncate(cp->dst, 0))
		return open_fail(cp->dst_name, strerror(errno));
	cp->src_tail = cp->src;
	cp->dst_tail = cp->dst;
	if (cp->direct && cp->size % DIRECT_ALIGN) {
		cp->src_tail = open(cp->src_name, O_RDONLY);
		if (cp->src_tail < 0)
			return open_fail(cp->src_name, strerror(errno));
		cp->dst_tail = open(cp->dst_name, O_WRONLY);
		if (cp->dst_tail < 0)
			return open_fail(cp->dst_name, strerror(errno));
	}
	return 0;
}

static int copy_init(struct copy *cp, int backend)
{
	int ret;

	cp->blocks = calloc(cp->depth, sizeof(*cp->blocks));
	for (unsigned i = 0; cp->blocks && i < cp->depth; i++) {
		struct block *b = &cp->blocks[i];

		if (posix_memalign((void **)&b->buf, DIRECT_ALIGN, cp->bs))
			b->buf = NULL;
		if (!b->buf) {
			fprintf(stderr, "aio-cp: %u buffers of %zu bytes: %s\n", cp->depth, cp->bs,
				strerror(ENOMEM));
			return -ENOMEM;
		}
		b->cp = cp;
		block_free(cp, b);
	}
	if (backend == AIO_COMPAT_AUTO)
		ret = io_queue_init((int)cp->depth, &cp->ctx);
	else
		ret = aio_compat_setup((int)cp->depth, &cp->ctx, backend);
	if (ret)
		fprintf(stderr, "aio-cp: io_setup(%u): %s\n", cp->depth, strerror(-ret));
	return ret;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: aio-cp [-d depth] [-b blocksize] [--direct] "
		     "[--backend=auto|uring|native] SRC DST\n"
		     "Copies SRC to DST with depth blocks in flight (default 32 of 128k).\n"
		     "blocksize takes a k or m suffix.\n");
}

static int parse_size(const char *arg, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	if (errno || *end || end == arg || *arg == '-' || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct copy *cp, int *backend)
{
	static const struct option longopts[] = {
		{ "depth", required_argument, NULL, 'd' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "direct", no_argument, NULL, 'D' },
		{ "backend", required_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	int c;

	while ((c = getopt_long(argc, argv, "d:b:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (parse_size(optarg, 4096, &v))
				return fprintf(stderr, "aio-cp: depth must be 1..4096\n"), -1;
			cp->depth = (unsigned)v;
			break;
		case 'b':
			if (parse_size(optarg, 64ul << 20, &v))
				return fprintf(stderr, "aio-cp: block size must be 1..64m\n"), -1;
			cp->bs = v;
			break;
		case 'D':
			cp->direct = true;
			break;
		case 'B':
			if (!strcmp(optarg, "auto"))
				*backend = AIO_COMPAT_AUTO;
			else if (!strcmp(optarg, "uring"))
				*backend = AIO_COMPAT_URING;
			else if (!strcmp(optarg, "native"))
				*backend = AIO_COMPAT_NATIVE;
			else
				return fprintf(stderr,
					       "aio-cp: --backend is auto, uring or native\n"),
				       -1;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_SUCCESS);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return -1;
	}
	if (cp->direct && cp->bs % DIRECT_ALIGN)
		return fprintf(stderr,
			       "aio-cp: --direct needs a block size that is a multiple of %d\n",
			       DIRECT_ALIGN),
		       -1;
	cp->src_name = argv[optind];
	cp->dst_name = argv[optind + 1];
	return 0;
}

static void report(const struct copy *cp, double secs)
{
	printf("aio-cp: %lld bytes in %.3f s: %.1f MB/s (depth %u, block %zu%s, backend %s)\n",
	       cp->size, secs, secs > 0 ? cp->size / secs / 1e6 : 0.0, cp->depth, cp->bs,
	       cp->direct ? ", O_DIRECT" : "",
	       aio_compat_backend_name(aio_compat_backend(cp->ctx)));
}

int main(int argc, char **argv)
{
	struct copy cp = { .depth = 32, .bs = 128 << 10, .src = -1, .dst = -1 };
	int backend = AIO_COMPAT_AUTO;
	struct timespec t0;
	int ret;

	if (parse_options(argc, argv, &cp, &backend))
		return 2;
	if (open_files(&cp))
		return 1;
	ret = copy_init(&cp, backend);
	if (!ret) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ret = copy_run(&cp);
		if (!ret)
			report(&cp, seconds_since(&t0));
		/* After a stall, blocks may still be in flight: keep their buffers. */
		if (!cp.inflight) {
			io_queue_release(cp.ctx);
			for (unsigned i = 0; i < cp.depth; i++)
				free(cp.blocks[i].buf);
			free(cp.blocks);
		}
	}
	return ret ? 1 : 0;
}
