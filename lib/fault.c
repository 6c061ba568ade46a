/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Program memory the kernel would have checked, copied by the library:
 * an unmapped or read-only pointer gives -EFAULT, as the kernel's
 * copy_from_user() and copy_to_user() do, instead of killing the program.
 *
 * A copy costs no system call: it records where to come back to
 * (sigsetjmp without the signal mask) and which bytes it touches, in a
 * frame of its thread, and copies. The SIGSEGV and SIGBUS handler,
 * installed at the first io_setup, jumps back only for a fault the kernel
 * raised on those bytes while that frame stands; any other fault goes on
 * to whatever handled the signal before, or, where that was the default
 * or ignoring, the disposition is put back and the faulting instruction
 * runs again, to end the process as it would have. A program that installs
 * its own handler after the first io_setup takes the signal from the
 * library: its bad pointers then fault as they did before.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

#include "internal.h"
#include "valgrind.h"

struct fault_frame {
	sigjmp_buf env;
	uintptr_t lo, hi; /* the program's bytes being copied */
	struct fault_frame *prev;
	volatile long done; /* read after a jump back */
};

/* Read in the handler: static TLS, which needs no allocation there. */
static __thread struct fault_frame *frames __attribute__((tls_model("initial-exec")));

static struct sigaction before[2]; /* SIGSEGV's, SIGBUS's */
static _Atomic bool installed;

static struct sigaction *before_of(int sig)
{
	return &before[sig == SIGBUS];
}

/* As the kernel would have delivered sig to the handler found before ours. */
static void pass_on(int sig, siginfo_t *si, void *uc)
{
	struct sigaction *old = before_of(sig);
	sigset_t mask, saved;

	if (old->sa_handler == SIG_IGN && si->si_code <= 0)
		return; /* sent, and ignored */
	if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
		/* A fault runs again and is fatal now; a sent signal is sent again. */
		sigaction(sig, old, NULL);
		if (si->si_code <= 0)
			raise(sig);
		return;
	}
	if (old->sa_flags & SA_RESETHAND)
		sigaction(sig, &(struct sigaction){ .sa_handler = SIG_DFL }, NULL);
	mask = old->sa_mask;
	if (!(old->sa_flags & SA_NODEFER))
		sigaddset(&mask, sig);
	pthread_sigmask(SIG_BLOCK, &mask, &saved);
	if (old->sa_flags & SA_SIGINFO)
		old->sa_sigaction(sig, si, uc);
	else
		old->sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	struct fault_frame *f = frames;
	uintptr_t addr = (uintptr_t)si->si_addr;

	if (f && si->si_code > 0 && addr >= f->lo && addr < f->hi) {
		frames = f->prev;
		siglongjmp(f->env, 1);
	}
	pass_on(sig, si, uc);
}

/*
 * Not under ThreadSanitizer, whose runtime takes SIGSEGV for its own
 * reports and hands the program's handler only what it chooses: there,
 * bad pointers fault as they did without the guard.
 */
static void install(void)
{
	struct sigaction sa = { .sa_sigaction = on_fault,
				.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK };

#ifdef __SANITIZE_THREAD__
	return;
#endif
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &before[0]))
		return;
	if (sigaction(SIGBUS, &sa, &before[1])) {
		sigaction(SIGSEGV, &before[0], NULL);
		return;
	}
	atomic_store(&installed, true);
}

void fault_guard_install(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, install);
}

/*
 * A frame's copies run between compiler barriers, so that none of their
 * loads and stores moves out of the frame or ahead of the range it
 * guards; what they changed before a fault is not relied upon.
 */
static inline void frame_push(struct fault_frame *f)
{
	f->prev = frames;
	frames = f;
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void frame_pop(struct fault_frame *f)
{
	atomic_signal_fence(memory_order_seq_cst);
	frames = f->prev;
}

/* Points the frame at the program's bytes the next copy touches. */
static inline void frame_range(struct fault_frame *f, const void *prog, size_t len)
{
	atomic_signal_fence(memory_order_seq_cst);
	f->lo = (uintptr_t)prog;
	f->hi = f->lo + len;
	atomic_signal_fence(memory_order_seq_cst);
}

static inline bool guarded(void)
{
	return atomic_load_explicit(&installed, memory_order_relaxed);
}

/* Nothing local but what is volatile is read after a jump back. */
static int guarded_copy(void *dst, const void *src, size_t len, const void *prog)
{
	struct fault_frame f;

	if (valgrind_unaddressable(prog, len))
		return -EFAULT;
	if (!guarded()) {
		memcpy(dst, src, len);
		return 0;
	}
	if (sigsetjmp(f.env, 0))
		return -EFAULT;
	frame_range(&f, prog, len);
	frame_push(&f);
	memcpy(dst, src, len);
	frame_pop(&f);
	return 0;
}

/*
 * The loop of copy_iocbs_from_prog(), out of line from its sigsetjmp so
 * that its state lives in registers; f->done says how far it got.
 */
static __attribute__((noinline)) long iocbs_copy(struct fault_frame *f, struct iocb *const *ios,
						 long n, struct iocb **objs, struct iocb *copies)
{
	long i;

	for (i = 0; i < n; i++) {
		f->done = i;
		if (bad_user_ptr(&ios[i], sizeof(ios[i])))
			break;
		frame_range(f, &ios[i], sizeof(ios[i]));
		objs[i] = ios[i];
		if (bad_user_ptr(objs[i], sizeof(copies[i])))
			break;
		frame_range(f, objs[i], sizeof(copies[i]));
		copies[i] = *objs[i];
	}
	return i;
}

/*
 * No question to memcheck per iocb: under valgrind a bad one is reported
 * as valgrind's own io_submit wrapper reports it, then refused.
 */
long copy_iocbs_from_prog(struct iocb *const *ios, long n, struct iocb **objs, struct iocb *copies)
{
	struct fault_frame f;
	long copied;

	if (!guarded())
		return iocbs_copy(&f, ios, n, objs, copies);
	if (sigsetjmp(f.env, 0))
		return f.done;
	frame_push(&f);
	copied = iocbs_copy(&f, ios, n, objs, copies);
	frame_pop(&f);
	return copied;
}

int copy_from_prog(void *dst, const void *src, size_t len)
{
	if (!len)
		return 0;
	if (bad_user_ptr(src, len))
		return -EFAULT;
	return guarded_copy(dst, src, len, src);
}

int copy_to_prog(void *dst, const void *src, size_t len)
{
	if (!len)
		return 0;
	if (bad_user_ptr(dst, len))
		return -EFAULT;
	return guarded_copy(dst, src, len, dst);
}
