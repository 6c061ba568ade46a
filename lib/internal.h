/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the library's files share: the context, its requests, the ring the
 * program sees, and the table of operations each backend fills.
 */
#ifndef AIO_COMPAT_INTERNAL_H
#define AIO_COMPAT_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "aio-compat.h"
#include "shared.h"

#define AIO_EXPORT __attribute__((visibility("default")))

/*
 * ThreadSanitizer cannot see the kernel order a submission before its
 * completion: a native request's iocb is released to it at io_submit and
 * acquired where the library hands its event out. Nothing elsewhere.
 */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define __SANITIZE_THREAD__ 1
#endif
#endif
#ifdef __SANITIZE_THREAD__
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tsan_acquire(p) __tsan_acquire((void *)(p))
#define tsan_release(p) __tsan_release((void *)(p))
#else
#define tsan_acquire(p) ((void)(p))
#define tsan_release(p) ((void)(p))
#endif

/*
 * The kernel maps a ring (io_uring's, native AIO's) where an earlier one
 * was unmapped, by system calls ThreadSanitizer does not see (liburing
 * makes its own): each mapping is ordered after every unmapping before
 * it, which is announced before the unmapping.
 */
extern char ring_mappings;
#define ring_mapped() tsan_acquire(&ring_mappings)
#define ring_unmapping() tsan_release(&ring_mappings)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* The kernel's completion ring format, which programs read directly. */
#define AIO_RING_MAGIC 0xa10a10a1
#define AIO_RING_COMPAT_FEATURES 1

struct aio_ring {
	unsigned id;
	unsigned nr;
	unsigned head;
	unsigned tail;
	unsigned magic;
	unsigned compat_features;
	unsigned incompat_features;
	unsigned header_length;
	struct io_event io_events[];
};

/* The most one read or write moves, as the kernel clamps it. */
#define MAX_RW_COUNT (0x7fffffffu & ~4095u)

/* The kernel's ABI bits of struct iocb that <libaio.h> leaves unnamed. */
#define IOCB_FLAG_RESFD (1 << 0)
#define IOCB_FLAG_IOPRIO (1 << 1)

/*
 * The first address past user space: the kernel answers EFAULT for
 * anything at or above it, and for anything below the lowest mappable page.
 */
#if defined(__x86_64__)
#define USER_ADDR_END 0x00007ffffffff000UL
#else
#define USER_ADDR_END (1UL << (sizeof(long) * 8 - 1))
#endif
#define USER_ADDR_MIN 4096UL

static inline bool bad_user_ptr(const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	return a < USER_ADDR_MIN || a >= USER_ADDR_END || len > USER_ADDR_END - a;
}

/* A range the kernel would refuse before touching it (access_ok). */
static inline bool bad_user_range(const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	return a > USER_ADDR_END || len > USER_ADDR_END - a;
}

/*
 * libaio's calls are system calls, none a cancellation point: a thread
 * cancelled while it waits in io_getevents leaves the call as it would
 * have, and the cancel acts at its next cancellation point. The library's
 * waits, and the calls it makes that glibc makes cancellation points
 * (ppoll, read, write, close, pthread_join), run with cancellation off,
 * so that no cancel leaves a lock held, a reaper counted or a context
 * pinned. Off and on again, a pending cancel stays pending.
 */
static inline int cancel_disable(void)
{
	int state;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
	return state;
}

static inline void cancel_restore(int state)
{
	pthread_setcancelstate(state, NULL);
}

/* Closes a descriptor of the library's own, wherever a cancel is pending. */
static inline void close_nocancel(int fd)
{
	int state = cancel_disable();

	close(fd);
	cancel_restore(state);
}

/* One submitted iocb, from io_submit until its event reaches the ring. */
struct req {
	struct iocb kiocb;	 /* the caller's iocb as submitted, checked */
	struct iocb *obj;	 /* the caller's iocb, reported in the event */
	struct req *next;	 /* free list, or the syncs closing an epoch */
	struct req *hnext;	 /* native: the writes in flight, by iocb */
	struct submitter *owner; /* the thread whose exit waits for it (exit.c) */
	int resfd;		 /* the library's hold of the caller's eventfd, or -1 */
	int efd_slot;		 /* and its slot in ctx->efd.holds */
	uint32_t epoch;		 /* writes: the epoch of their fd they joined */
	uint32_t poll_seq;	 /* polls: the order they were submitted in */
	uint32_t round;		 /* cold reads: the submission that sent them */
	int prog_fd;		 /* cold reads, held syncs: the program's number for the file */
	int res;		 /* cold reads: io_uring's result */
	bool fetched;		 /* a cold read (prefetch.c) */
	bool held;		 /* a sync waiting for earlier writes */
	bool owns_fd;		 /* kiocb.aio_fildes is the library's own duplicate */
	bool tracked;		 /* a poll, an eventfd or an ordered write: counted */
	bool cancelled;		 /* polls: io_cancel or io_destroy asked its removal */
};

static inline int req_fd(const struct req *req)
{
	return req->kiocb.aio_fildes;
}

static inline int req_opcode(const struct req *req)
{
	return req->kiocb.aio_lio_opcode;
}

static inline bool opcode_is_write(int op)
{
	return op == IO_CMD_PWRITE || op == IO_CMD_PWRITEV;
}

static inline bool opcode_is_sync(int op)
{
	return op == IO_CMD_FSYNC || op == IO_CMD_FDSYNC;
}

/* A request the engine finished, with the kernel's result. */
struct completion {
	struct req *req;
	long res;
	long res2;
};

struct aio_ctx;
struct exit_waiter;

/*
 * What a context does at each call, after its entry point has checked the
 * arguments and pinned it. A native context's handle is the kernel's own
 * context, and its calls the kernel's with the fsync rule added
 * (native.c); the others keep the library's ring, fed by an engine
 * (ring_calls: context.c, submit.c, events.c, queue.c).
 */
struct ctx_calls {
	int (*setup)(struct aio_ctx *ctx, unsigned nr, int flags);
	/* Frees what setup made, of a context set up or half set up. */
	void (*release)(struct aio_ctx *ctx);
	/* io_destroy: dead at once for every other call; 0 once all finished. */
	int (*destroy)(struct aio_ctx *ctx);
	long (*submit)(struct aio_ctx *ctx, long nr, struct iocb **ios);
	long (*getevents)(struct aio_ctx *ctx, long min_nr, long nr, struct io_event *events,
			  const struct timespec *timeout, const sigset_t *sigmask);
	/* Takes up to nr events without waiting (io_queue_run). */
	long (*take)(struct aio_ctx *ctx, struct io_event *ev, long nr);
	int (*queue_wait)(struct aio_ctx *ctx, const struct timespec *deadline);
	int (*cancel)(struct aio_ctx *ctx, struct iocb *iocb);
};

extern const struct ctx_calls native_calls;
extern const struct ctx_calls ring_calls;

/*
 * What feeds the library's ring; ae_epoll.c-sized, one file each. An
 * engine keeps its state in ctx->priv and reads the requests it is
 * handed; it writes no field of the context and calls nothing of the
 * core: what it has to say, it returns.
 */
struct engine {
	int kind; /* AIO_COMPAT_URING or AIO_COMPAT_NATIVE */
	const struct ctx_calls *calls;
	/* Its I/O dies with the thread that submitted it (exit.c). */
	bool thread_bound;
	/* Sets up the kernel side for ctx->max_outstanding requests, for a
	 * single issuer where *single_issuer asks it and the kernel can:
	 * *single_issuer says which. */
	int (*setup)(struct aio_ctx *ctx, bool *single_issuer);
	void (*teardown)(struct aio_ctx *ctx);
	/* Hands reqs to the kernel: how many it took, or -errno for none. */
	int (*submit)(struct aio_ctx *ctx, struct req **reqs, int n);
	/* Takes up to max finished requests; never blocks. */
	int (*reap)(struct aio_ctx *ctx, struct completion *out, int max);
	/* Whether reap would find anything. */
	bool (*ready)(struct aio_ctx *ctx);
	/* Has the kernel post the completions a single issuer's ring keeps
	 * for its thread until it asks. */
	void (*run_deferred)(struct aio_ctx *ctx);
	/* Before the last look: whatever completes after it makes wait_fd ready. */
	void (*arm)(struct aio_ctx *ctx);
	/* Polls readable when completions may be waiting. */
	int (*wait_fd)(struct aio_ctx *ctx);
	/* Cancels a request in flight: -EINPROGRESS, or the kernel's error. */
	int (*cancel)(struct aio_ctx *ctx, struct req *req);
	/* Sleeps in the kernel for a completion, one thread at a time, on a
	 * single issuer's ring; 0, or -EINTR for a signal. */
	int (*wait)(struct aio_ctx *ctx, const struct timespec *timeout, const sigset_t *sigmask);
	/* Makes wait_fd ready, for a completion of its own that reap takes
	 * and reports to no one; a no-op while one is not yet taken. */
	void (*wake)(struct aio_ctx *ctx);
};

/* A native context has none: the kernel's context is the whole backend. */
extern const struct engine native_engine;
extern const struct engine uring_engine;
extern const struct engine auto_engine;

/*
 * The kernel's syscall, past the library's own syscall(2) (syscall.c),
 * which would hand a native handle back to the library.
 */
long kernel_syscall(long nr, long a, long b, long c, long d, long e, long f);

/*
 * exit.c: the threads waiting at their exit for their requests. Each
 * publish that posted events makes them due to look again, until each
 * has looked.
 */
int submitter_claim(struct req **reqs, int n);
void exit_waiters_note(struct aio_ctx *ctx);
bool exit_waiters_due(const struct aio_ctx *ctx);

/* Per fd of a context: the writes in flight, by epoch (see order.c). */
struct fd_epoch {
	uint32_t writes;
	struct req *syncs;
};

struct fd_order {
	uint32_t first; /* oldest epoch a sync still waits on */
	uint32_t last;	/* the epoch new writes join */
	uint32_t mask;	/* epochs[] has mask + 1 slots */
	struct fd_epoch *epochs;
};

#define RESFD_BATCH 8

struct resfd_signal {
	int fd;
	uint64_t count;
};

/* A duplicate of an eventfd the program named (eventfd.c). */
struct eventfd_hold {
	int prog;	/* the program's number for it, or -1 once retired */
	int fd;		/* the duplicate, or -1 for a free slot */
	unsigned users; /* requests in flight that name it */
};

struct aio_ctx {
	struct aio_ring *ring; /* the handle the program holds */
	size_t ring_bytes;
	unsigned ring_nr;
	unsigned tail;		  /* where the next event goes */
	unsigned max_outstanding; /* in flight plus unreaped, at most */
	unsigned live;		  /* requests taken from reqs[] */
	unsigned polls;		  /* of which polls */
	uint32_t poll_seq;	  /* the next poll's */
	struct req *reqs;
	struct req *free_reqs;
	const struct ctx_calls *calls;
	const struct engine *engine;
	void *priv;	      /* the engine's own state */
	pthread_mutex_t lock; /* everything below, and the engine */
	unsigned reapers;     /* threads waiting in io_getevents, io_queue_wait */
	bool destroy_waiting; /* io_destroy, for what is in flight */
	/* Threads at their exit, waiting for their requests (exit.c). */
	struct exit_waiter *exit_waiters;
	bool dead;
	unsigned fork_gen;
	unsigned slot; /* in the registry */

	/*
	 * Only this thread may call in (AIO_COMPAT_SINGLE_ISSUER). Its
	 * reapers sleep in engine->wait, not on wait_fd, which not every
	 * completion wakes; one at a time, and none reaps meanwhile.
	 */
	bool single_issuer;
	pthread_t issuer;
	bool engine_waiting;

	/* What native AIO took on each fd (judge.c): FD_* bits by fd. */
	struct {
		uint8_t *kind;
		unsigned nr;
		time_t at; /* the second the table was last emptied */
	} judged;

	/* The eventfds requests name (eventfd.c), and their signals (events.c). */
	struct {
		/* Of events just posted, signalled once the lock is out. */
		struct resfd_signal pending[RESFD_BATCH];
		unsigned nr_pending;
		_Atomic unsigned signalling; /* threads between unlock and those writes */
		struct eventfd_hold *holds;  /* held by reference */
		unsigned nr_holds;
		unsigned retired;
		pid_t pid; /* for kcmp: a context is its process's alone */
	} efd;

	/* How the program takes its events (events.c). */
	struct {
		bool taken; /* it called in for events: no first take to wait for */
		/* The head as the library last left it; if the program moved
		 * it, it reads the ring itself, and the helper publishes
		 * eagerly. */
		unsigned lib_head;
		bool direct;
	} reader;

	/*
	 * The thread that publishes as completions come, for programs that
	 * wait on eventfds or read the ring themselves, and for every program
	 * until it first takes events through the library (events.c).
	 */
	struct {
		unsigned needs; /* live RESFD requests */
		bool running;	/* until its last hold of the lock */
		bool awake;	/* has work: not lingering */
		bool waiting;	/* asleep for completions */
		bool idle;	/* and lingering: woken for its stop alone */
		bool stop;
		pthread_cond_t cond;
	} helper;

	/* The honest-fsync rule (order.c). */
	struct {
		bool on;
		long held; /* syncs held */
		struct fd_order *fds;
		unsigned nr_fds;
	} order;
};

/* A single-issuer ring answers only the thread that made it. */
static inline bool ctx_foreign(const struct aio_ctx *ctx)
{
	return unlikely(ctx->single_issuer) && !pthread_equal(ctx->issuer, pthread_self());
}

/* registry.c: context handles are looked up, never dereferenced blindly. */
struct aio_ctx *ctx_get(io_context_t handle);
void ctx_put(struct aio_ctx *ctx);
int registry_add(struct aio_ctx *ctx);
void registry_retire(struct aio_ctx *ctx);
void registry_remove(struct aio_ctx *ctx);
void registry_each(void (*fn)(struct aio_ctx *ctx, void *arg), void *arg);
unsigned fork_generation(void);

/* context.c */
int backend_probe_uring(void);

/* events.c: the library's ring, and the waiting for it. */
long ring_getevents(struct aio_ctx *ctx, long min_nr, long nr, struct io_event *events,
		    const struct timespec *timeout, const sigset_t *sigmask);
void ring_post(struct aio_ctx *ctx, struct req *req, long res, long res2);
unsigned publish(struct aio_ctx *ctx);
void resfd_flush(struct aio_ctx *ctx);
unsigned ring_used(const struct aio_ctx *ctx);
long take_events(struct aio_ctx *ctx, struct io_event *out, long nr);
int wait_for_events(struct aio_ctx *ctx, const struct timespec *deadline, const sigset_t *sigmask,
		    bool reaper);
void ctx_unlock(struct aio_ctx *ctx);
void sleepers_wake(struct aio_ctx *ctx);
void reapers_recheck(struct aio_ctx *ctx);
void helper_need(struct aio_ctx *ctx);
int helper_ensure(struct aio_ctx *ctx);
void helper_check(struct aio_ctx *ctx);
void helper_done(struct aio_ctx *ctx);
void helper_stop(struct aio_ctx *ctx);

/*
 * fault.c: copies of program memory that answer -EFAULT, as the kernel's
 * do, for a pointer it would have checked (the guard is set up at the
 * first io_setup).
 */
void fault_guard_install(void);
int copy_from_prog(void *dst, const void *src, size_t len);
int copy_to_prog(void *dst, const void *src, size_t len);
/*
 * io_submit's copy of ios[0..n) and the iocbs they point at, as the
 * kernel copies them, under one guard: how many were copied before the
 * first the kernel would answer -EFAULT for.
 */
long copy_iocbs_from_prog(struct iocb *const *ios, long n, struct iocb **objs, struct iocb *copies);
/* How many io_submit copies at a time, on its stack. */
#define IOCB_COPY_BATCH 8

/* submit.c */
long ring_submit(struct aio_ctx *ctx, long nr, struct iocb **ios);
int ring_cancel(struct aio_ctx *ctx, struct iocb *iocb);
void issue_released(struct aio_ctx *ctx, struct req *syncs);
int check_sync(const struct iocb *io);

/* judge.c: on io_uring, what native AIO would refuse at submission. */
int kernel_refusal(const struct iocb *io, int ours);
unsigned rw_flags_unknown(unsigned flags, int fd);
int fd_judge(struct aio_ctx *ctx, const struct iocb *io);
void fd_event(struct aio_ctx *ctx, int fd, long res);
void fd_forget(struct aio_ctx *ctx, int fd);
void fd_judgements_age(struct aio_ctx *ctx);

/* Kinds of request, by what native AIO checks of their file. */
#define FD_TAKES_READS 1
#define FD_TAKES_WRITES 2
#define FD_TAKES_SYNCS_POLLS 4 /* the fd is found: not closed, not O_PATH */
#define FD_SYNCABLE 8	       /* a file check_sync took */

static inline uint8_t fd_request_kind(int opcode)
{
	switch (opcode) {
	case IO_CMD_PREAD:
	case IO_CMD_PREADV:
		return FD_TAKES_READS;
	case IO_CMD_PWRITE:
	case IO_CMD_PWRITEV:
		return FD_TAKES_WRITES;
	}
	return FD_TAKES_SYNCS_POLLS;
}

/* Whether fd was judged to be what (FD_SYNCABLE). */
static inline bool fd_known(const struct aio_ctx *ctx, int fd, uint8_t what)
{
	return (unsigned)fd < ctx->judged.nr && ctx->judged.kind[fd] & what;
}

/* Whether fd was seen to take this kind of request on the context. */
static inline bool fd_judged(const struct aio_ctx *ctx, int fd, int opcode)
{
	return (unsigned)fd < ctx->judged.nr && ctx->judged.kind[fd] & fd_request_kind(opcode);
}

/* A request slot; the submission checked there is one (max_outstanding). */
static inline struct req *req_alloc(struct aio_ctx *ctx)
{
	struct req *req = ctx->free_reqs;

	ctx->free_reqs = req->next;
	ctx->live++;
	return req;
}

/* eventfd.c */
int fd_hold(int fd);
bool fd_same(const struct aio_ctx *ctx, int a, int b);
int eventfd_get(struct aio_ctx *ctx, int prog);
void eventfd_put(struct aio_ctx *ctx, int slot);
int eventfd_of(const struct aio_ctx *ctx, int slot);
void eventfd_release_all(struct aio_ctx *ctx);

static inline void req_free(struct aio_ctx *ctx, struct req *req)
{
	if (req->resfd >= 0)
		eventfd_put(ctx, req->efd_slot);
	if (unlikely(req->owns_fd))
		close_nocancel(req_fd(req));
	req->obj = NULL;
	req->held = false;
	req->fetched = false;
	req->owns_fd = false;
	req->next = ctx->free_reqs;
	ctx->free_reqs = req;
	ctx->live--;
}

/* prefetch.c: cold reads through io_uring, on an auto context. */
struct prefetch;
struct prefetch *prefetch_new(unsigned entries);
void prefetch_free(struct prefetch *pf);
int prefetch_null_fd(const struct prefetch *pf);
bool prefetch_any_cold(const struct prefetch *pf);
bool prefetch_cold(const struct prefetch *pf, int fd);
bool prefetch_can_be_cold(int fd);
void prefetch_judge(struct prefetch *pf, int fd);
int prefetch_take(struct prefetch *pf, const struct aio_ctx *ctx, int fd, uint64_t call);
void prefetch_put(struct prefetch *pf, int fd);
void prefetch_sweep(struct prefetch *pf, const struct aio_ctx *ctx);
bool prefetch_read(struct prefetch *pf, struct req *req);
void prefetch_round_end(struct prefetch *pf);
void prefetch_sent(struct prefetch *pf);
bool prefetch_send(struct prefetch *pf);
int prefetch_withdraw(struct prefetch *pf, struct req **left);
int prefetch_reap(struct prefetch *pf, struct req **out, int max);
void prefetch_wait_to_send(struct prefetch *pf, bool and_done);
void prefetch_wait_done(struct prefetch *pf);
void prefetch_wake(struct prefetch *pf);
void prefetch_stop(struct prefetch *pf);
#define PREFETCH_SQ 64

/* order.c: the honest-fsync rule. */
int order_prepare_write(struct aio_ctx *ctx, int fd);
void order_submitted(struct aio_ctx *ctx, struct req *req);
bool order_should_hold(struct aio_ctx *ctx, struct req *req);
bool order_busy(struct aio_ctx *ctx, int fd);
int order_hold(struct aio_ctx *ctx, struct req *req);
struct req *order_write_done(struct aio_ctx *ctx, struct req *req);
void order_free(struct aio_ctx *ctx);

/* queue.c */
int queue_run(io_context_t handle);
long ring_take(struct aio_ctx *ctx, struct io_event *ev, long nr);
int ring_queue_wait(struct aio_ctx *ctx, const struct timespec *deadline);

/* compat.c: the entry points the LIBAIO_0.1 symbols alias. */
int aio_getevents(io_context_t handle, long min_nr, long nr, struct io_event *events,
		  const struct timespec *timeout, const sigset_t *sigmask);

#endif
