/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The binary interface: the structures of the system <libaio.h> against the
 * kernel's, the completion ring behind io_context_t, and the symbols and
 * versions the library exports against those of libaio.so.1.
 */
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*
 * The kernel's layout, from <linux/aio_abi.h>. That header cannot share a
 * translation unit with <libaio.h> (both define struct iocb and struct
 * io_event), so its offsets are written out here.
 */
#define KERNEL_IOCB_SIZE 64
#define KERNEL_IO_EVENT_SIZE 32

#define ASSERT_FIELD(type, member, offset, size)                                                   \
	do {                                                                                       \
		ck_assert_msg(offsetof(type, member) == (offset),                                  \
			      #type "." #member " at %zu, the kernel's at %d",                     \
			      offsetof(type, member), (offset));                                   \
		ck_assert_msg(sizeof(((type *)0)->member) == (size),                               \
			      #type "." #member " is %zu bytes, the kernel's %d",                  \
			      sizeof(((type *)0)->member), (size));                                \
	} while (0)

START_TEST(test_iocb_layout)
{
	ck_assert_uint_eq(sizeof(struct iocb), KERNEL_IOCB_SIZE);
	ASSERT_FIELD(struct iocb, data, 0, 8);		  /* aio_data */
	ASSERT_FIELD(struct iocb, key, 8, 4);		  /* aio_key */
	ASSERT_FIELD(struct iocb, aio_rw_flags, 12, 4);	  /* aio_rw_flags */
	ASSERT_FIELD(struct iocb, aio_lio_opcode, 16, 2); /* aio_lio_opcode */
	ASSERT_FIELD(struct iocb, aio_reqprio, 18, 2);	  /* aio_reqprio */
	ASSERT_FIELD(struct iocb, aio_fildes, 20, 4);	  /* aio_fildes */
	ASSERT_FIELD(struct iocb, u.c.buf, 24, 8);	  /* aio_buf */
	ASSERT_FIELD(struct iocb, u.c.nbytes, 32, 8);	  /* aio_nbytes */
	ASSERT_FIELD(struct iocb, u.c.offset, 40, 8);	  /* aio_offset */
	ASSERT_FIELD(struct iocb, u.c.flags, 56, 4);	  /* aio_flags */
	ASSERT_FIELD(struct iocb, u.c.resfd, 60, 4);	  /* aio_resfd */
	/* The vectored view of the same bytes: aio_buf, aio_nbytes, aio_offset. */
	ASSERT_FIELD(struct iocb, u.v.vec, 24, 8);
	ASSERT_FIELD(struct iocb, u.v.nr, 32, 8);
	ASSERT_FIELD(struct iocb, u.v.offset, 40, 8);
	/* IOCB_CMD_POLL takes its events from the low half of aio_buf. */
	ASSERT_FIELD(struct iocb, u.poll.events, 24, 4);
}
END_TEST

START_TEST(test_io_event_layout)
{
	ck_assert_uint_eq(sizeof(struct io_event), KERNEL_IO_EVENT_SIZE);
	ASSERT_FIELD(struct io_event, data, 0, 8);
	ASSERT_FIELD(struct io_event, obj, 8, 8);
	ASSERT_FIELD(struct io_event, res, 16, 8);
	ASSERT_FIELD(struct io_event, res2, 24, 8);
}
END_TEST

START_TEST(test_io_iocb_vector_layout)
{
	ck_assert_uint_eq(sizeof(struct io_iocb_vector), 24);
	ASSERT_FIELD(struct io_iocb_vector, vec, 0, 8);
	ASSERT_FIELD(struct io_iocb_vector, nr, 8, 8);
	ASSERT_FIELD(struct io_iocb_vector, offset, 16, 8);
	ck_assert_uint_eq(offsetof(struct iocb, u.v), 24);
}
END_TEST

START_TEST(test_opcodes_and_flags)
{
	struct iocb iocb;

	/* IOCB_CMD_* of <linux/aio_abi.h>. */
	ck_assert_int_eq(IO_CMD_PREAD, 0);
	ck_assert_int_eq(IO_CMD_PWRITE, 1);
	ck_assert_int_eq(IO_CMD_FSYNC, 2);
	ck_assert_int_eq(IO_CMD_FDSYNC, 3);
	ck_assert_int_eq(IO_CMD_POLL, 5);
	ck_assert_int_eq(IO_CMD_NOOP, 6);
	ck_assert_int_eq(IO_CMD_PREADV, 7);
	ck_assert_int_eq(IO_CMD_PWRITEV, 8);
	/* aio_context_t is a __kernel_ulong_t. */
	ck_assert_uint_eq(sizeof(io_context_t), sizeof(unsigned long));

	io_prep_pread(&iocb, 3, NULL, 0, 0);
	io_set_eventfd(&iocb, 7);
	ck_assert_uint_eq(iocb.u.c.flags, 1); /* IOCB_FLAG_RESFD */
	ck_assert_uint_eq(iocb.u.c.resfd, 7);
}
END_TEST

START_TEST(test_context_is_a_kernel_ring)
{
	io_context_t ctx = NULL;
	struct aio_ring *ring;
	struct iocb iocb, *ios[1] = { &iocb };
	struct io_event ev;
	struct pollfd pfd;
	void *buf = aligned_buf(512, 0x3c);
	int fd = tmpfile_in(NULL, 0, 0);
	int efd = eventfd(0, EFD_CLOEXEC);
	uint64_t count;
	unsigned head;

	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(io_setup(16, &ctx), 0);
	ring = (struct aio_ring *)ctx;
	ck_assert_uint_eq(ring->magic, AIO_RING_MAGIC);
	ck_assert_uint_ge(ring->nr, 16);
	ck_assert_uint_eq(ring->compat_features, AIO_RING_COMPAT_FEATURES);
	ck_assert_uint_eq(ring->incompat_features, 0);
	ck_assert_uint_eq(ring->header_length, sizeof(struct aio_ring));
	ck_assert_uint_eq(ring->head, ring->tail);

	/* QEMU's way: wait on the iocb's eventfd, then read the ring itself. */
	io_prep_pwrite(&iocb, fd, buf, 512, 0);
	io_set_eventfd(&iocb, efd);
	iocb.data = &iocb;
	ck_assert_int_eq(io_submit(ctx, 1, ios), 1);
	pfd = (struct pollfd){ .fd = efd, .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
	ck_assert_int_eq(read(efd, &count, sizeof(count)), sizeof(count));
	ck_assert_uint_eq(count, 1);
	head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
	ck_assert_uint_ne(__atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE), head);
	ck_assert_ptr_eq(ring->io_events[head].obj, &iocb);
	ck_assert_ptr_eq(ring->io_events[head].data, &iocb);
	ck_assert_int_eq((long)ring->io_events[head].res, 512);
	/* fio's userspace_reap: consuming means moving head on. */
	__atomic_store_n(&ring->head, (head + 1) % ring->nr, __ATOMIC_RELEASE);
	ck_assert_int_eq(getevents_ms(ctx, 0, 1, &ev, 0), 0);

	/* And io_getevents moves head the same way. */
	io_prep_pwrite(&iocb, fd, buf, 512, 512);
	ck_assert_int_eq(io_submit(ctx, 1, ios), 1);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, &ev, 2000), 1);
	ck_assert_ptr_eq(ev.obj, &iocb);
	ck_assert_uint_eq(__atomic_load_n(&ring->head, __ATOMIC_ACQUIRE),
			  __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE));
	ck_assert_uint_eq(ring->head, (head + 2) % ring->nr);

	ck_assert_int_eq(io_destroy(ctx), 0);
	close(efd);
	close(fd);
	free(buf);
}
END_TEST

/* Symbols and versions, as `readelf -W --dyn-syms` shows them. */
#define MAX_SYMS 128

struct dynsym {
	char name[128]; /* name@VERSION or name@@VERSION */
	char type[16];
};

struct dynsyms {
	int nr;
	struct dynsym syms[MAX_SYMS];
	int unversioned;	 /* defined symbols without a version, but syscall */
	int syscall_unversioned; /* the syscall(2) interposer, which must bind any */
};

static void read_dynsyms(const char *path, struct dynsyms *out)
{
	char cmd[PATH_MAX + 64], line[512];
	FILE *p;
	int status;

	memset(out, 0, sizeof(*out));
	snprintf(cmd, sizeof(cmd), "readelf -W --dyn-syms '%s'", path);
	p = popen(cmd, "r");
	ck_assert_msg(p != NULL, "popen %s: %s", cmd, strerror(errno));
	while (fgets(line, sizeof(line), p)) {
		char num[16], type[16], ndx[16], name[128];

		/* Num: Value Size Type Bind Vis Ndx Name */
		if (sscanf(line, " %15[0-9]: %*s %*s %15s %*s %*s %15s %127s", num, type, ndx,
			   name) != 4)
			continue;
		if (strcmp(ndx, "UND") == 0)
			continue;
		if (!strchr(name, '@')) {
			/* An ABS entry without '@' names a version node. */
			if (strcmp(name, "syscall") == 0)
				out->syscall_unversioned = 1;
			else if (strcmp(ndx, "ABS") != 0)
				out->unversioned++;
			continue;
		}
		ck_assert_int_lt(out->nr, MAX_SYMS);
		snprintf(out->syms[out->nr].name, sizeof(out->syms[0].name), "%s", name);
		snprintf(out->syms[out->nr].type, sizeof(out->syms[0].type), "%s", type);
		out->nr++;
	}
	status = pclose(p);
	ck_assert_msg(status == 0, "%s exited with status 0x%x", cmd, status);
}

static const struct dynsym *find_sym(const struct dynsyms *s, const char *name)
{
	for (int i = 0; i < s->nr; i++)
		if (strcmp(s->syms[i].name, name) == 0)
			return &s->syms[i];
	return NULL;
}

/* The name before the version. */
static size_t base_len(const char *versioned)
{
	return strcspn(versioned, "@");
}

static int has_base(const struct dynsyms *s, const char *versioned)
{
	size_t len = base_len(versioned);

	for (int i = 0; i < s->nr; i++)
		if (base_len(s->syms[i].name) == len &&
		    strncmp(s->syms[i].name, versioned, len) == 0)
			return 1;
	return 0;
}

/* The reference libaio.so.1, wherever the dynamic linker finds it. */
static void libaio_path(char *path, size_t size)
{
	struct link_map *map = NULL;
	void *h = dlopen("libaio.so.1", RTLD_NOW | RTLD_LOCAL);

	if (h && dlinfo(h, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name[0]) {
		snprintf(path, size, "%s", map->l_name);
		dlclose(h);
		return;
	}
	if (h)
		dlclose(h);
	snprintf(path, size, "%s", "/usr/lib/x86_64-linux-gnu/libaio.so.1");
}

/* The library under test: the one this process has mapped. */
static void compat_path(char *path, size_t size)
{
	char line[PATH_MAX + 128];
	FILE *maps = fopen("/proc/self/maps", "r");

	ck_assert_ptr_nonnull(maps);
	while (fgets(line, sizeof(line), maps)) {
		char *file = strchr(line, '/');
		char *base;

		if (!file)
			continue;
		file[strcspn(file, "\n")] = '\0';
		base = strrchr(file, '/') + 1;
		if (strncmp(base, "libaio-compat.so", 16) == 0) {
			snprintf(path, size, "%s", file);
			fclose(maps);
			return;
		}
	}
	fclose(maps);
	ck_abort_msg("no libaio-compat.so mapped in this process");
}

static struct dynsyms libaio_syms, compat_syms;

/* Loads both tables. */
static void load_both(void)
{
	char aio[PATH_MAX], compat[PATH_MAX];

	compat_path(compat, sizeof(compat));
	libaio_path(aio, sizeof(aio));
	read_dynsyms(aio, &libaio_syms);
	read_dynsyms(compat, &compat_syms);
	/* The reference itself, as measured: io_getevents has two versions. */
	ck_assert_ptr_nonnull(find_sym(&libaio_syms, "io_setup@@LIBAIO_0.4"));
	ck_assert_ptr_nonnull(find_sym(&libaio_syms, "io_getevents@LIBAIO_0.1"));
	ck_assert_ptr_nonnull(find_sym(&libaio_syms, "io_getevents@@LIBAIO_0.4"));
	ck_assert_ptr_nonnull(find_sym(&libaio_syms, "io_pgetevents@@LIBAIO_0.5"));
}

START_TEST(test_exports_cover_libaio)
{
	load_both();
	for (int i = 0; i < libaio_syms.nr; i++) {
		const struct dynsym *want = &libaio_syms.syms[i];
		const struct dynsym *got = find_sym(&compat_syms, want->name);

		ck_assert_msg(got != NULL, "libaio.so.1 defines %s, the library does not",
			      want->name);
		ck_assert_msg(strcmp(got->type, want->type) == 0, "%s is %s, libaio's is %s",
			      want->name, got->type, want->type);
	}
}
END_TEST

START_TEST(test_exports_nothing_else)
{
	static const char *const extensions[] = {
		"aio_compat_setup@@AIO_COMPAT_1.0",
		"aio_compat_backend@@AIO_COMPAT_1.0",
		"aio_compat_backend_name@@AIO_COMPAT_1.0",
		"aio_compat_queue_run@@AIO_COMPAT_1.0",
		"aio_compat_set_fsync_order@@AIO_COMPAT_1.0",
		"aio_compat_held_syncs@@AIO_COMPAT_1.0",
	};

	load_both();
	ck_assert_msg(compat_syms.unversioned == 0, "%d exported symbols carry no version",
		      compat_syms.unversioned);
	/* Unversioned, it binds a program's syscall@GLIBC_x of any version. */
	ck_assert_msg(compat_syms.syscall_unversioned, "syscall is not exported unversioned");
	for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++)
		ck_assert_msg(find_sym(&compat_syms, extensions[i]), "%s is not exported",
			      extensions[i]);
	for (int i = 0; i < compat_syms.nr; i++) {
		const char *name = compat_syms.syms[i].name;

		ck_assert_msg(strncmp(name, "aio_compat_", 11) == 0 || has_base(&libaio_syms, name),
			      "exports %s, which is neither libaio's nor an extension", name);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("abi");
	TCase *layout = tcase_create("layout");
	TCase *ring = tcase_create("ring");

	tcase_add_test(layout, test_iocb_layout);
	tcase_add_test(layout, test_io_event_layout);
	tcase_add_test(layout, test_io_iocb_vector_layout);
	tcase_add_test(layout, test_opcodes_and_flags);
	suite_add_tcase(s, layout);

	tcase_add_test(ring, test_context_is_a_kernel_ring);
	suite_add_tcase(s, ring);

	/* The library's exports: on libaio itself (tests/libaio/) there is none to check. */
	if (aio_compat_backend) {
		TCase *symbols = tcase_create("symbols");

		tcase_add_test(symbols, test_exports_cover_libaio);
		tcase_add_test(symbols, test_exports_nothing_else);
		suite_add_tcase(s, symbols);
	}

	return run_suite(s, "abi");
}
