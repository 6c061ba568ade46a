/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * wal-demo: a write-ahead log with group commit.
 *
 * Appends fixed-size records (header: sequence number, payload length,
 * CRC32C of the payload) with io_prep_pwrite and, after every group of
 * records, queues an io_fdsync at once, without waiting for the writes:
 * the library issues a sync only after the writes queued before it on the
 * same descriptor have completed, so the group is durable when the sync's
 * callback runs. Completions are dispatched by io_queue_run.
 *
 * Afterwards the log is read back with plain read(2) and every record's
 * sequence number and CRC32C is checked.
 *
 *	wal-demo [--records N] [--group N] [--depth N]
 *		 [--backend uring|native] [--keep] [PATH]
 */
#include <aio-compat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* <libaio.h> leaves this one commented out; libaio and this library export it. */
int io_queue_wait(io_context_t ctx, struct timespec *timeout);

#define RECORD_SIZE 512
#define RECORD_MAGIC 0x57414c31u /* "WAL1" */
#define HEADER_SIZE 24
#define PAYLOAD_MAX (RECORD_SIZE - HEADER_SIZE)
#define DEFAULT_SECONDS 2.0
#define STALL_SECONDS 10

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct record {
	uint32_t magic;
	uint32_t len; /* payload bytes that the CRC covers */
	uint64_t seq;
	uint32_t crc; /* CRC32C of payload[0, len) */
	uint32_t reserved;
	uint8_t payload[PAYLOAD_MAX];
};
_Static_assert(sizeof(struct record) == RECORD_SIZE, "one record is one sector");

struct wal;

/* One iocb in flight: a record write, or a sync that commits a group. */
struct slot {
	struct iocb iocb;
	struct wal *wal;
	uint64_t first_seq; /* sync: the records it commits */
	uint64_t nrecords;
	bool writing; /* a record write in flight */
	struct slot *next_free;
	struct record *rec;
};

struct wal {
	io_context_t ctx;
	int fd;
	unsigned group;
	unsigned depth;
	uint64_t limit; /* records to append; 0: run for DEFAULT_SECONDS */
	struct timespec start;

	struct slot *slots;
	struct slot *free;
	struct iocb **batch;
	unsigned nbatch;
	unsigned inflight;

	uint64_t next_seq;    /* next record to queue */
	uint64_t group_start; /* first record not yet covered by a queued sync */
	uint64_t written;     /* records whose write completed */
	uint64_t committed;   /* records covered by a completed sync */
	uint64_t syncs;
	uint64_t completions; /* callbacks run, failed or not */
	bool stopping;
	int error;
};

static uint32_t crc32c_table[256];

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc32c_table[i] = c;
	}
}

static uint32_t crc32c(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t c = ~0u;

	while (len--)
		c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Payload bytes and length follow from the sequence number alone. */
static void record_fill(struct record *rec, uint64_t seq)
{
	uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;

	memset(rec, 0, sizeof(*rec));
	rec->magic = RECORD_MAGIC;
	rec->seq = seq;
	rec->len = 1 + (uint32_t)(seq * 37 % PAYLOAD_MAX);
	for (uint32_t i = 0; i < rec->len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		rec->payload[i] = (uint8_t)x;
	}
	rec->crc = crc32c(rec->payload, rec->len);
}

static void fail(struct wal *w, int err)
{
	if (!w->error)
		w->error = err;
	w->stopping = true;
}

static struct slot *slot_get(struct wal *w)
{
	struct slot *s = w->free;

	if (s)
		w->free = s->next_free;
	return s;
}

static void slot_put(struct wal *w, struct slot *s)
{
	s->next_free = w->free;
	w->free = s;
	w->inflight--;
}

static void write_done(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	struct slot *s = container_of(iocb, struct slot, iocb);
	struct wal *w = s->wal;

	(void)ctx;
	(void)res2;
	w->completions++;
	if (res != RECORD_SIZE) {
		if (!w->error)
			fprintf(stderr, "wal-demo: write of record %" PRIu64 ": %s\n", s->rec->seq,
				res < 0 ? strerror((int)-res) : "short write");
		fail(w, res < 0 ? (int)-res : EIO);
	} else {
		w->written++;
	}
	s->writing = false;
	slot_put(w, s);
}

/* A record write still in flight with a sequence number below end. */
static const struct slot *unwritten_before(const struct wal *w, uint64_t end)
{
	for (unsigned i = 0; i < w->depth; i++)
		if (w->slots[i].writing && w->slots[i].rec->seq < end)
			return &w->slots[i];
	return NULL;
}

static void sync_done(io_context_t ctx, struct iocb *iocb, long res, long res2)
{
	struct slot *s = container_of(iocb, struct slot, iocb);
	struct wal *w = s->wal;
	const struct slot *early;

	(void)ctx;
	(void)res2;
	w->completions++;
	if (res != 0) {
		if (!w->error)
			fprintf(stderr, "wal-demo: fdsync: %s\n",
				strerror(res < 0 ? (int)-res : EIO));
		fail(w, res < 0 ? (int)-res : EIO);
	} else if ((early = unwritten_before(w, s->first_seq + s->nrecords))) {
		/* The library's promise: a sync completes after the writes before it. */
		fprintf(stderr,
			"wal-demo: fdsync for records %" PRIu64 "..%" PRIu64
			" completed before the write of record %" PRIu64 "\n",
			s->first_seq, s->first_seq + s->nrecords - 1, early->rec->seq);
		fail(w, EIO);
	} else {
		w->committed += s->nrecords;
		w->syncs++;
	}
	slot_put(w, s);
}

/* Puts back the slots of a batch that io_submit did not take. */
static void unqueue(struct wal *w, unsigned from)
{
	for (unsigned i = from; i < w->nbatch; i++) {
		struct slot *s = container_of(w->batch[i], struct slot, iocb);

		s->writing = false;
		slot_put(w, s);
	}
	w->nbatch = 0;
}

static int flush_batch(struct wal *w)
{
	unsigned done = 0;

	while (done < w->nbatch) {
		int ret = io_submit(w->ctx, w->nbatch - done, w->batch + done);

		if (ret <= 0) {
			fprintf(stderr, "wal-demo: io_submit: %s\n",
				strerror(ret < 0 ? -ret : EAGAIN));
			unqueue(w, done);
			return ret < 0 ? ret : -EAGAIN;
		}
		done += (unsigned)ret;
	}
	w->nbatch = 0;
	return 0;
}

/* Commits every record queued since the last sync. */
static int queue_sync(struct wal *w, struct slot *s)
{
	int ret = flush_batch(w);

	if (!ret) {
		s->first_seq = w->group_start;
		s->nrecords = w->next_seq - w->group_start;
		ret = io_fdsync(w->ctx, &s->iocb, sync_done, w->fd);
		if (ret == 1) {
			w->group_start = w->next_seq;
			return 0;
		}
		fprintf(stderr, "wal-demo: io_fdsync: %s\n", strerror(ret < 0 ? -ret : EAGAIN));
		ret = ret < 0 ? ret : -EAGAIN;
	}
	slot_put(w, s);
	return ret;
}

/* Time is looked at only between groups, so that every group is whole. */
static bool more_records(struct wal *w)
{
	if (w->limit && w->next_seq >= w->limit)
		w->stopping = true;
	else if (!w->limit && w->next_seq == w->group_start &&
		 seconds_since(&w->start) >= DEFAULT_SECONDS)
		w->stopping = true;
	return !w->stopping;
}

static int queue_records(struct wal *w)
{
	struct slot *s;

	while ((s = slot_get(w))) {
		uint64_t pending = w->next_seq - w->group_start;
		int ret;

		w->inflight++;
		if (pending == w->group || (pending && !more_records(w))) {
			ret = queue_sync(w, s);
			if (ret)
				return ret;
			continue;
		}
		if (!more_records(w)) {
			slot_put(w, s);
			break;
		}
		record_fill(s->rec, w->next_seq);
		io_prep_pwrite(&s->iocb, w->fd, s->rec, RECORD_SIZE,
			       (long long)(w->next_seq * RECORD_SIZE));
		io_set_callback(&s->iocb, write_done);
		s->writing = true;
		w->batch[w->nbatch++] = &s->iocb;
		w->next_seq++;
	}
	return flush_batch(w);
}

/*
 * Waits for completions and runs their callbacks. The timeout is measured
 * here too: libaio's own io_queue_wait returns at once.
 */
static int dispatch(struct wal *w)
{
	uint64_t before = w->completions;
	struct timespec t0;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		struct timespec ts = { 1, 0 };

		ret = io_queue_wait(w->ctx, &ts);
		if (ret < 0 && ret != -ETIME && ret != -EINTR) {
			fprintf(stderr, "wal-demo: io_queue_wait: %s\n", strerror(-ret));
			return ret;
		}
		ret = io_queue_run(w->ctx);
		if (ret < 0) {
			fprintf(stderr, "wal-demo: io_queue_run: %s\n", strerror(-ret));
			return ret;
		}
		if (w->completions != before)
			return 0;
	} while (seconds_since(&t0) < STALL_SECONDS);
	fprintf(stderr, "wal-demo: no completion for %d s with %u in flight\n", STALL_SECONDS,
		w->inflight);
	return -ETIMEDOUT;
}

static int wal_append(struct wal *w)
{
	int ret = 0;

	clock_gettime(CLOCK_MONOTONIC, &w->start);
	while (!w->error) {
		ret = queue_records(w);
		if (ret) {
			fail(w, -ret);
			break;
		}
		if (!w->inflight)
			break;
		ret = dispatch(w);
		if (ret)
			return ret;
	}
	/* Drain whatever an error left in flight before the buffers go. */
	while (w->inflight) {
		ret = dispatch(w);
		if (ret)
			return ret;
	}
	return w->error ? -w->error : 0;
}

static int record_check(const struct record *rec, uint64_t seq)
{
	if (rec->magic != RECORD_MAGIC)
		return fprintf(stderr, "wal-demo: record %" PRIu64 ": bad magic %#x\n", seq,
			       rec->magic),
		       -1;
	if (rec->seq != seq)
		return fprintf(stderr, "wal-demo: record %" PRIu64 ": sequence %" PRIu64 "\n", seq,
			       rec->seq),
		       -1;
	if (rec->len == 0 || rec->len > PAYLOAD_MAX)
		return fprintf(stderr, "wal-demo: record %" PRIu64 ": length %u\n", seq, rec->len),
		       -1;
	if (crc32c(rec->payload, rec->len) != rec->crc)
		return fprintf(stderr, "wal-demo: record %" PRIu64 ": CRC32C mismatch\n", seq), -1;
	return 0;
}

/* Reads the log back with plain read(2), independent of the library. */
static int wal_verify(const char *path, uint64_t expected)
{
	static struct record recs[128];
	uint64_t seq = 0;
	struct stat st;
	int fd = open(path, O_RDONLY);
	int ret = 0;

	if (fd < 0 || fstat(fd, &st)) {
		fprintf(stderr, "wal-demo: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if ((uint64_t)st.st_size != expected * RECORD_SIZE) {
		fprintf(stderr, "wal-demo: log is %lld bytes, expected %" PRIu64 "\n",
			(long long)st.st_size, expected * RECORD_SIZE);
		ret = -1;
	}
	while (!ret) {
		ssize_t n = read(fd, recs, sizeof(recs));

		if (n < 0) {
			fprintf(stderr, "wal-demo: read %s: %s\n", path, strerror(errno));
			ret = -1;
		}
		if (n <= 0)
			break;
		if (n % RECORD_SIZE) {
			fprintf(stderr, "wal-demo: torn record at byte %" PRIu64 "\n",
				seq * RECORD_SIZE + (uint64_t)n);
			ret = -1;
		}
		for (ssize_t i = 0; i < n / RECORD_SIZE && !ret; i++, seq++)
			ret = record_check(&recs[i], seq);
	}
	close(fd);
	if (!ret && seq != expected) {
		fprintf(stderr, "wal-demo: read back %" PRIu64 " records, expected %" PRIu64 "\n",
			seq, expected);
		ret = -1;
	}
	return ret;
}

static int wal_init(struct wal *w, int backend)
{
	int ret;

	w->slots = calloc(w->depth, sizeof(*w->slots));
	w->batch = calloc(w->depth, sizeof(*w->batch));
	if (!w->slots || !w->batch)
		return -ENOMEM;
	for (unsigned i = 0; i < w->depth; i++) {
		struct slot *s = &w->slots[i];

		if (posix_memalign((void **)&s->rec, RECORD_SIZE, RECORD_SIZE))
			return -ENOMEM;
		s->wal = w;
		s->next_free = w->free;
		w->free = s;
	}
	if (backend == AIO_COMPAT_AUTO)
		ret = io_queue_init((int)w->depth, &w->ctx);
	else
		ret = aio_compat_setup((int)w->depth, &w->ctx, backend);
	if (ret)
		fprintf(stderr, "wal-demo: io_setup(%u): %s\n", w->depth, strerror(-ret));
	return ret;
}

static void wal_free(struct wal *w)
{
	for (unsigned i = 0; w->slots && i < w->depth; i++)
		free(w->slots[i].rec);
	free(w->slots);
	free(w->batch);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: wal-demo [--records N] [--group N] [--depth N]\n"
		"                [--backend uring|native] [--keep] [PATH]\n"
		"Appends %d-byte records to a log, syncing after every group, for %.0f s\n"
		"or N records, then reads the log back and checks it. Without PATH the\n"
		"log is a new file under /var/tmp, removed at exit unless --keep.\n",
		RECORD_SIZE, DEFAULT_SECONDS);
}

static int parse_count(const char *arg, const char *what, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || v == 0 || v > max || *arg == '-') {
		fprintf(stderr, "wal-demo: %s must be 1..%lu, not '%s'\n", what, max, arg);
		return -1;
	}
	*out = v;
	return 0;
}

struct options {
	unsigned long records, group, depth;
	int backend;
	bool keep;
	const char *path;
};

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "records", required_argument, NULL, 'n' },
		{ "group", required_argument, NULL, 'g' },
		{ "depth", required_argument, NULL, 'd' },
		{ "backend", required_argument, NULL, 'b' },
		{ "keep", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "n:g:d:b:kh", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_count(optarg, "--records", 1ul << 40, &o->records))
				return -1;
			break;
		case 'g':
			if (parse_count(optarg, "--group", 1ul << 20, &o->group))
				return -1;
			break;
		case 'd':
			if (parse_count(optarg, "--depth", 4096, &o->depth))
				return -1;
			break;
		case 'b':
			if (!strcmp(optarg, "uring")) {
				o->backend = AIO_COMPAT_URING;
			} else if (!strcmp(optarg, "native")) {
				o->backend = AIO_COMPAT_NATIVE;
			} else {
				fprintf(stderr, "wal-demo: --backend is uring or native\n");
				return -1;
			}
			break;
		case 'k':
			o->keep = true;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_SUCCESS);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return -1;
	}
	o->path = optind < argc ? argv[optind] : NULL;
	return 0;
}

static int open_log(struct options *o, char *path, size_t size)
{
	int fd;

	if (o->path) {
		snprintf(path, size, "%s", o->path);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	} else {
		snprintf(path, size, "/var/tmp/wal-demo-XXXXXX");
		fd = mkstemp(path);
	}
	if (fd < 0)
		fprintf(stderr, "wal-demo: %s: %s\n", path, strerror(errno));
	return fd;
}

static void report(struct wal *w, double secs)
{
	long held = aio_compat_held_syncs(w->ctx);

	printf("wal-demo: backend %s, group %u, depth %u\n",
	       aio_compat_backend_name(aio_compat_backend(w->ctx)), w->group, w->depth);
	printf("wal-demo: %" PRIu64 " records in %.2f s: %.0f records/s, %" PRIu64
	       " syncs (%.0f/s)",
	       w->committed, secs, w->committed / secs, w->syncs, w->syncs / secs);
	if (held >= 0)
		printf(", %ld held back for earlier writes", held);
	printf("\n");
}

int main(int argc, char **argv)
{
	struct options o = { .group = 16, .depth = 64, .backend = AIO_COMPAT_AUTO };
	struct wal w = { 0 };
	char path[4096];
	int ret;

	if (parse_options(argc, argv, &o))
		return 2;
	crc32c_init();
	w.fd = open_log(&o, path, sizeof(path));
	if (w.fd < 0)
		return 1;
	if (!o.path)
		printf("wal-demo: log %s (%s)\n", path,
		       o.keep ? "kept" : "removed at exit; --keep keeps it");
	fflush(stdout);
	w.group = (unsigned)o.group;
	w.depth = (unsigned)o.depth;
	w.limit = o.records;

	ret = wal_init(&w, o.backend);
	if (!ret) {
		ret = wal_append(&w);
		if (!ret)
			report(&w, seconds_since(&w.start));
		io_queue_release(w.ctx);
	}
	close(w.fd);
	wal_free(&w);
	if (!ret) {
		ret = wal_verify(path, w.committed);
		if (!ret)
			printf("wal-demo: verified %" PRIu64
			       " records: sequence and CRC32C intact\n",
			       w.committed);
	}
	if (!o.path && !o.keep)
		unlink(path);
	return ret ? 1 : 0;
}
