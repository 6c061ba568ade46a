/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Soak: many threads submitting and reaping on one context, then several
 * contexts at once, with mixed opcodes (PWRITE, PWRITEV, PREAD, PREADV,
 * FSYNC, FDSYNC), for a bounded time (SOAK_SECONDS, default 3 per test).
 * Every iocb is accounted for: it completes exactly once, reaped by any
 * thread, with the result its request must have; every read sees the
 * last write to its block; afterwards every block on the file holds what
 * was written to it last.
 *
 * Each thread owns its own blocks and has at most one request in flight
 * per block, so "the last write" of a block is defined; any thread reaps
 * any thread's completions.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096
#define BLOCKS_PER_THREAD 64
#define SLOTS_PER_THREAD 24
#define MAX_THREADS 8

/* A slot is the owner's again only once its completion has been checked. */
enum slot_state {
	FREE,
	IN_FLIGHT,
	CHECKING,
	DONE
};

struct worker;

/* One iocb and what its completion must say. */
struct slot {
	struct iocb cb;
	struct iovec iov[2];
	struct worker *owner;
	_Atomic int state;
	int block;    /* -1 for a sync */
	uint32_t gen; /* the generation written, or expected by a read */
	int is_read;
	char *buf;
};

struct worker {
	struct soak *soak;
	int id;
	pthread_t thread;
	struct slot slots[SLOTS_PER_THREAD];
	uint32_t gen[BLOCKS_PER_THREAD];     /* last generation written (completed or not) */
	_Atomic int busy[BLOCKS_PER_THREAD]; /* a request on this block is in flight */
	unsigned rng;
	long ops;
};

struct soak {
	io_context_t ctx;
	int fd;
	int nr_workers;
	int direct;
	struct worker workers[MAX_THREADS];
	_Atomic long submitted, completed;
	_Atomic int stop;
	_Atomic int failed;
	char why[256];
	pthread_mutex_t why_lock;
};

static void soak_fail(struct soak *s, const char *fmt, long a, long b)
{
	pthread_mutex_lock(&s->why_lock);
	if (!atomic_load(&s->failed))
		snprintf(s->why, sizeof(s->why), fmt, a, b);
	atomic_store(&s->failed, 1);
	pthread_mutex_unlock(&s->why_lock);
}

/* Every 8 bytes of a block say who wrote it, where, and which generation. */
static uint64_t word(int worker, int block, uint32_t gen)
{
	return (uint64_t)worker << 56 | (uint64_t)block << 32 | gen;
}

static void fill(char *buf, int worker, int block, uint32_t gen)
{
	uint64_t w = word(worker, block, gen);

	for (size_t i = 0; i < BLOCK; i += sizeof(w))
		memcpy(buf + i, &w, sizeof(w));
}

/* Whether buf holds gen of (worker, block); generation 0 is all zeroes. */
static int holds(const char *buf, int worker, int block, uint32_t gen)
{
	uint64_t w = gen ? word(worker, block, gen) : 0, got;

	for (size_t i = 0; i < BLOCK; i += sizeof(w)) {
		memcpy(&got, buf + i, sizeof(got));
		if (got != w)
			return 0;
	}
	return 1;
}

static long file_block(struct worker *w, int block)
{
	return ((long)w->id * BLOCKS_PER_THREAD + block) * BLOCK;
}

static unsigned next_rand(unsigned *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 8;
}

/* Fills a free slot with a random request on an idle block; 0 if none. */
static int prepare_request(struct worker *w, struct slot *sl)
{
	unsigned r = next_rand(&w->rng);
	int block = (int)(r % BLOCKS_PER_THREAD), fd = w->soak->fd;
	long off = file_block(w, block);

	sl->block = -1;
	sl->is_read = 0;
	switch (r >> 12 & 15) {
	case 0:
		io_prep_fsync(&sl->cb, fd);
		return 1;
	case 1:
		io_prep_fdsync(&sl->cb, fd);
		return 1;
	}
	if (atomic_exchange(&w->busy[block], 1))
		return 0;
	sl->block = block;
	if (r >> 16 & 1) {
		sl->is_read = 1;
		sl->gen = w->gen[block];
		memset(sl->buf, 0xee, BLOCK);
	} else {
		sl->gen = ++w->gen[block];
		fill(sl->buf, w->id, block, sl->gen);
	}
	sl->iov[0] = (struct iovec){ sl->buf, BLOCK / 2 };
	sl->iov[1] = (struct iovec){ sl->buf + BLOCK / 2, BLOCK / 2 };
	if (sl->is_read && r >> 17 & 1)
		io_prep_preadv(&sl->cb, fd, sl->iov, 2, off);
	else if (sl->is_read)
		io_prep_pread(&sl->cb, fd, sl->buf, BLOCK, off);
	else if (r >> 17 & 1)
		io_prep_pwritev(&sl->cb, fd, sl->iov, 2, off);
	else
		io_prep_pwrite(&sl->cb, fd, sl->buf, BLOCK, off);
	return 1;
}

/* The slot rides in iocb->data, which io_prep_* clears. */
static int prepare(struct worker *w, struct slot *sl)
{
	if (!prepare_request(w, sl))
		return 0;
	sl->cb.data = sl;
	return 1;
}

/* A request that was never accepted gives its block back. */
static void unprepare(struct worker *w, struct slot *sl)
{
	if (sl->block >= 0) {
		if (!sl->is_read)
			w->gen[sl->block]--;
		atomic_store(&w->busy[sl->block], 0);
	}
	atomic_store(&sl->state, FREE);
}

/* Checks one event, whichever thread's iocb it is for. */
static void complete(struct soak *s, struct io_event *ev)
{
	struct slot *sl = ev->data;
	long res = (long)ev->res;
	int was;

	if (!sl || (struct iocb *)ev->obj != &sl->cb) {
		soak_fail(s, "event for an unknown iocb %#lx (data %#lx)", (long)ev->obj, (long)sl);
		return;
	}
	was = IN_FLIGHT;
	if (!atomic_compare_exchange_strong(&sl->state, &was, CHECKING)) {
		soak_fail(s, "iocb %#lx completed again (state %ld)", (long)ev->obj, was);
		return;
	}
	if (res != (sl->block < 0 ? 0 : BLOCK))
		soak_fail(s, "opcode %ld completed with res %ld", sl->cb.aio_lio_opcode, res);
	else if (sl->is_read && !holds(sl->buf, sl->owner->id, sl->block, sl->gen))
		soak_fail(s, "a read of block %ld missed generation %ld", sl->block, sl->gen);
	if (ev->res2)
		soak_fail(s, "res2 %ld for opcode %ld", (long)ev->res2, sl->cb.aio_lio_opcode);
	if (sl->block >= 0)
		atomic_store(&sl->owner->busy[sl->block], 0);
	atomic_fetch_add(&s->completed, 1);
	atomic_store(&sl->state, DONE);
}

static void reap_some(struct soak *s, long ms)
{
	struct io_event ev[16];
	int n = getevents_ms(s->ctx, 1, 16, ev, ms);

	if (n < 0 && n != -EINTR)
		soak_fail(s, "io_getevents: %ld (nr %ld)", n, 16);
	for (int i = 0; i < n; i++)
		complete(s, &ev[i]);
}

static void submit_some(struct worker *w)
{
	struct iocb *ios[SLOTS_PER_THREAD];
	struct slot *picked[SLOTS_PER_THREAD];
	int n = 0, want = 1 + (int)(next_rand(&w->rng) % 8), ret;

	for (int i = 0; i < SLOTS_PER_THREAD && n < want; i++) {
		struct slot *sl = &w->slots[i];
		int st = atomic_load(&sl->state);

		if (st == IN_FLIGHT || st == CHECKING)
			continue;
		atomic_store(&sl->state, FREE);
		if (!prepare(w, sl))
			continue;
		atomic_store(&sl->state, IN_FLIGHT);
		picked[n] = sl;
		ios[n++] = &sl->cb;
	}
	if (!n)
		return;
	ret = io_submit(w->soak->ctx, n, ios);
	if (ret < 0 && ret != -EAGAIN)
		soak_fail(w->soak, "io_submit of %ld: %ld", n, ret);
	if (ret < 0)
		ret = 0;
	atomic_fetch_add(&w->soak->submitted, ret);
	w->ops += ret;
	for (int i = ret; i < n; i++)
		unprepare(w, picked[i]);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct soak *s = w->soak;

	while (!atomic_load(&s->stop) && !atomic_load(&s->failed)) {
		submit_some(w);
		reap_some(s, 10);
	}
	return NULL;
}

static void soak_init(struct soak *s, int nr_workers, int direct, unsigned seed)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->why_lock, NULL);
	s->nr_workers = nr_workers;
	s->direct = direct;
	s->fd =
	    tmpfile_in(direct ? "/var/tmp" : NULL, (size_t)nr_workers * BLOCKS_PER_THREAD * BLOCK,
		       O_RDWR | (direct ? O_DIRECT : 0));
	ck_assert_int_eq(io_setup(nr_workers * SLOTS_PER_THREAD, &s->ctx), 0);
	for (int i = 0; i < nr_workers; i++) {
		struct worker *w = &s->workers[i];

		w->soak = s;
		w->id = i;
		w->rng = seed * 977 + (unsigned)i;
		for (int j = 0; j < SLOTS_PER_THREAD; j++) {
			struct slot *sl = &w->slots[j];

			sl->owner = w;
			sl->buf = aligned_buf(BLOCK, 0);
		}
	}
}

static void soak_start(struct soak *s)
{
	for (int i = 0; i < s->nr_workers; i++)
		ck_assert_int_eq(pthread_create(&s->workers[i].thread, NULL, work, &s->workers[i]),
				 0);
}

/* Stops the workers, reaps what is left, and checks the books and the file. */
static long soak_finish(struct soak *s)
{
	struct timespec start, now;
	char *buf = aligned_buf(BLOCK, 0);
	long ops = 0;

	atomic_store(&s->stop, 1);
	for (int i = 0; i < s->nr_workers; i++) {
		ck_assert_int_eq(pthread_join(s->workers[i].thread, NULL), 0);
		ops += s->workers[i].ops;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (atomic_load(&s->completed) < atomic_load(&s->submitted) &&
	       !atomic_load(&s->failed)) {
		/* Before the reap: a stalled machine still reaps once more. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		reap_some(s, 100);
		ck_assert_msg(now.tv_sec - start.tv_sec < 10 ||
				  atomic_load(&s->completed) == atomic_load(&s->submitted),
			      "%ld of %ld requests never completed",
			      atomic_load(&s->submitted) - atomic_load(&s->completed),
			      atomic_load(&s->submitted));
	}
	ck_assert_msg(!atomic_load(&s->failed), "%s", s->why);
	ck_assert_int_eq(atomic_load(&s->completed), atomic_load(&s->submitted));
	expect_no_event(s->ctx, 20);
	for (int i = 0; i < s->nr_workers; i++) {
		struct worker *w = &s->workers[i];

		for (int j = 0; j < SLOTS_PER_THREAD; j++)
			ck_assert_int_ne(atomic_load(&w->slots[j].state), IN_FLIGHT);
		/* Every slot's last request was reaped and checked. */
		for (int b = 0; b < BLOCKS_PER_THREAD; b++) {
			ck_assert_int_eq(pread(s->fd, buf, BLOCK, file_block(w, b)), BLOCK);
			ck_assert_msg(holds(buf, w->id, b, w->gen[b]),
				      "block %d of worker %d does not hold generation %u", b, w->id,
				      w->gen[b]);
		}
		for (int j = 0; j < SLOTS_PER_THREAD; j++)
			free(w->slots[j].buf);
	}
	ck_assert_int_eq(io_destroy(s->ctx), 0);
	close(s->fd);
	free(buf);
	return ops;
}

static double soak_seconds(void)
{
	const char *env = getenv("SOAK_SECONDS");
	double secs = env ? atof(env) : 0;

	return secs > 0 ? secs : 3;
}

static void run_for(double secs)
{
	struct timespec ts = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Four threads on one context, buffered (native AIO: inside io_submit). */
START_TEST(one_context_many_threads)
{
	static struct soak s;
	long ops;

	soak_init(&s, 4, 0, 1);
	soak_start(&s);
	run_for(soak_seconds());
	ops = soak_finish(&s);
	ck_assert_int_gt(ops, 1000);
	printf("soak: one context, 4 threads: %ld requests\n", ops);
}
END_TEST

/* Three contexts at once, two threads each, O_DIRECT on a disk file. */
START_TEST(several_contexts_at_once)
{
	static struct soak s[3];
	long ops = 0;

	for (int i = 0; i < 3; i++)
		soak_init(&s[i], 2, 1, 10 + (unsigned)i);
	for (int i = 0; i < 3; i++)
		soak_start(&s[i]);
	run_for(soak_seconds());
	for (int i = 0; i < 3; i++)
		ops += soak_finish(&s[i]);
	ck_assert_int_gt(ops, 1000);
	printf("soak: 3 contexts, 2 threads each, O_DIRECT: %ld requests\n", ops);
}
END_TEST

static Suite *soak_suite(void)
{
	Suite *s = suite_create("soak");
	TCase *tc = tcase_create("soak");

	tcase_set_timeout(tc, 2 * soak_seconds() + 30);
	tcase_add_test(tc, one_context_many_threads);
	tcase_add_test(tc, several_contexts_at_once);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(soak_suite(), "soak");
}
