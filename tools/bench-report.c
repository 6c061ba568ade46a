/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The report: medians, ratios to each workload's reference, the machine,
 * and the project's targets, as a table or as JSON.
 */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "aio-compat.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double tmp[64];

	if (n <= 0)
		return -1;
	if (n > 64)
		n = 64;
	memcpy(tmp, v, (size_t)n * sizeof(*v));
	qsort(tmp, (size_t)n, sizeof(*tmp), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static const struct cell *find_cell(const struct bench *b, const char *workload, const char *name)
{
	int i;

	for (i = 0; i < b->ncells; i++)
		if (!strcmp(b->cells[i].w->name, workload) && !strcmp(b->cells[i].c->name, name))
			return b->cells[i].runs ? &b->cells[i] : NULL;
	return NULL;
}

static const char *ref_of(const struct cell *cell)
{
	if (cell->w->ref_native && cell->c->kind == ENGINE_LIB &&
	    cell->c->backend == AIO_COMPAT_NATIVE)
		return cell->w->ref_native;
	return cell->w->ref;
}

/* Median ops/s of a over b's, or -1 when either is missing. */
static double ratio(const struct bench *b, const char *workload, const char *num, const char *den)
{
	const struct cell *x = find_cell(b, workload, num), *y = find_cell(b, workload, den);
	double d;

	if (!x || !y)
		return -1;
	d = median(y->ops_s, y->runs);
	return d > 0 ? median(x->ops_s, x->runs) / d : -1;
}

/* num against the faster of the two that dens names, "a|b". */
static double ratio_best(const struct bench *b, const char *workload, const char *num,
			 const char *dens)
{
	const char *bar = strchr(dens, '|');
	char first[64];
	double r1, r2;

	snprintf(first, sizeof(first), "%.*s", (int)(bar - dens), dens);
	r1 = ratio(b, workload, num, first);
	r2 = ratio(b, workload, num, bar + 1);
	if (r1 < 0 || r2 < 0)
		return r1 < 0 ? r2 : r1;
	return r1 < r2 ? r1 : r2;
}

static double cell_syscalls(const struct bench *b, const char *workload, const char *name)
{
	const struct cell *x = find_cell(b, workload, name);

	return x ? x->syscalls : -1;
}

enum goal {
	AT_LEAST,
	AT_MOST,
	INFO
};

struct target {
	const char *what;
	/* den NULL: num's syscalls/op; "a|b": against the faster of a and b */
	const char *workload, *num, *den;
	enum goal goal;
	double bound;
};

static const struct target targets[] = {
	{ "lib-uring / liburing, tmpfs depth 1", "tmpfs-qd1", "lib-uring", "liburing", AT_LEAST,
	  0.95 },
	{ "lib-uring / liburing, tmpfs depth 32", "tmpfs-qd32", "lib-uring", "liburing", AT_LEAST,
	  0.95 },
	{ "lib-native / libaio, tmpfs depth 1", "tmpfs-qd1", "lib-native", "libaio", AT_LEAST,
	  0.95 },
	{ "lib-native / libaio, tmpfs depth 32", "tmpfs-qd32", "lib-native", "libaio", AT_LEAST,
	  0.95 },
	{ "lib-auto / best of libaio and liburing, tmpfs depth 1", "tmpfs-qd1", "lib-auto",
	  "libaio|liburing", AT_LEAST, 0.95 },
	{ "lib-auto / best of libaio and liburing, tmpfs depth 32", "tmpfs-qd32", "lib-auto",
	  "libaio|liburing", AT_LEAST, 0.95 },
	{ "lib-auto / best of libaio and liburing, disk buffered depth 32", "disk-buffered",
	  "lib-auto", "libaio|liburing", AT_LEAST, 0.95 },
	{ "lib-auto / best of libaio and liburing, disk O_DIRECT depth 32", "disk-direct",
	  "lib-auto", "libaio|liburing", AT_LEAST, 0.95 },
	{ "lib-auto ordered / best of libaio waiting and liburing drain, group commit",
	  "group-commit", "lib-auto/ordered", "libaio/wait|liburing/drain", AT_LEAST, 0.95 },
	{ "lib-uring / libaio, disk buffered depth 32", "disk-buffered", "lib-uring", "libaio",
	  AT_LEAST, 3 },
	{ "lib-uring / liburing, disk O_DIRECT depth 32", "disk-direct", "lib-uring", "liburing",
	  INFO, 0 },
	{ "lib-uring ordered / liburing drain, group commit", "group-commit", "lib-uring/ordered",
	  "liburing/drain", AT_LEAST, 0.9 },
	{ "lib-native ordered / liburing drain, group commit", "group-commit", "lib-native/ordered",
	  "liburing/drain", AT_LEAST, 0.9 },
	{ "price of the rule: lib-uring ordered / unordered", "group-commit", "lib-uring/ordered",
	  "lib-uring/unordered", INFO, 0 },
	{ "price of the rule: lib-native ordered / unordered", "group-commit", "lib-native/ordered",
	  "lib-native/unordered", INFO, 0 },
	{ "price of drain: liburing drain / unordered", "group-commit", "liburing/drain",
	  "liburing/unordered", INFO, 0 },
	{ "libaio waiting / liburing drain, group commit", "group-commit", "libaio/wait",
	  "liburing/drain", INFO, 0 },
	{ "glibc aio_fsync / liburing drain, group commit", "group-commit", "posix-aio/aio_fsync",
	  "liburing/drain", INFO, 0 },
	{ "syscalls per dispatch of 64, lib-uring", "dispatch64", "lib-uring", NULL, AT_MOST, 1 },
	{ "syscalls per dispatch of 64, lib-native", "dispatch64", "lib-native", NULL, AT_MOST, 2 },
	{ "syscalls per dispatch of 64, libaio", "dispatch64", "libaio", NULL, INFO, 0 },
	{ "syscalls per dispatch, eventfd, lib-uring", "dispatch64-eventfd", "lib-uring", NULL,
	  INFO, 0 },
	{ "syscalls per dispatch, eventfd, lib-native", "dispatch64-eventfd", "lib-native", NULL,
	  INFO, 0 },
};
#define NR_TARGETS (sizeof(targets) / sizeof(targets[0]))

static double target_value(const struct bench *b, const struct target *t)
{
	if (t->den && strchr(t->den, '|'))
		return ratio_best(b, t->workload, t->num, t->den);
	return t->den ? ratio(b, t->workload, t->num, t->den)
		      : cell_syscalls(b, t->workload, t->num);
}

static const char *verdict(const struct target *t, double v)
{
	if (v < 0)
		return "not measured";
	if (t->goal == INFO)
		return "";
	if (t->goal == AT_LEAST)
		return v >= t->bound ? "met" : "MISSED";
	return v <= t->bound + 1e-9 ? "met" : "MISSED";
}

struct machine {
	long cores;
	char cpu[128];
	struct utsname uts;
	char disk_fs[64], disk_dev[256], shm_fs[64];
	double load_after; /* 1-minute load average, which includes the run */
};

double load_average(void)
{
	double load = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &load) != 1)
			load = -1;
		fclose(f);
	}
	return load;
}

/* The mount holding path: its filesystem type and device. */
static void mount_of(const char *path, char *fs, size_t fslen, char *dev, size_t devlen)
{
	char line[1024], src[256], mnt[512], type[64], real[PATH_MAX];
	size_t best = 0;
	FILE *f = fopen("/proc/self/mounts", "r");

	snprintf(fs, fslen, "?");
	snprintf(dev, devlen, "?");
	if (!realpath(path, real))
		snprintf(real, sizeof(real), "%s", path);
	while (f && fgets(line, sizeof(line), f)) {
		size_t n;

		if (sscanf(line, "%255s %511s %63s", src, mnt, type) != 3)
			continue;
		n = strlen(mnt);
		if (strncmp(real, mnt, n) || (real[n] && real[n] != '/' && n > 1) || n < best)
			continue;
		best = n;
		snprintf(fs, fslen, "%s", type);
		snprintf(dev, devlen, "%s", src);
	}
	if (f)
		fclose(f);
}

static void describe_machine(const struct bench *b, struct machine *m)
{
	char line[256], dev[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	m->cores = sysconf(_SC_NPROCESSORS_ONLN);
	snprintf(m->cpu, sizeof(m->cpu), "?");
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && colon) {
			snprintf(m->cpu, sizeof(m->cpu), "%s", colon + 2);
			m->cpu[strcspn(m->cpu, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	uname(&m->uts);
	m->load_after = load_average();
	mount_of(b->o.dir, m->disk_fs, sizeof(m->disk_fs), m->disk_dev, sizeof(m->disk_dev));
	mount_of(b->o.shm_dir, m->shm_fs, sizeof(m->shm_fs), dev, sizeof(dev));
}

static const char *syscall_method(const struct bench *b)
{
	if (!b->o.count)
		return "not counted (--no-count)";
	if (!b->perf)
		return "ptrace (PTRACE_GET_SYSCALL_INFO), every thread, separate untimed pass";
	if (b->o.detail)
		return "perf counter on raw_syscalls:sys_enter, every thread, separate untimed "
		       "pass;"
		       " names from a ptrace pass, which overstates calls made on a timer";
	return "perf counter on raw_syscalls:sys_enter, every thread, separate untimed pass";
}

static void print_num(double v, int width, int prec)
{
	if (v < 0)
		printf(" %*s", width, "-");
	else
		printf(" %*.*f", width, prec, v);
}

static void print_cell(const struct bench *b, const struct cell *cell)
{
	double r;

	printf("  %-22s", cell->c->name);
	if (!cell->runs) {
		printf(" %s: %s\n", cell->failed ? "failed" : "unavailable",
		       cell->err == -ENOENT && cell->c->kind == ENGINE_LIBAIO
			   ? engine_libaio_error()
			   : strerror(-cell->err));
		return;
	}
	print_num(median(cell->ops_s, cell->runs), 11, 0);
	print_num(median(cell->p50, cell->runs), 9, 1);
	print_num(median(cell->p99, cell->runs), 9, 1);
	print_num(cell->syscalls, 10, 2);
	r = ratio(b, cell->w->name, cell->c->name, ref_of(cell));
	if (r >= 0)
		printf("  %5.2fx %s", r, ref_of(cell));
	printf("\n");
	if (b->o.detail && cell->syscall_detail[0])
		printf("  %22s   %s\n", "", cell->syscall_detail);
}

static void print_text(const struct bench *b, const struct machine *m)
{
	const struct workload *last = NULL;
	size_t t;
	int i;

	printf("aio-compat-bench: %d round%s of %.3f s per contender and workload; medians of the "
	       "rounds\n",
	       b->o.rounds, b->o.rounds > 1 ? "s" : "", b->slice);
	printf("machine: %ld cores (%s), Linux %s, %s on %s (%s), %s on %s\n", m->cores, m->cpu,
	       m->uts.release, b->o.dir, m->disk_fs, m->disk_dev, b->o.shm_dir, m->shm_fs);
	printf("load average: %.2f before, %.2f after%s\n", b->load_before, m->load_after,
	       b->load_before > 0.5 ? " (other work was running: numbers are noisier)" : "");
	printf("system calls: %s\n", syscall_method(b));
	for (i = 0; i < b->ncells; i++) {
		const struct cell *cell = &b->cells[i];

		if (cell->w != last) {
			last = cell->w;
			printf("\n%s: %s\n", last->name, last->what);
			printf("  %-22s %11s %9s %9s %10s  %s\n", "contender",
			       last->kind == WL_COMMIT	   ? "commits/s"
			       : last->kind == WL_DISPATCH ? "runs/s"
							   : "ops/s",
			       "p50 us", "p99 us", last->kind == WL_DISPATCH ? "sys/run" : "sys/op",
			       "ratio to");
		}
		print_cell(b, cell);
	}
	printf("\ntargets\n");
	for (t = 0; t < NR_TARGETS; t++) {
		double v = target_value(b, &targets[t]);

		if (v < 0 && !find_cell(b, targets[t].workload, targets[t].num))
			continue;
		printf("  %-52s", targets[t].what);
		print_num(v, 7, 2);
		if (targets[t].goal != INFO)
			printf("  %s %-5g %s",
			       targets[t].goal == AT_LEAST ? ">=" : "<=", targets[t].bound,
			       verdict(&targets[t], v));
		printf("\n");
	}
}

static void json_num(const char *key, double v, const char *sep)
{
	if (v < 0)
		printf("\"%s\": null%s", key, sep);
	else
		printf("\"%s\": %.4f%s", key, v, sep);
}

static void print_json_cell(const struct bench *b, const struct cell *cell, int last)
{
	int r;

	printf("      {\"contender\": \"%s\", ", cell->c->name);
	if (!cell->runs) {
		printf("\"error\": \"%s\"}%s\n", strerror(-cell->err), last ? "" : ",");
		return;
	}
	json_num("ops_per_sec", median(cell->ops_s, cell->runs), ", ");
	json_num("p50_us", median(cell->p50, cell->runs), ", ");
	json_num("p99_us", median(cell->p99, cell->runs), ", ");
	json_num("syscalls_per_op", cell->syscalls, ", ");
	printf("\"syscalls\": \"%s\", ", cell->syscall_detail);
	json_num("ratio", ratio(b, cell->w->name, cell->c->name, ref_of(cell)), ", ");
	printf("\"ratio_to\": \"%s\", \"rounds_ops_per_sec\": [", ref_of(cell));
	for (r = 0; r < cell->runs; r++)
		printf("%s%.1f", r ? ", " : "", cell->ops_s[r]);
	printf("]}%s\n", last ? "" : ",");
}

static void print_json(const struct bench *b, const struct machine *m)
{
	size_t t;
	int i, w;

	printf("{\n  \"rounds\": %d,\n  \"seconds_per_run\": %.4f,\n", b->o.rounds, b->slice);
	printf("  \"syscall_counting\": \"%s\",\n", syscall_method(b));
	printf("  \"machine\": {\"cores\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", "
	       "\"disk_dir\": \"%s\", \"disk_fs\": \"%s\", \"disk_device\": \"%s\", "
	       "\"shm_dir\": \"%s\", \"shm_fs\": \"%s\", \"load_before\": %.2f, "
	       "\"load_after\": %.2f},\n",
	       m->cores, m->cpu, m->uts.release, b->o.dir, m->disk_fs, m->disk_dev, b->o.shm_dir,
	       m->shm_fs, b->load_before, m->load_after);
	printf("  \"workloads\": [\n");
	for (w = 0; w < b->nwl; w++) {
		int first = -1, lastc = -1;

		for (i = 0; i < b->ncells; i++) {
			if (b->cells[i].w != &b->wl[w])
				continue;
			if (first < 0)
				first = i;
			lastc = i;
		}
		printf("    {\"name\": \"%s\", \"what\": \"%s\", \"reference\": \"%s\", "
		       "\"results\": [\n",
		       b->wl[w].name, b->wl[w].what, b->wl[w].ref);
		for (i = first; i >= 0 && i <= lastc; i++)
			print_json_cell(b, &b->cells[i], i == lastc);
		printf("    ]}%s\n", w + 1 < b->nwl ? "," : "");
	}
	printf("  ],\n  \"targets\": [\n");
	for (t = 0; t < NR_TARGETS; t++) {
		double v = target_value(b, &targets[t]);

		printf("    {\"what\": \"%s\", ", targets[t].what);
		json_num("value", v, ", ");
		if (targets[t].goal == INFO)
			printf("\"goal\": null, \"met\": null");
		else
			printf("\"goal\": \"%s %g\", \"met\": %s",
			       targets[t].goal == AT_LEAST ? ">=" : "<=", targets[t].bound,
			       v < 0				 ? "null"
			       : *verdict(&targets[t], v) == 'm' ? "true"
								 : "false");
		printf("}%s\n", t + 1 < NR_TARGETS ? "," : "");
	}
	printf("  ]\n}\n");
}

void report_text(const struct bench *b)
{
	struct machine m;

	describe_machine(b, &m);
	print_text(b, &m);
}

void report_json(const struct bench *b)
{
	struct machine m;

	describe_machine(b, &m);
	print_json(b, &m);
}
