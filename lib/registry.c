/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The registry of live contexts. io_context_t is the address of a ring the
 * program may read; any other value a program passes (never set up, already
 * destroyed, inherited across fork) must give -EINVAL, so handles are looked
 * up in a table of slots before anything is dereferenced.
 *
 * Lookups take no lock: a slot's key is published last, and a reader pins
 * the slot by counting itself in users before checking the key again.
 * io_destroy retires the key first and then waits for users to drain, so a
 * context is never freed under a reader. Slots are static and never freed.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#define REGISTRY_SLOTS (1u << 16)
#define KEY_EMPTY 0
#define KEY_RETIRED 1  /* free for another context */
#define KEY_DRAINING 2 /* finds nothing; its last users are leaving */

struct slot {
	_Atomic uintptr_t key;
	_Atomic unsigned users;
	struct aio_ctx *ctx;
};

static struct slot slots[REGISTRY_SLOTS];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
/* The live contexts, densely, for registry_each(). */
static struct aio_ctx **live;
static unsigned nr_live, live_cap;
static _Atomic unsigned fork_gen;

static unsigned slot_hash(uintptr_t key)
{
	return (unsigned)((key >> 12) * 0x9e3779b97f4a7c15ull >> 48) & (REGISTRY_SLOTS - 1);
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&registry_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&registry_lock);
}

/* A child inherits no context: the kernel's AIO contexts die with the mm. */
static void atfork_child(void)
{
	atomic_fetch_add(&fork_gen, 1);
	pthread_mutex_unlock(&registry_lock);
}

static void registry_init(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

unsigned fork_generation(void)
{
	return atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

int registry_add(struct aio_ctx *ctx)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	uintptr_t key = (uintptr_t)ctx->ring;
	unsigned i = slot_hash(key);

	pthread_once(&once, registry_init);
	pthread_mutex_lock(&registry_lock);
	if (nr_live == live_cap) {
		unsigned cap = live_cap ? live_cap * 2 : 16;
		struct aio_ctx **grown = realloc(live, cap * sizeof(*live));

		if (!grown) {
			pthread_mutex_unlock(&registry_lock);
			return -ENOMEM;
		}
		live = grown;
		live_cap = cap;
	}
	for (unsigned n = 0; n < REGISTRY_SLOTS; n++, i = (i + 1) & (REGISTRY_SLOTS - 1)) {
		uintptr_t k = atomic_load(&slots[i].key);

		if (k != KEY_EMPTY && k != KEY_RETIRED)
			continue;
		slots[i].ctx = ctx;
		ctx->slot = i;
		ctx->fork_gen = fork_generation();
		live[nr_live++] = ctx;
		atomic_store_explicit(&slots[i].key, key, memory_order_release);
		pthread_mutex_unlock(&registry_lock);
		return 0;
	}
	pthread_mutex_unlock(&registry_lock);
	return -EAGAIN;
}

/*
 * From now on the handle finds nothing, and a new context may take its
 * value: the kernel reuses a destroyed native context's address at once.
 */
void registry_retire(struct aio_ctx *ctx)
{
	atomic_store(&slots[ctx->slot].key, KEY_DRAINING);
}

/*
 * Retires the handle, waits until only the caller's own pin is left, and
 * only then lets another context have the slot.
 */
void registry_remove(struct aio_ctx *ctx)
{
	struct slot *s = &slots[ctx->slot];

	registry_retire(ctx);
	while (atomic_load(&s->users) > 1)
		usleep(100);
	atomic_fetch_sub(&s->users, 1);
	atomic_store(&s->key, KEY_RETIRED);
	pthread_mutex_lock(&registry_lock);
	for (unsigned i = 0; i < nr_live; i++) {
		if (live[i] == ctx) {
			live[i] = live[--nr_live];
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

struct aio_ctx *ctx_get(io_context_t handle)
{
	uintptr_t key = (uintptr_t)handle;
	unsigned i = slot_hash(key);

	if (unlikely(key <= KEY_RETIRED || key & 4095))
		return NULL;
	for (unsigned n = 0; n < REGISTRY_SLOTS; n++, i = (i + 1) & (REGISTRY_SLOTS - 1)) {
		struct slot *s = &slots[i];
		uintptr_t k = atomic_load_explicit(&s->key, memory_order_acquire);

		if (k == KEY_EMPTY)
			return NULL;
		if (k != key)
			continue;
		atomic_fetch_add(&s->users, 1);
		if (unlikely(atomic_load(&s->key) != key ||
			     s->ctx->fork_gen != fork_generation())) {
			atomic_fetch_sub(&s->users, 1);
			return NULL;
		}
		return s->ctx;
	}
	return NULL;
}

/*
 * Calls fn on every context not yet freed, with the registry locked: fn
 * must not set up or destroy one, and should only try ctx->lock.
 */
void registry_each(void (*fn)(struct aio_ctx *ctx, void *arg), void *arg)
{
	pthread_mutex_lock(&registry_lock);
	for (unsigned i = 0; i < nr_live; i++)
		if (live[i]->fork_gen == fork_generation())
			fn(live[i], arg);
	pthread_mutex_unlock(&registry_lock);
}

void ctx_put(struct aio_ctx *ctx)
{
	atomic_fetch_sub_explicit(&slots[ctx->slot].users, 1, memory_order_release);
}
