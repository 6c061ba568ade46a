/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The workloads: random reads kept at a fixed depth, group commits, and
 * io_queue_run dispatches. Every result is checked: a benchmark that
 * counts failed reads as fast ones measures nothing.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		uint64_t *p = realloc(s->ns, cap * sizeof(*p));

		if (!p)
			return; /* a shorter sample, not a wrong one */
		s->ns = p;
		s->cap = cap;
	}
	s->ns[s->n++] = ns;
}

void samples_free(struct samples *s)
{
	free(s->ns);
	memset(s, 0, sizeof(*s));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

uint64_t samples_quantile(struct samples *s, double q)
{
	if (!s->n)
		return 0;
	qsort(s->ns, s->n, sizeof(*s->ns), cmp_u64);
	return s->ns[(size_t)(q * (double)(s->n - 1) + 0.5)];
}

static uint64_t rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static off_t random_block(uint64_t *rng, size_t file_size)
{
	return (off_t)(rng_next(rng) % (file_size / BENCH_BS)) * BENCH_BS;
}

static int budget_spent(const struct budget *b, uint64_t ops, uint64_t now, uint64_t deadline)
{
	return b->max_ops ? ops >= b->max_ops : now >= deadline;
}

static uint64_t deadline_of(const struct budget *b, uint64_t start)
{
	return start + (uint64_t)(b->seconds * 1e9);
}

static char *alloc_buffers(int n)
{
	void *p = NULL;

	if (posix_memalign(&p, BENCH_BS, (size_t)n * BENCH_BS))
		return NULL;
	memset(p, 0x5a, (size_t)n * BENCH_BS);
	return p;
}

static void report_bad_result(const struct contender *c, const char *what, long res, long want)
{
	fprintf(stderr, "aio-compat-bench: %s: %s returned %ld, expected %ld\n", c->name, what, res,
		want);
}

struct read_loop {
	struct engine *e;
	const struct workload *w;
	int depth;
	char *bufs;
	uint64_t *sent;
	uint64_t rng;
	int inflight;
};

static void queue_read(struct read_loop *l, int slot, uint64_t now)
{
	struct req r = {
		.op = REQ_READ,
		.fd = l->w->fd,
		.buf = l->bufs + (size_t)slot * BENCH_BS,
		.off = random_block(&l->rng, l->w->file_size),
	};

	engine_prep(l->e, slot, &r);
	l->sent[slot] = now;
	l->inflight++;
}

/* Waits for what is still in flight, so the next run starts clean. */
static int drain(struct engine *e, int inflight, struct done *done, int max)
{
	int n;

	while (inflight > 0) {
		n = engine_kick(e, 1, done, max);
		if (n < 0)
			return n;
		inflight -= n;
	}
	return 0;
}

static int read_steps(struct read_loop *l, const struct contender *c, const struct budget *b,
		      struct run_result *r, struct done *done)
{
	uint64_t start = now_ns(), t = start, deadline = deadline_of(b, start);
	int slot, i, n, stop = 0;

	for (slot = 0; slot < l->depth; slot++)
		queue_read(l, slot, start);
	while (!stop) {
		n = engine_kick(l->e, 1, done, l->depth);
		if (n < 0)
			return n;
		t = now_ns();
		l->inflight -= n;
		for (i = 0; i < n; i++) {
			if (done[i].res != BENCH_BS) {
				report_bad_result(c, "read", done[i].res, BENCH_BS);
				return -EIO;
			}
			samples_add(&r->lat, t - l->sent[done[i].slot]);
		}
		r->ops += (uint64_t)n;
		stop = budget_spent(b, r->ops, t, deadline);
		for (i = 0; !stop && i < n; i++)
			queue_read(l, done[i].slot, t);
	}
	r->seconds = (double)(t - start) / 1e9;
	return 0;
}

static int run_randread(const struct workload *w, const struct contender *c, const struct budget *b,
			struct run_result *r)
{
	struct read_loop l = { .w = w, .rng = 0x9e3779b97f4a7c15ull ^ now_ns() };
	struct done *done;
	int ret;

	l.depth = engine_has_depth(c) ? w->depth : 1;
	ret = engine_open(&l.e, c, l.depth);
	if (ret)
		return ret;
	l.bufs = alloc_buffers(l.depth);
	l.sent = calloc(l.depth, sizeof(*l.sent));
	done = calloc(l.depth, sizeof(*done));
	if (!l.bufs || !l.sent || !done) {
		ret = -ENOMEM;
		goto out;
	}
	if (b->counting)
		mark_region(MARK_BEGIN);
	ret = read_steps(&l, c, b, r, done);
	if (b->counting)
		mark_region(MARK_END);
	if (!ret)
		ret = drain(l.e, l.inflight, done, l.depth);
out:
	engine_close(l.e);
	free(l.bufs);
	free(l.sent);
	free(done);
	return ret;
}

/* Reaps exactly n completions into done, checking each against want[]. */
static int reap_checked(struct engine *e, int n, const long *want, const struct contender *c)
{
	struct done done[COMMIT_WRITES + 1];
	int got = 0, ret, i;

	while (got < n) {
		ret = engine_kick(e, n - got, done, n - got);
		if (ret < 0)
			return ret;
		for (i = 0; i < ret; i++) {
			if (done[i].res != want[done[i].slot]) {
				report_bad_result(
				    c, done[i].slot == COMMIT_WRITES ? "fdatasync" : "write",
				    done[i].res, want[done[i].slot]);
				return -EIO;
			}
		}
		got += ret;
	}
	return 0;
}

/* COMMIT_WRITES appends, then fdatasync: one group commit. */
static int commit_once(struct engine *e, const struct contender *c, int fd, char *bufs, off_t off)
{
	static const long want[COMMIT_WRITES + 1] = {
		BENCH_BS, BENCH_BS, BENCH_BS, BENCH_BS, BENCH_BS, BENCH_BS, BENCH_BS, BENCH_BS, 0,
	};
	struct req r = { .op = REQ_WRITE, .fd = fd };
	int i, ret;

	for (i = 0; i < COMMIT_WRITES; i++) {
		r.buf = bufs + (size_t)i * BENCH_BS;
		r.off = off + (off_t)i * BENCH_BS;
		engine_prep(e, i, &r);
	}
	if (c->split_commit) {
		ret = reap_checked(e, COMMIT_WRITES, want, c);
		if (ret)
			return ret;
	}
	r.op = REQ_FDSYNC;
	engine_prep(e, COMMIT_WRITES, &r);
	return reap_checked(e, c->split_commit ? 1 : COMMIT_WRITES + 1, want, c);
}

static int run_commit(const struct workload *w, const struct contender *c, const struct budget *b,
		      struct run_result *r)
{
	uint64_t start, t, t0, deadline;
	struct engine *e;
	char *bufs;
	off_t off = 0;
	int ret;

	ret = engine_open(&e, c, COMMIT_WRITES + 1);
	if (ret)
		return ret;
	bufs = alloc_buffers(COMMIT_WRITES);
	if (!bufs) {
		engine_close(e);
		return -ENOMEM;
	}
	if (b->counting)
		mark_region(MARK_BEGIN);
	start = t = now_ns();
	deadline = deadline_of(b, start);
	do {
		t0 = t;
		ret = commit_once(e, c, w->fd, bufs, off);
		if (ret)
			break;
		t = now_ns();
		samples_add(&r->lat, t - t0);
		r->ops++;
		off += COMMIT_WRITES * BENCH_BS;
	} while (!budget_spent(b, r->ops, t, deadline));
	if (b->counting)
		mark_region(MARK_END);
	r->seconds = (double)(t - start) / 1e9;
	engine_close(e);
	free(bufs);
	return ret;
}

static int run_dispatch(const struct workload *w, const struct contender *c, const struct budget *b,
			struct run_result *r)
{
	struct req reqs[DISPATCH_NR];
	uint64_t rng = 0x2545f4914f6cdd1dull ^ now_ns(), deadline, ns, busy = 0;
	struct engine *e;
	char *bufs;
	int i, ret;

	ret = engine_open(&e, c, DISPATCH_NR);
	if (ret)
		return ret;
	bufs = alloc_buffers(DISPATCH_NR);
	if (!bufs) {
		engine_close(e);
		return -ENOMEM;
	}
	deadline = deadline_of(b, now_ns());
	do {
		for (i = 0; i < DISPATCH_NR; i++) {
			reqs[i].op = REQ_READ;
			reqs[i].fd = w->fd;
			reqs[i].buf = bufs + (size_t)i * BENCH_BS;
			reqs[i].off = random_block(&rng, w->file_size);
		}
		ret = engine_dispatch(e, reqs, &ns, b->counting, w->via_eventfd);
		if (ret)
			break;
		samples_add(&r->lat, ns);
		busy += ns;
		r->ops++;
	} while (!budget_spent(b, r->ops, now_ns(), deadline));
	/* The rate is of dispatching alone: submission is not what is measured. */
	r->seconds = (double)busy / 1e9;
	engine_close(e);
	free(bufs);
	return ret;
}

int workload_run(const struct workload *w, const struct contender *c, const struct budget *b,
		 struct run_result *r)
{
	memset(r, 0, sizeof(*r));
	switch (w->kind) {
	case WL_RANDREAD:
		return run_randread(w, c, b, r);
	case WL_COMMIT:
		return run_commit(w, c, b, r);
	case WL_DISPATCH:
		return run_dispatch(w, c, b, r);
	}
	return -EINVAL;
}
