/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * aio-compat-bench: the library's two backends side by side with raw
 * liburing, raw libaio, glibc POSIX AIO and synchronous calls, on the same
 * files, alternating within one run. Reports medians of the rounds,
 * latency percentiles, system calls per operation and ratios to a
 * reference contender, as a table or as JSON. See aio-compat-bench(1).
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio-compat.h"

#define MIB (1024u * 1024u)

enum {
	ON_READ = 1,
	ON_COMMIT = 2,
	ON_DISPATCH = 4
};

struct entrant {
	struct contender c;
	unsigned int on; /* the workloads it runs */
};

static const struct entrant entrants[] = {
	{ { "lib-uring", ENGINE_LIB, AIO_COMPAT_URING, 1, 0, 0 }, ON_READ | ON_DISPATCH },
	{ { "lib-native", ENGINE_LIB, AIO_COMPAT_NATIVE, 1, 0, 0 }, ON_READ | ON_DISPATCH },
	{ { "lib-auto", ENGINE_LIB, AIO_COMPAT_AUTO, 1, 0, 0 }, ON_READ | ON_DISPATCH },
	{ { "liburing", ENGINE_LIBURING, 0, 0, 0, 0 }, ON_READ | ON_DISPATCH },
	{ { "libaio", ENGINE_LIBAIO, 0, 0, 0, 0 }, ON_READ | ON_DISPATCH },
	{ { "posix-aio", ENGINE_POSIX, 0, 0, 0, 0 }, ON_READ },
	{ { "lib-uring/ordered", ENGINE_LIB, AIO_COMPAT_URING, 1, 0, 0 }, ON_COMMIT },
	{ { "lib-uring/unordered", ENGINE_LIB, AIO_COMPAT_URING, 0, 0, 0 }, ON_COMMIT },
	{ { "lib-native/ordered", ENGINE_LIB, AIO_COMPAT_NATIVE, 1, 0, 0 }, ON_COMMIT },
	{ { "lib-native/unordered", ENGINE_LIB, AIO_COMPAT_NATIVE, 0, 0, 0 }, ON_COMMIT },
	{ { "lib-auto/ordered", ENGINE_LIB, AIO_COMPAT_AUTO, 1, 0, 0 }, ON_COMMIT },
	{ { "liburing/drain", ENGINE_LIBURING, 0, 0, 1, 0 }, ON_COMMIT },
	{ { "liburing/unordered", ENGINE_LIBURING, 0, 0, 0, 0 }, ON_COMMIT },
	{ { "libaio/wait", ENGINE_LIBAIO, 0, 0, 0, 1 }, ON_COMMIT },
	{ { "posix-aio/aio_fsync", ENGINE_POSIX, 0, 0, 0, 0 }, ON_COMMIT },
	{ { "sync", ENGINE_SYNC, 0, 0, 0, 0 }, ON_READ | ON_COMMIT },
};
#define NR_ENTRANTS (sizeof(entrants) / sizeof(entrants[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: aio-compat-bench [--json] [--quick] [--seconds S] [--rounds N]\n"
		   "         [--file-size MIB] [--shm-size MIB] [--dir DIR] [--shm-dir DIR]\n"
		   "         [--only WORKLOAD,...] [--contenders NAME,...] [--no-count]\n"
		   "         [--syscalls] [--ptrace] [--commit-direct]\n"
		   "BENCH_SECONDS sets the timed length when --seconds is not given.\n");
}

static int in_list(const char *list, const char *name)
{
	size_t len = strlen(name);
	const char *p = list;

	if (!list)
		return 1;
	while (*p) {
		size_t n = strcspn(p, ",");

		if (n == len && !strncmp(p, name, n))
			return 1;
		p += n + (p[n] == ',');
	}
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "file-size", required_argument, NULL, 'f' },
		{ "shm-size", required_argument, NULL, 'm' },
		{ "dir", required_argument, NULL, 'd' },
		{ "shm-dir", required_argument, NULL, 'D' },
		{ "only", required_argument, NULL, 'o' },
		{ "contenders", required_argument, NULL, 'c' },
		{ "no-count", no_argument, NULL, 'n' },
		{ "syscalls", no_argument, NULL, 'S' },
		{ "ptrace", no_argument, NULL, 'P' },
		{ "commit-direct", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *env = getenv("BENCH_SECONDS");
	long file_mib = -1, shm_mib = -1;
	int opt;

	*o = (struct options){
		.seconds = -1, .rounds = -1, .count = 1, .dir = "/var/tmp", .shm_dir = "/dev/shm"
	};
	while ((opt = getopt_long(argc, argv, "s:r:qjhn", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			o->seconds = strtod(optarg, NULL);
			break;
		case 'r':
			o->rounds = atoi(optarg);
			break;
		case 'q':
			o->quick = 1;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'f':
			file_mib = atol(optarg);
			break;
		case 'm':
			shm_mib = atol(optarg);
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'D':
			o->shm_dir = optarg;
			break;
		case 'o':
			o->only = optarg;
			break;
		case 'c':
			o->contenders = optarg;
			break;
		case 'n':
			o->count = 0;
			break;
		case 'S':
			o->detail = 1;
			break;
		case 'P':
			o->ptrace = 1;
			break;
		case 'C':
			o->commit_direct = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	if (o->seconds < 0 && env && *env)
		o->seconds = strtod(env, NULL);
	if (o->seconds < 0)
		o->seconds = o->quick ? 0.2 : 40;
	/* A fraction of a second is a smoke run: keep every file small too. */
	if (o->seconds < 1)
		o->quick = 1;
	if (o->rounds <= 0)
		o->rounds = o->quick ? 1 : 5;
	if (file_mib <= 0)
		file_mib = o->quick ? 16 : 512;
	if (shm_mib <= 0)
		shm_mib = o->quick ? 8 : 64;
	o->file_size = (size_t)file_mib * MIB;
	o->shm_size = (size_t)shm_mib * MIB;
	return 0;
}

/* A file in dir that vanishes with the process; -errno on failure. */
static int unnamed_file(const char *dir, int flags)
{
	char path[PATH_MAX];
	int fd = open(dir, O_TMPFILE | O_RDWR | flags, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd >= 0 ? fd : -errno;
	snprintf(path, sizeof(path), "%s/aio-compat-bench-XXXXXX", dir);
	fd = mkostemp(path, flags);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

/* An unnamed file of size bytes in dir, filled with data that is not zero. */
static int make_file(const char *dir, size_t size)
{
	char *chunk = malloc(MIB);
	size_t done, i;
	int fd, err;

	fd = unnamed_file(dir, 0);
	if (fd < 0 || !chunk) {
		free(chunk);
		return fd < 0 ? fd : -ENOMEM;
	}
	for (done = 0; done < size; done += MIB) {
		for (i = 0; i < MIB; i += 8)
			*(uint64_t *)(chunk + i) = (done + i) * 0x9e3779b97f4a7c15ull;
		if (pwrite(fd, chunk, MIB, (off_t)done) != (ssize_t)MIB) {
			err = errno ? -errno : -ENOSPC;
			close(fd);
			free(chunk);
			return err;
		}
	}
	free(chunk);
	fdatasync(fd);
	return fd;
}

static int reopen(int fd, int flags)
{
	char path[64];

	if (fd < 0)
		return fd;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fd = open(path, flags);
	return fd >= 0 ? fd : -errno;
}

static void add_workload(struct bench *b, struct workload w)
{
	if (in_list(b->o.only, w.name))
		b->wl[b->nwl++] = w;
}

static int setup_workloads(struct bench *b)
{
	const struct options *o = &b->o;
	static char what[4][128];

	snprintf(what[0], sizeof(what[0]), "4 KiB random reads, %s (tmpfs), depth 1, %zu MiB file",
		 o->shm_dir, o->shm_size / MIB);
	snprintf(what[1], sizeof(what[1]), "4 KiB random reads, %s (tmpfs), depth 32, %zu MiB file",
		 o->shm_dir, o->shm_size / MIB);
	snprintf(what[2], sizeof(what[2]),
		 "4 KiB random reads, %s, depth 32, buffered, %zu MiB file", o->dir,
		 o->file_size / MIB);
	snprintf(what[3], sizeof(what[3]),
		 "4 KiB random reads, %s, depth 32, O_DIRECT, %zu MiB file", o->dir,
		 o->file_size / MIB);
	add_workload(b, (struct workload){ .name = "tmpfs-qd1",
					   .what = what[0],
					   .kind = WL_RANDREAD,
					   .depth = 1,
					   .file_size = o->shm_size,
					   .ref = "liburing",
					   .ref_native = "libaio" });
	add_workload(b, (struct workload){ .name = "tmpfs-qd32",
					   .what = what[1],
					   .kind = WL_RANDREAD,
					   .depth = 32,
					   .file_size = o->shm_size,
					   .ref = "liburing",
					   .ref_native = "libaio" });
	add_workload(b, (struct workload){ .name = "disk-buffered",
					   .what = what[2],
					   .kind = WL_RANDREAD,
					   .depth = 32,
					   .file_size = o->file_size,
					   .ref = "liburing" });
	add_workload(b, (struct workload){ .name = "disk-direct",
					   .what = what[3],
					   .kind = WL_RANDREAD,
					   .depth = 32,
					   .file_size = o->file_size,
					   .ref = "liburing" });
	add_workload(b, (struct workload){
			    .name = "group-commit",
			    .what = o->commit_direct ? "8 O_DIRECT appends of 4 KiB, then fdatasync"
						     : "8 appends of 4 KiB, then fdatasync",
			    .kind = WL_COMMIT,
			    .depth = COMMIT_WRITES + 1,
			    .ref = "liburing/drain" });
	add_workload(b, (struct workload){
			    .name = "dispatch64",
			    .what = "io_queue_run of 64 completed tmpfs reads, all in the ring",
			    .kind = WL_DISPATCH,
			    .depth = DISPATCH_NR,
			    .file_size = o->shm_size,
			    .ref = "libaio" });
	add_workload(b, (struct workload){
			    .name = "dispatch64-eventfd",
			    .what = "io_queue_run of 64 completed tmpfs reads, told by an eventfd",
			    .kind = WL_DISPATCH,
			    .depth = DISPATCH_NR,
			    .file_size = o->shm_size,
			    .ref = "libaio",
			    .via_eventfd = 1 });
	return b->nwl ? 0 : -1;
}

static void file_error(const char *what, const char *dir, int err)
{
	fprintf(stderr, "aio-compat-bench: %s in %s: %s\n", what, dir, strerror(-err));
}

/*
 * A file this machine cannot give (no room, no O_DIRECT on that
 * filesystem) makes its workloads unavailable, not the run a failure.
 */
static void open_files(struct bench *b)
{
	int i, need_disk = 0, need_shm = 0, need_commit = 0;

	for (i = 0; i < b->nwl; i++) {
		need_shm |= !strncmp(b->wl[i].name, "tmpfs", 5) || b->wl[i].kind == WL_DISPATCH;
		need_disk |= !strncmp(b->wl[i].name, "disk", 4);
		need_commit |= b->wl[i].kind == WL_COMMIT;
	}
	b->shm_fd = need_shm ? make_file(b->o.shm_dir, b->o.shm_size) : -EBADF;
	if (b->shm_fd < 0 && need_shm)
		file_error("a file", b->o.shm_dir, b->shm_fd);
	b->disk_fd = need_disk ? make_file(b->o.dir, b->o.file_size) : -EBADF;
	if (b->disk_fd < 0 && need_disk)
		file_error("a file", b->o.dir, b->disk_fd);
	b->direct_fd = need_disk ? reopen(b->disk_fd, O_RDONLY | O_DIRECT) : -EBADF;
	if (b->direct_fd < 0 && b->disk_fd >= 0)
		file_error("O_DIRECT", b->o.dir, b->direct_fd);
	b->commit_fd =
	    need_commit ? unnamed_file(b->o.dir, b->o.commit_direct ? O_DIRECT : 0) : -EBADF;
	if (b->commit_fd < 0 && need_commit)
		file_error("a file", b->o.dir, b->commit_fd);
	for (i = 0; i < b->nwl; i++) {
		struct workload *w = &b->wl[i];

		if (w->kind == WL_COMMIT)
			w->fd = b->commit_fd;
		else if (!strcmp(w->name, "disk-buffered"))
			w->fd = b->disk_fd;
		else if (!strcmp(w->name, "disk-direct"))
			w->fd = b->direct_fd;
		else
			w->fd = b->shm_fd;
	}
}

static unsigned int workload_bit(const struct workload *w)
{
	return w->kind == WL_RANDREAD ? ON_READ : w->kind == WL_COMMIT ? ON_COMMIT : ON_DISPATCH;
}

/* Contenders an interface of this machine refuses are reported, not run. */
static int probe(const struct contender *c)
{
	struct engine *e;
	int ret;

	if (c->kind == ENGINE_LIBAIO && engine_libaio_error())
		return -ENOENT;
	ret = engine_open(&e, c, 1);
	if (!ret)
		engine_close(e);
	return ret;
}

static void setup_cells(struct bench *b)
{
	size_t k;
	int i;

	b->cells = calloc((size_t)b->nwl * NR_ENTRANTS, sizeof(*b->cells));
	for (i = 0; i < b->nwl; i++) {
		for (k = 0; k < NR_ENTRANTS; k++) {
			struct cell *cell = &b->cells[b->ncells];

			if (!(entrants[k].on & workload_bit(&b->wl[i])) ||
			    !in_list(b->o.contenders, entrants[k].c.name))
				continue;
			cell->w = &b->wl[i];
			cell->c = &entrants[k].c;
			cell->err = cell->w->fd < 0 ? cell->w->fd : probe(cell->c);
			cell->ops_s = calloc(b->o.rounds, sizeof(double));
			cell->p50 = calloc(b->o.rounds, sizeof(double));
			cell->p99 = calloc(b->o.rounds, sizeof(double));
			cell->syscalls = -1;
			b->ncells++;
		}
	}
}

/* Same starting state for every contender: cold cache, empty log. */
static void before_run(const struct workload *w)
{
	if (w->kind == WL_COMMIT) {
		if (ftruncate(w->fd, 0) == 0)
			fsync(w->fd);
	} else if (!strncmp(w->name, "disk", 4)) {
		posix_fadvise(w->fd, 0, 0, POSIX_FADV_DONTNEED);
	}
}

static uint64_t count_ops_for(const struct bench *b, const struct workload *w)
{
	int q = b->o.quick;

	switch (w->kind) {
	case WL_COMMIT:
		return q ? 3 : 40;
	case WL_DISPATCH:
		return q ? 3 : 40;
	case WL_RANDREAD:
		break;
	}
	if (!strncmp(w->name, "disk", 4))
		return q ? 64 : 1000;
	return q ? 100 : 4000;
}

/*
 * Before any timed run: the children fork from a process that has not yet
 * started glibc's AIO threads, whose bookkeeping a fork would copy.
 */
static void count_pass(struct bench *b)
{
	int i, traced = !b->perf;

	for (i = 0; i < b->ncells; i++) {
		struct cell *cell = &b->cells[i];

		if (cell->err)
			continue;
		cell->count_ops = count_ops_for(b, cell->w);
		before_run(cell->w);
		cell->syscalls = count_syscalls(cell->w, cell->c, cell->count_ops, traced,
						cell->syscall_detail, sizeof(cell->syscall_detail));
		if (cell->syscalls < 0 && !b->o.json)
			fprintf(stderr, "aio-compat-bench: counting %s on %s: %s\n", cell->c->name,
				cell->w->name, strerror((int)-cell->syscalls));
		/* Names come from a traced pass: the counter only counts. */
		if (b->o.detail && !traced && cell->syscalls >= 0) {
			before_run(cell->w);
			count_syscalls(cell->w, cell->c, cell->count_ops, 1, cell->syscall_detail,
				       sizeof(cell->syscall_detail));
		}
	}
}

static void run_cell(struct bench *b, struct cell *cell)
{
	struct budget bud = { .seconds = b->slice };
	struct run_result r;
	int ret;

	before_run(cell->w);
	ret = workload_run(cell->w, cell->c, &bud, &r);
	if (ret) {
		fprintf(stderr, "aio-compat-bench: %s on %s: %s\n", cell->c->name, cell->w->name,
			strerror(-ret));
		cell->err = ret;
		cell->failed = 1;
		b->failed = 1;
	} else if (r.seconds > 0) {
		cell->ops_s[cell->runs] = (double)r.ops / r.seconds;
		cell->p50[cell->runs] = (double)samples_quantile(&r.lat, 0.50) / 1e3;
		cell->p99[cell->runs] = (double)samples_quantile(&r.lat, 0.99) / 1e3;
		cell->runs++;
	}
	samples_free(&r.lat);
}

/* Rounds; in each, every workload's contenders in turn, starting one further on. */
static void timed_pass(struct bench *b)
{
	int round, i, j, first, n;

	for (round = 0; round < b->o.rounds; round++) {
		for (first = 0; first < b->ncells; first += n) {
			for (n = 0;
			     first + n < b->ncells && b->cells[first + n].w == b->cells[first].w;)
				n++;
			for (j = 0; j < n; j++) {
				i = first + (j + round) % n;
				if (!b->cells[i].err)
					run_cell(b, &b->cells[i]);
			}
		}
	}
}

static void on_alarm(int sig)
{
	static const char msg[] = "aio-compat-bench: no progress, giving up\n";

	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(1);
}

/* A library that loses a completion must fail make check, not hang it. */
static void watchdog(double seconds)
{
	signal(SIGALRM, on_alarm);
	alarm((unsigned int)(seconds * 3) + 300);
}

static void teardown(struct bench *b)
{
	int i;

	for (i = 0; i < b->ncells; i++) {
		free(b->cells[i].ops_s);
		free(b->cells[i].p50);
		free(b->cells[i].p99);
	}
	free(b->cells);
	if (b->shm_fd >= 0)
		close(b->shm_fd);
	if (b->disk_fd >= 0)
		close(b->disk_fd);
	if (b->direct_fd >= 0)
		close(b->direct_fd);
	if (b->commit_fd >= 0)
		close(b->commit_fd);
}

int main(int argc, char **argv)
{
	struct bench b = { .load_before = load_average() };
	int timed = 0, i;

	if (parse_options(argc, argv, &b.o))
		return 2;
	watchdog(b.o.seconds);
	if (setup_workloads(&b)) {
		fprintf(stderr, "aio-compat-bench: no workload named in --only\n");
		return 2;
	}
	if (!b.o.json)
		fprintf(stderr, "aio-compat-bench: preparing files\n");
	open_files(&b);
	setup_cells(&b);
	for (i = 0; i < b.ncells; i++)
		timed += !b.cells[i].err;
	b.slice = timed ? b.o.seconds / (b.o.rounds * timed) : 0;
	b.perf = !b.o.ptrace && counter_available();
	if (b.o.count) {
		if (!b.o.json)
			fprintf(stderr, "aio-compat-bench: counting system calls\n");
		count_pass(&b);
	}
	if (!b.o.json)
		fprintf(stderr, "aio-compat-bench: %d runs of %.3f s\n", timed * b.o.rounds,
			b.slice);
	timed_pass(&b);
	if (b.o.json)
		report_json(&b);
	else
		report_text(&b);
	teardown(&b);
	return b.failed ? 1 : 0;
}
