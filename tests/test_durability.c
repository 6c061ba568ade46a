/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The honest-fsync rule, seen from the disk: on an ext2 filesystem in an
 * image file on a loop device, blocks written with O_DIRECT and then
 * synced are all in the image file once the sync's completion is reaped.
 * The image is read with O_DIRECT at each block's physical offset (FIEMAP),
 * not through the mounted filesystem. Needs root (losetup, mount); skipped
 * otherwise, or where this system gives no loop device.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMAGE_SIZE (64L << 20)
#define BLOCK 4096
#define NR_BLOCKS 1024
#define RING 2048
#define ROUNDS 16
#define WAIT_MS 10000
#define MAX_EXTENTS 1024
#define OLD_BYTE 0xee
#define BLOCK_MAGIC 0x44555241424c4521ull /* "DURABLE!" */

/* The filesystem the tests write to; set up once, torn down even on failure. */
static struct {
	char dir[64]; /* under /var/tmp: the image and the mount point */
	char image[96];
	char mnt[96];
	char loop[64];
	int made_dir, made_mnt, made_image, attached, mounted;
	char skip[256]; /* why the tests cannot run here, or empty */
} fs;

/* The head of every block: which round and block of which file it is. */
struct block_head {
	uint64_t magic;
	uint32_t round;
	uint32_t index;
};

/* Runs a shell command; its first line of output goes to out. Exit status. */
static int run_cmd(char *out, size_t out_len, const char *fmt, ...)
{
	char cmd[512], line[256] = "";
	va_list ap;
	FILE *p;
	int status;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (fgets(line, sizeof(line), p))
		line[strcspn(line, "\n")] = 0;
	while (fgetc(p) != EOF)
		;
	status = pclose(p);
	if (out)
		snprintf(out, out_len, "%s", line);
	return status;
}

static void fs_skip(const char *step, const char *why)
{
	snprintf(fs.skip, sizeof(fs.skip), "%.60s: %.180s", step, why);
}

static int image_create(void)
{
	int fd = open(fs.image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0) {
		fs_skip(fs.image, strerror(errno));
		return -1;
	}
	fs.made_image = 1;
	if (ftruncate(fd, IMAGE_SIZE)) {
		fs_skip("ftruncate", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * A device without a volatile write cache, as many are: a flush is then a
 * no-op and a sync waits for nothing but the filesystem's own writes, so
 * it is quick, and only the order of completions keeps it honest. Where
 * the setting cannot be changed the test still runs, less sharply.
 */
static void write_through(const char *dev)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/block/%.60s/queue/write_cache", dev);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs("write through", f);
	fclose(f);
}

/* Loop devices are unavailable in many containers and build chroots. */
static int loop_attach(void)
{
	char out[256];

	if (run_cmd(out, sizeof(out), "losetup --find --show --direct-io=on %s 2>&1", fs.image) &&
	    run_cmd(out, sizeof(out), "losetup --find --show %s 2>&1", fs.image)) {
		fs_skip("losetup", out);
		return -1;
	}
	if (strncmp(out, "/dev/", 5)) {
		fs_skip("losetup printed", out);
		return -1;
	}
	snprintf(fs.loop, sizeof(fs.loop), "%.60s", out);
	fs.attached = 1;
	write_through(fs.loop + strlen("/dev/"));
	return 0;
}

static void fs_setup(void)
{
	char out[256];

	memset(&fs, 0, sizeof(fs));
	if (geteuid() != 0) {
		fs_skip("not root", "losetup and mount need it");
		return;
	}
	snprintf(fs.dir, sizeof(fs.dir), "/var/tmp/aio-compat-durability-XXXXXX");
	if (!mkdtemp(fs.dir)) {
		fs_skip("mkdtemp", strerror(errno));
		return;
	}
	fs.made_dir = 1;
	snprintf(fs.image, sizeof(fs.image), "%s/ext2.img", fs.dir);
	snprintf(fs.mnt, sizeof(fs.mnt), "%s/mnt", fs.dir);
	if (image_create())
		return;
	if (run_cmd(out, sizeof(out), "mkfs.ext2 -q -F -b %d %s 2>&1", BLOCK, fs.image)) {
		fs_skip("mkfs.ext2", out);
		return;
	}
	if (mkdir(fs.mnt, 0700)) {
		fs_skip("mkdir", strerror(errno));
		return;
	}
	fs.made_mnt = 1;
	if (loop_attach())
		return;
	if (mount(fs.loop, fs.mnt, "ext2", 0, NULL)) {
		fs_skip("mount -t ext2", strerror(errno));
		return;
	}
	fs.mounted = 1;
}

static void fs_teardown(void)
{
	if (fs.mounted && umount2(fs.mnt, 0) && umount2(fs.mnt, MNT_DETACH))
		fprintf(stderr, "umount %s: %s\n", fs.mnt, strerror(errno));
	if (fs.attached && run_cmd(NULL, 0, "losetup -d %s 2>&1", fs.loop))
		fprintf(stderr, "losetup -d %s failed\n", fs.loop);
	if (fs.made_mnt)
		rmdir(fs.mnt);
	if (fs.made_image)
		unlink(fs.image);
	if (fs.made_dir)
		rmdir(fs.dir);
	memset(&fs, 0, sizeof(fs));
}

static int skipped(void)
{
	if (!fs.skip[0])
		return 0;
	test_skip("loop", "%s", fs.skip);
	return 1;
}

static void block_fill(unsigned char *b, int round, int index)
{
	struct block_head head = { BLOCK_MAGIC, (uint32_t)round, (uint32_t)index };

	memset(b, (index * 31 + round * 7 + 1) & 0xff, BLOCK);
	memcpy(b, &head, sizeof(head));
}

/* The block number in the file of the i-th write: scattered, each once. */
static int file_block(int i)
{
	return (i * 97) % NR_BLOCKS; /* 97 is prime to NR_BLOCKS: each block once */
}

/* Where each file block lies in the image, from FIEMAP without a sync of its own. */
static void map_blocks(int fd, long long *phys)
{
	size_t size = sizeof(struct fiemap) + MAX_EXTENTS * sizeof(struct fiemap_extent);
	struct fiemap *fm = calloc(1, size);
	const unsigned bad = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
			     FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_NOT_ALIGNED |
			     FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL |
			     FIEMAP_EXTENT_UNWRITTEN;

	ck_assert_ptr_nonnull(fm);
	fm->fm_length = FIEMAP_MAX_OFFSET;
	fm->fm_extent_count = MAX_EXTENTS;
	ck_assert_msg(ioctl(fd, FS_IOC_FIEMAP, fm) == 0, "FS_IOC_FIEMAP: %s", strerror(errno));
	for (int b = 0; b < NR_BLOCKS; b++)
		phys[b] = -1;
	for (unsigned e = 0; e < fm->fm_mapped_extents; e++) {
		const struct fiemap_extent *x = &fm->fm_extents[e];

		ck_assert_msg(!(x->fe_flags & bad), "extent at %llu: flags 0x%x",
			      (unsigned long long)x->fe_logical, x->fe_flags);
		for (uint64_t off = 0; off < x->fe_length; off += BLOCK) {
			uint64_t b = (x->fe_logical + off) / BLOCK;

			if (b < NR_BLOCKS)
				phys[b] = (long long)(x->fe_physical + off);
		}
	}
	free(fm);
}

/* Reads are made in runs of blocks contiguous in the image: sooner done. */
static int run_length(const long long *phys, int from)
{
	int n = 1;

	while (from + n < NR_BLOCKS && phys[from + n] == phys[from] + (long long)n * BLOCK)
		n++;
	return n;
}

/* Every block, read from the image file itself at its physical offset. */
static void check_image(int fd, int round, const int *reaped_before_sync)
{
	long long phys[NR_BLOCKS];
	unsigned char *want = aligned_buf(BLOCK, 0);
	unsigned char *got = aligned_buf((size_t)NR_BLOCKS * BLOCK, 0);
	int img = open(fs.image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	int write_of[NR_BLOCKS];

	ck_assert_msg(img >= 0, "open %s O_DIRECT: %s", fs.image, strerror(errno));
	map_blocks(fd, phys);
	for (int b = 0; b < NR_BLOCKS; b++) {
		int n;

		ck_assert_msg(phys[b] >= 0, "round %d: file block %d has no extent", round, b);
		n = run_length(phys, b);
		ck_assert_int_eq(pread(img, got + (size_t)b * BLOCK, (size_t)n * BLOCK, phys[b]),
				 (ssize_t)n * BLOCK);
		b += n - 1;
	}
	for (int i = 0; i < NR_BLOCKS; i++)
		write_of[file_block(i)] = i;
	for (int b = 0; b < NR_BLOCKS; b++) {
		const unsigned char *g = got + (size_t)b * BLOCK;

		block_fill(want, round, b);
		ck_assert_msg(
		    !memcmp(g, want, BLOCK),
		    "round %d: file block %d (write %d, image offset %lld) is not in the "
		    "image once the sync's completion was reaped (the write was %s before the "
		    "sync); first bytes 0x%02x%02x%02x%02x, expected 0x%02x%02x%02x%02x",
		    round, b, write_of[b], phys[b],
		    reaped_before_sync[write_of[b]] ? "reaped" : "not yet reaped", g[0], g[1], g[2],
		    g[3], want[0], want[1], want[2], want[3]);
	}
	close(img);
	free(want);
	free(got);
}

/*
 * A file whose blocks are already allocated, written with OLD_BYTE and
 * synced: the sync after the test's writes then has no metadata to write
 * and is quick, which is when the kernel lets it overtake writes, and a
 * block not yet rewritten shows as OLD_BYTE in the image.
 */
static int file_allocated(const char *path)
{
	unsigned char *old = aligned_buf((size_t)NR_BLOCKS * BLOCK, OLD_BYTE);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);

	ck_assert_msg(fd >= 0, "open %s O_DIRECT: %s", path, strerror(errno));
	ck_assert_int_eq(pwrite(fd, old, (size_t)NR_BLOCKS * BLOCK, 0), (ssize_t)NR_BLOCKS * BLOCK);
	ck_assert_int_eq(fsync(fd), 0);
	free(old);
	return fd;
}

/*
 * NR_BLOCKS single-block O_DIRECT writes and a sync, in one io_submit or
 * with the sync in a later one; events are reaped one at a time up to the
 * sync's, and the image is read at that moment.
 */
static void write_sync_check(io_context_t ctx, int round, int op, int split)
{
	static struct iocb io[NR_BLOCKS + 1];
	struct iocb *ptrs[NR_BLOCKS + 1];
	int arrived[NR_BLOCKS] = { 0 };
	unsigned char *data = aligned_buf((size_t)NR_BLOCKS * BLOCK, 0);
	char path[128];
	int fd, nr_first = split ? NR_BLOCKS : NR_BLOCKS + 1, reaped = 0;

	snprintf(path, sizeof(path), "%s/data-%d", fs.mnt, round);
	fd = file_allocated(path);
	for (int i = 0; i < NR_BLOCKS; i++) {
		unsigned char *b = data + (size_t)i * BLOCK;

		block_fill(b, round, file_block(i));
		io_prep_pwrite(&io[i], fd, b, BLOCK, (long long)file_block(i) * BLOCK);
		ptrs[i] = &io[i];
	}
	if (op == IO_CMD_FSYNC)
		io_prep_fsync(&io[NR_BLOCKS], fd);
	else
		io_prep_fdsync(&io[NR_BLOCKS], fd);
	ptrs[NR_BLOCKS] = &io[NR_BLOCKS];
	ck_assert_int_eq(io_submit(ctx, nr_first, ptrs), nr_first);
	if (split)
		ck_assert_int_eq(io_submit(ctx, 1, ptrs + NR_BLOCKS), 1);

	for (;;) {
		struct io_event ev;
		int got = getevents_ms(ctx, 1, 1, &ev, WAIT_MS);
		long i;

		ck_assert_msg(got == 1,
			      "io_getevents(1, 1, 10 s): expected 1, got %d after %d events", got,
			      reaped);
		i = (struct iocb *)ev.obj - io;
		ck_assert(i >= 0 && i <= NR_BLOCKS);
		reaped++;
		if (i == NR_BLOCKS) {
			ck_assert_msg(ev.res == 0, "sync: res %ld, expected 0", (long)ev.res);
			break;
		}
		ck_assert_msg(ev.res == BLOCK, "write %ld: res %ld, expected %d", i, (long)ev.res,
			      BLOCK);
		arrived[i] = 1;
	}
	check_image(fd, round, arrived);
	ck_assert_msg(reaped == NR_BLOCKS + 1,
		      "the sync's event was the %d-th of %d: %d earlier writes came after it",
		      reaped, NR_BLOCKS + 1, NR_BLOCKS + 1 - reaped);
	close(fd);
	unlink(path);
	free(data);
}

START_TEST(test_synced_blocks_in_image)
{
	io_context_t ctx = NULL;

	if (skipped())
		return;
	ck_assert_int_eq(io_setup(RING, &ctx), 0);
	for (int round = 0; round < ROUNDS; round++)
		write_sync_check(ctx, round, round % 2 ? IO_CMD_FDSYNC : IO_CMD_FSYNC,
				 (round / 2) % 2);
	ck_assert_int_eq(io_destroy(ctx), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("durability");
	TCase *tc = tcase_create("ext2 on a loop device");

	tcase_add_unchecked_fixture(tc, fs_setup, fs_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_synced_blocks_in_image);
	suite_add_tcase(s, tc);
	return run_suite(s, "durability");
}
