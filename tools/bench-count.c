/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * System calls per operation, counted in a forked child that runs one
 * contender for a fixed number of operations; the timed runs are never
 * counted. Two ways:
 *
 * - perf: a counter on the raw_syscalls:sys_enter tracepoint, opened with
 *   inherit, so the threads the child starts (glibc's AIO threads, the
 *   library's helper threads) count too. Enabled and disabled around the
 *   measured region. Near full speed, so calls that a
 *   thread makes on a timer are counted at their real rate.
 * - ptrace: this process stops the child at every system call entry of
 *   every thread (PTRACE_O_TRACECLONE) and counts those between two marker
 *   calls. It needs no tracefs and tells calls apart by name, but each stop
 *   slows the child, which inflates calls made on a timer.
 *
 * Threads the kernel runs for io_uring (io-wq) and native AIO make no
 * system calls.
 */
#include "bench.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NR_SLOTS 512

struct tally {
	int counting;
	long total;
	long by_nr[NR_SLOTS];
};

/* Names of the calls these contenders make; others print as numbers. */
static const struct {
	long nr;
	const char *name;
} names[] = {
	{ SYS_read, "read" },
	{ SYS_write, "write" },
	{ SYS_pread64, "pread64" },
	{ SYS_pwrite64, "pwrite64" },
	{ SYS_fdatasync, "fdatasync" },
	{ SYS_fsync, "fsync" },
	{ SYS_futex, "futex" },
	{ SYS_ppoll, "ppoll" },
	{ SYS_poll, "poll" },
	{ SYS_io_submit, "io_submit" },
	{ SYS_io_getevents, "io_getevents" },
	{ SYS_io_pgetevents, "io_pgetevents" },
	{ SYS_io_uring_enter, "io_uring_enter" },
	{ SYS_newfstatat, "newfstatat" },
	{ SYS_fstat, "fstat" },
	{ SYS_eventfd2, "eventfd2" },
	{ SYS_clone3, "clone3" },
	{ SYS_clone, "clone" },
	{ SYS_mmap, "mmap" },
	{ SYS_munmap, "munmap" },
	{ SYS_mprotect, "mprotect" },
	{ SYS_madvise, "madvise" },
	{ SYS_rt_sigprocmask, "rt_sigprocmask" },
	{ SYS_rt_sigaction, "rt_sigaction" },
	{ SYS_getpid, "getpid" },
	{ SYS_gettid, "gettid" },
	{ SYS_sched_yield, "sched_yield" },
	{ SYS_set_robust_list, "set_robust_list" },
	{ SYS_rseq, "rseq" },
	{ SYS_exit, "exit" },
	{ SYS_nanosleep, "nanosleep" },
	{ SYS_clock_nanosleep, "clock_nanosleep" },
	{ SYS_fcntl, "fcntl" },
	{ SYS_lseek, "lseek" },
};

struct count_msg {
	int64_t ret;
	uint64_t ops;
	uint64_t calls; /* perf: what the counter saw */
};

static const char *tracepoint_ids[] = {
	"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
	"/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
};

/* In the counting child: the perf counter, and the disables it counted. */
static int counter_fd = -1;
static uint64_t counter_ends;

void mark_region(long which)
{
	if (counter_fd >= 0) {
		/* The disabling ioctl is counted on entry; count_syscalls takes it off. */
		ioctl(counter_fd,
		      which == MARK_BEGIN ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
		counter_ends += which == MARK_END;
		return;
	}
	/* No kernel has these numbers: -ENOSYS, seen only by the tracer. */
	syscall(which);
}

static int open_counter(void)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_TRACEPOINT,
		.size = sizeof(attr),
		.disabled = 1,
		.inherit = 1,
	};
	unsigned long long id = 0;
	size_t i;
	FILE *f;
	int fd;

	for (i = 0; i < sizeof(tracepoint_ids) / sizeof(tracepoint_ids[0]) && !id; i++) {
		f = fopen(tracepoint_ids[i], "r");
		if (!f)
			continue;
		if (fscanf(f, "%llu", &id) != 1)
			id = 0;
		fclose(f);
	}
	if (!id)
		return -ENOENT;
	attr.config = id;
	fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int counter_available(void)
{
	int fd = open_counter();

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

static void count_child(int out, const struct workload *w, const struct contender *c,
			uint64_t max_ops, int traced)
{
	struct budget b = { .max_ops = max_ops, .counting = 1 };
	struct count_msg msg = { 0, 0, 0 };
	struct run_result r;
	uint64_t calls = 0;

	if (traced) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(2);
		raise(SIGSTOP);
	} else {
		counter_fd = open_counter();
		if (counter_fd < 0)
			_exit(2);
	}
	msg.ret = workload_run(w, c, &b, &r);
	msg.ops = r.ops;
	if (!traced) {
		if (read(counter_fd, &calls, sizeof(calls)) != sizeof(calls))
			msg.ret = -EIO;
		msg.calls = calls > counter_ends ? calls - counter_ends : 0;
	}
	if (write(out, &msg, sizeof(msg)) != sizeof(msg))
		_exit(3);
	_exit(0);
}

/* What a stopped thread is told to do next; the tally is updated on the way. */
static int on_stop(pid_t pid, int status, struct tally *t)
{
	struct __ptrace_syscall_info info;
	int sig = WSTOPSIG(status);

	if (sig == (SIGTRAP | 0x80)) {
		if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof(info), &info) <= 0 ||
		    info.op != PTRACE_SYSCALL_INFO_ENTRY)
			return 0;
		if (info.entry.nr == (uint64_t)MARK_BEGIN) {
			t->counting = 1;
		} else if (info.entry.nr == (uint64_t)MARK_END) {
			t->counting = 0;
		} else if (t->counting) {
			t->total++;
			if (info.entry.nr < NR_SLOTS)
				t->by_nr[info.entry.nr]++;
		}
		return 0;
	}
	/* Event stops (a new thread) and the SIGSTOP new threads start with. */
	if (status >> 16 || sig == SIGSTOP)
		return 0;
	return sig;
}

static long trace_child(pid_t child, struct tally *t)
{
	int status, sig;
	pid_t pid;

	if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status))
		return -ECHILD;
	if (ptrace(
		PTRACE_SETOPTIONS, child, NULL,
		(void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL)) ||
	    ptrace(PTRACE_SYSCALL, child, NULL, NULL)) {
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
		return -errno;
	}
	for (;;) {
		pid = waitpid(-1, &status, __WALL);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break; /* ECHILD: every thread is gone */
		}
		if (!WIFSTOPPED(status)) {
			if (pid == child && (!WIFEXITED(status) || WEXITSTATUS(status)))
				t->total = -ECHILD;
			continue;
		}
		sig = on_stop(pid, status, t);
		ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig);
	}
	return t->total;
}

static long wait_child(pid_t child)
{
	int status;

	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : -ECHILD;
}

static const char *name_of(long nr, char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].nr == nr)
			return names[i].name;
	snprintf(buf, len, "#%ld", nr);
	return buf;
}

/* The busiest calls, per operation, most first: "futex 6.20, read 1.00". */
static void describe(struct tally *t, uint64_t ops, char *out, size_t len)
{
	size_t used = 0;
	char num[24];
	int shown, nr, best;

	out[0] = 0;
	for (shown = 0; shown < 5 && used < len; shown++) {
		best = -1;
		for (nr = 0; nr < NR_SLOTS; nr++)
			if (t->by_nr[nr] && (best < 0 || t->by_nr[nr] > t->by_nr[best]))
				best = nr;
		/* Fewer than one call in 200 operations is noise here. */
		if (best < 0 || (double)t->by_nr[best] / (double)ops < 0.005)
			break;
		used += (size_t)snprintf(out + used, len - used, "%s%s %.2f", shown ? ", " : "",
					 name_of(best, num, sizeof(num)),
					 (double)t->by_nr[best] / (double)ops);
		t->by_nr[best] = 0;
	}
}

double count_syscalls(const struct workload *w, const struct contender *c, uint64_t max_ops,
		      int traced, char *detail, size_t detail_len)
{
	struct count_msg msg = { -EIO, 0, 0 };
	struct tally *t = calloc(1, sizeof(*t));
	double ret;
	int fds[2];
	long count;
	pid_t child;

	if (detail_len)
		detail[0] = 0;
	if (!t)
		return -ENOMEM;
	if (pipe(fds)) {
		free(t);
		return -errno;
	}

	fflush(NULL);
	child = fork();
	if (child < 0) {
		close(fds[0]);
		close(fds[1]);
		free(t);
		return -EAGAIN;
	}
	if (!child) {
		close(fds[0]);
		count_child(fds[1], w, c, max_ops, traced);
	}
	close(fds[1]);
	count = traced ? trace_child(child, t) : wait_child(child);
	if (read(fds[0], &msg, sizeof(msg)) != sizeof(msg))
		msg.ret = -EIO;
	close(fds[0]);
	if (count < 0)
		ret = (double)count;
	else if (msg.ret < 0)
		ret = (double)msg.ret;
	else if (!msg.ops)
		ret = -EIO;
	else
		ret = (double)(traced ? (uint64_t)count : msg.calls) / (double)msg.ops;
	if (ret >= 0 && traced && detail_len)
		describe(t, msg.ops, detail, detail_len);
	free(t);
	return ret;
}
