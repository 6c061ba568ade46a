/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * aio-compat-bench: the same workloads through the library's two backends,
 * raw liburing, raw libaio (dlopen'd), glibc POSIX AIO and plain
 * synchronous calls. Shared declarations of tools/aio-compat-bench.c and
 * tools/bench-*.c.
 */
#ifndef AIO_COMPAT_BENCH_H
#define AIO_COMPAT_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_BS 4096u	/* every read and write is 4 KiB */
#define COMMIT_WRITES 8 /* appends per group commit */
#define DISPATCH_NR 64	/* completions per io_queue_run dispatch */

enum engine_kind {
	ENGINE_LIB,	 /* this library, through the libaio API */
	ENGINE_LIBAIO,	 /* libaio.so.1, dlopen'd */
	ENGINE_LIBURING, /* liburing, used directly */
	ENGINE_POSIX,	 /* glibc's <aio.h> */
	ENGINE_SYNC,	 /* pread, pwrite, fdatasync */
};

struct contender {
	const char *name;
	enum engine_kind kind;
	int backend;	  /* ENGINE_LIB: AIO_COMPAT_URING or _NATIVE */
	int fsync_order;  /* ENGINE_LIB: the honest-fsync rule */
	int drain;	  /* ENGINE_LIBURING: IOSQE_IO_DRAIN on syncs */
	int split_commit; /* wait for the writes, then submit the sync */
};

enum req_op {
	REQ_READ,
	REQ_WRITE,
	REQ_FDSYNC
};

struct req {
	enum req_op op;
	int fd;
	void *buf;
	off_t off;
};

struct done {
	int slot;
	long res;
};

struct engine;

/* Sets up a context of depth slots; returns 0 or a negative errno. */
int engine_open(struct engine **ep, const struct contender *c, int depth);
void engine_close(struct engine *e);
/* Queues r in slot; nothing reaches the kernel before engine_kick(). */
void engine_prep(struct engine *e, int slot, const struct req *r);
/*
 * Submits what is queued and reaps at least wait_nr completions, at most
 * max, into done. Returns the number reaped or a negative errno.
 */
int engine_kick(struct engine *e, int wait_nr, struct done *done, int max);
/* True when the contender can keep more than one read in flight. */
int engine_has_depth(const struct contender *c);
/* True when the contender has an io_queue_run-style dispatcher. */
int engine_has_dispatch(const struct contender *c);
/*
 * Submits the DISPATCH_NR reads of reqs, waits until all have completed
 * (on an eventfd, or until io_queue_wait has put them all in the ring),
 * then dispatches them to callbacks the way the interface offers
 * (io_queue_run, or a CQE loop on liburing); *ns is how long the dispatch
 * took. 0 or a negative errno.
 */
int engine_dispatch(struct engine *e, const struct req *reqs, uint64_t *ns, int counting,
		    int via_eventfd);
/* Why libaio.so.1 could not be loaded, or NULL when it was. */
const char *engine_libaio_error(void);

struct samples {
	uint64_t *ns;
	size_t n, cap;
};

struct budget {
	double seconds;	  /* stop after this long ... */
	uint64_t max_ops; /* ... or after this many operations (0: no limit) */
	int counting;	  /* mark the measured region for the syscall counter */
};

struct run_result {
	uint64_t ops;
	double seconds;
	struct samples lat; /* per-operation latency, ns */
};

enum workload_kind {
	WL_RANDREAD,
	WL_COMMIT,
	WL_DISPATCH
};

struct workload {
	const char *name;
	const char *what;
	enum workload_kind kind;
	int depth;
	int fd;			/* file the workload reads or appends to */
	size_t file_size;	/* readable bytes of fd */
	const char *ref;	/* contender whose numbers the ratio divides by */
	const char *ref_native; /* reference for the native backend, if other */
	int via_eventfd;	/* dispatch: learn of completions from an eventfd */
};

/* Runs workload w through contender c within budget b. 0 or -errno. */
int workload_run(const struct workload *w, const struct contender *c, const struct budget *b,
		 struct run_result *r);
void samples_free(struct samples *s);
/* The q-quantile (0..1) of s, sorting it; 0 when empty. */
uint64_t samples_quantile(struct samples *s, double q);
uint64_t now_ns(void);

/*
 * The syscall counter (bench-count.c). The measured region of a counted
 * run lies between mark_region(MARK_BEGIN) and mark_region(MARK_END): they
 * switch the perf counter on and off, or, under ptrace, are system calls
 * with numbers no kernel has (positive: the kernel reads the number as an
 * int), which the tracer sees.
 */
#define MARK_BEGIN 0x10c0001L
#define MARK_END 0x10c0002L
void mark_region(long which);

/* True when a perf counter on raw_syscalls:sys_enter can be opened. */
int counter_available(void);

/*
 * Runs workload w through c for max_ops operations in a forked child and
 * returns the system calls that all of its threads made inside the measured
 * region, per operation; negative errno on failure. traced: count with
 * ptrace instead of the perf counter, and name the busiest calls, per
 * operation, in detail.
 */
double count_syscalls(const struct workload *w, const struct contender *c, uint64_t max_ops,
		      int traced, char *detail, size_t detail_len);

/* One run of the benchmark: its options, workloads and results. */
struct options {
	double seconds; /* timed length of the whole run */
	int rounds;
	int quick;
	int json;
	int count;  /* the system call pass */
	int detail; /* name the system calls under each row */
	int ptrace; /* count with ptrace even when perf could */
	int commit_direct;
	size_t file_size;
	size_t shm_size;
	const char *dir;
	const char *shm_dir;
	const char *only;	/* comma-separated workload names */
	const char *contenders; /* comma-separated contender names */
};

struct cell {
	struct workload *w;
	const struct contender *c;
	int err;		   /* unavailable or failed: -errno */
	int failed;		   /* err came from a run, not from setting up */
	double *ops_s, *p50, *p99; /* one per round */
	int runs;
	double syscalls;	  /* per operation; < 0 when not counted */
	char syscall_detail[160]; /* the busiest calls, per operation */
	uint64_t count_ops;
};

struct bench {
	struct options o;
	struct workload wl[8];
	int nwl;
	struct cell *cells;
	int ncells;
	int shm_fd, disk_fd, direct_fd, commit_fd;
	double slice;
	int perf; /* count with the perf counter, not ptrace */
	int failed;
	double load_before; /* 1-minute load average at the start */
};

/* bench-report.c: the table, or JSON; both end with the targets. */
void report_text(const struct bench *b);
void report_json(const struct bench *b);
double load_average(void);

#endif
