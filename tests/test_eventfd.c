/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * IOCB_FLAG_RESFD: the eventfd counts completions, and by the time it is
 * signalled the event is in the ring the context points at. Programs such
 * as QEMU's linux-aio wait only on the eventfd and read the ring
 * themselves, advancing head without calling the library.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static io_context_t ctx;
static struct aio_ring *ring;
static int efd;
static int fd; /* 64 KiB on tmpfs */
static char buf[4096];

static void ctx_up(void)
{
	ctx = NULL;
	ck_assert_int_eq(io_setup(16, &ctx), 0);
	ring = (struct aio_ring *)ctx;
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(efd, 0);
	fd = tmpfile_in(NULL, 65536, O_RDWR);
}

static void ctx_down(void)
{
	expect_no_event(ctx, 0);
	ck_assert_int_eq(io_destroy(ctx), 0);
	close(efd);
	close(fd);
}

/* Waits up to 2 s for the eventfd and returns its count (which read() resets). */
static uint64_t wait_eventfd(void)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };
	uint64_t n = 0;

	ck_assert_int_eq(poll(&p, 1, 2000), 1);
	ck_assert_int_eq(read(efd, &n, sizeof(n)), sizeof(n));
	ck_assert_uint_gt(n, 0);
	return n;
}

/* Events in the ring that the program has not consumed yet. */
static unsigned ring_pending(void)
{
	unsigned tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);

	return (tail + ring->nr - ring->head) % ring->nr;
}

/* Takes the event at head out of the ring, as QEMU's qemu_laio_process_completions does. */
static struct io_event ring_take(void)
{
	struct io_event ev;

	ck_assert_uint_gt(ring_pending(), 0);
	ev = ring->io_events[ring->head];
	__atomic_store_n(&ring->head, (ring->head + 1) % ring->nr, __ATOMIC_RELEASE);
	return ev;
}

static void prep_read_resfd(struct iocb *cb, long long off, void *cookie)
{
	io_prep_pread(cb, fd, buf, 512, off);
	io_set_eventfd(cb, efd);
	cb->data = cookie;
}

START_TEST(signalled_once_per_completion)
{
	struct iocb cbs[5], *list[5];
	struct io_event ev[5];
	uint64_t total = 0, n;

	for (int i = 0; i < 5; i++) {
		prep_read_resfd(&cbs[i], 512 * i, NULL);
		list[i] = &cbs[i];
	}
	ck_assert_int_eq(io_submit(ctx, 5, list), 5);
	reap_n(ctx, 5, ev, 2000);
	while (total < 5)
		total += wait_eventfd();
	ck_assert_uint_eq(total, 5);
	/* And no more later. */
	usleep(20000);
	ck_assert_int_eq(read(efd, &n, sizeof(n)), -1);
	ck_assert_int_eq(errno, EAGAIN);
}
END_TEST

START_TEST(only_flagged_iocbs_signal)
{
	struct iocb a, b, *list[2] = { &a, &b };
	struct io_event ev[2];
	uint64_t n;

	prep_read_resfd(&a, 0, NULL);
	io_prep_pread(&b, fd, buf, 512, 512);
	ck_assert_int_eq(io_submit(ctx, 2, list), 2);
	reap_n(ctx, 2, ev, 2000);
	ck_assert_uint_eq(wait_eventfd(), 1);
	usleep(20000);
	ck_assert_int_eq(read(efd, &n, sizeof(n)), -1);
}
END_TEST

START_TEST(event_is_in_ring_when_signalled)
{
	struct iocb cb;
	struct io_event ev;
	unsigned head = ring->head;

	prep_read_resfd(&cb, 0, (void *)0xabc);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_uint_eq(wait_eventfd(), 1);
	ck_assert_uint_eq(ring_pending(), 1);
	ck_assert_uint_eq(ring->head, head);
	ev = ring_take();
	ck_assert_ptr_eq(ev.obj, &cb);
	ck_assert_ptr_eq(ev.data, (void *)0xabc);
	ck_assert_int_eq((long)ev.res, 512);
	ck_assert_int_eq((long)ev.res2, 0);
	/* Consumed in the ring means consumed for io_getevents too. */
	ck_assert_int_eq(getevents_ms(ctx, 0, 1, &ev, 0), 0);
	ck_assert_int_eq(getevents_ms(ctx, 1, 1, &ev, 20), 0);
}
END_TEST

/*
 * QEMU's loop: wait on the eventfd, then take every event the ring holds.
 * Every signalled completion must be in the ring by then. More rounds
 * than the ring has slots, so that head and tail wrap.
 */
static void ring_reader_loop(int rounds, int batch)
{
	struct iocb *cbs = calloc(batch, sizeof(*cbs));
	struct iocb **list = calloc(batch, sizeof(*list));
	unsigned long signalled = 0, taken = 0, want;
	char *seen = calloc(batch, 1);

	ck_assert_int_le(batch, 16);
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < batch; i++) {
			prep_read_resfd(&cbs[i], 512 * i, (void *)(long)(r * batch + i));
			list[i] = &cbs[i];
			seen[i] = 0;
		}
		ck_assert_int_eq(io_submit(ctx, batch, list), batch);
		want = taken + batch;
		while (taken < want) {
			signalled += wait_eventfd();
			ck_assert_uint_ge(taken + ring_pending(), signalled);
			while (ring_pending()) {
				struct io_event ev = ring_take();
				long k = ev.obj - cbs;

				ck_assert(k >= 0 && k < batch && !seen[k]);
				seen[k] = 1;
				ck_assert_ptr_eq(ev.data, (void *)(long)(r * batch + k));
				ck_assert_int_eq((long)ev.res, 512);
				taken++;
			}
		}
		ck_assert_uint_eq(taken, want);
		/*
		 * An event may be seen in the ring before its signal lands (the
		 * kernel's aio_complete() fills the ring, then signals); every
		 * signal must still come, once.
		 */
		while (signalled < taken)
			signalled += wait_eventfd();
		ck_assert_uint_eq(signalled, taken);
	}
	free(cbs);
	free(list);
	free(seen);
}

START_TEST(ring_reader_single)
{
	ck_assert_uint_lt(ring->nr, 300);
	ring_reader_loop(300, 1);
}
END_TEST

START_TEST(ring_reader_batches)
{
	ring_reader_loop(60, 7);
}
END_TEST

static void *write_pipe_later(void *arg)
{
	int wfd = *(int *)arg;
	struct timespec ts = { 0, 50 * 1000000 };

	nanosleep(&ts, NULL);
	return write(wfd, "x", 1) == 1 ? NULL : (void *)1;
}

/* A completion that happens long after io_submit returned, with nobody in the library. */
START_TEST(ring_reader_late_completion)
{
	int p[2];
	struct iocb cb;
	struct io_event ev;
	pthread_t t;

	ck_assert_int_eq(pipe(p), 0);
	io_prep_poll(&cb, p[0], POLLIN);
	io_set_eventfd(&cb, efd);
	cb.data = (void *)0x9011;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(pthread_create(&t, NULL, write_pipe_later, &p[1]), 0);
	ck_assert_uint_eq(wait_eventfd(), 1);
	ev = ring_take();
	ck_assert_ptr_eq(ev.obj, &cb);
	ck_assert_ptr_eq(ev.data, (void *)0x9011);
	ck_assert_int_eq((long)ev.res & POLLIN, POLLIN);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(ring_reader_direct_io)
{
	int dfd = tmpfile_in("/var/tmp", 0, O_RDWR | O_DIRECT);
	char *ab = aligned_buf(65536, 0x77);
	struct iocb cb;
	struct io_event ev;

	ck_assert_int_eq(pwrite(dfd, ab, 65536, 0), 65536);
	io_prep_pread(&cb, dfd, ab, 65536, 0);
	io_set_eventfd(&cb, efd);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_uint_eq(wait_eventfd(), 1);
	ev = ring_take();
	ck_assert_ptr_eq(ev.obj, &cb);
	ck_assert_int_eq((long)ev.res, 65536);
	free(ab);
	close(dfd);
}
END_TEST

START_TEST(blocking_read_on_eventfd)
{
	int bfd = eventfd(0, EFD_CLOEXEC);
	struct iocb cb;
	struct io_event ev;
	uint64_t n = 0;

	/* A plain blocking read(), as the simplest program waits. */
	io_prep_pwrite(&cb, fd, buf, 512, 0);
	io_set_eventfd(&cb, bfd);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(read(bfd, &n, sizeof(n)), sizeof(n));
	ck_assert_uint_eq(n, 1);
	ev = ring_take();
	ck_assert_ptr_eq(ev.obj, &cb);
	ck_assert_int_eq((long)ev.res, 512);
	close(bfd);
}
END_TEST

START_TEST(bad_resfd)
{
	int p[2];
	struct iocb cb;

	ck_assert_int_eq(pipe(p), 0);
	io_prep_pread(&cb, fd, buf, 512, 0);
	io_set_eventfd(&cb, -1);
	ck_assert_int_eq(submit_one(ctx, &cb), -EBADF);
	io_prep_pread(&cb, fd, buf, 512, 0);
	io_set_eventfd(&cb, 9999);
	ck_assert_int_eq(submit_one(ctx, &cb), -EBADF);
	/* A descriptor that is open but not an eventfd. */
	io_prep_pread(&cb, fd, buf, 512, 0);
	io_set_eventfd(&cb, fd);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_pread(&cb, fd, buf, 512, 0);
	io_set_eventfd(&cb, p[0]);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	io_prep_fsync(&cb, fd);
	io_set_eventfd(&cb, p[1]);
	ck_assert_int_eq(submit_one(ctx, &cb), -EINVAL);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(resfd_without_flag_is_ignored)
{
	struct iocb cb;
	uint64_t n;

	io_prep_pread(&cb, fd, buf, 512, 0);
	cb.u.c.resfd = efd;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 512);
	usleep(20000);
	ck_assert_int_eq(read(efd, &n, sizeof(n)), -1);
	/* Not even a bad one is looked at. */
	io_prep_pread(&cb, fd, buf, 512, 0);
	cb.u.c.resfd = (unsigned)-1;
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 512);
}
END_TEST

/*
 * The eventfd is held by reference from io_submit to its signal, as the
 * kernel holds it: the program closes it while a poll that names it is in
 * flight, and a file takes the number. The event arrives and nothing is
 * written into the file.
 */
START_TEST(closed_eventfd_is_not_written_by_number)
{
	struct iocb cb;
	struct stat sb;
	int p[2], reused;

	ck_assert_int_eq(pipe(p), 0);
	io_prep_poll(&cb, p[0], POLLIN);
	io_set_eventfd(&cb, efd);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(close(efd), 0);
	reused = tmpfile_in(NULL, 0, O_RDWR);
	ck_assert_int_eq(reused, efd);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(reap_one(ctx, &cb) & POLLIN, POLLIN);
	/* ctx_down's check that nothing more arrives lets a late write land. */
	expect_no_event(ctx, 50);
	ck_assert_int_eq(fstat(reused, &sb), 0);
	ck_assert_msg(sb.st_size == 0,
		      "the library wrote %lld bytes into the file that took the "
		      "eventfd's number",
		      (long long)sb.st_size);
	close(p[0]);
	close(p[1]);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(efd, 0);
	close(reused);
}
END_TEST

/*
 * Once nothing names it, a number that now means another eventfd is
 * signalled as that one, not as the eventfd the library held before.
 */
START_TEST(new_eventfd_on_an_old_number)
{
	struct iocb cb;
	int old = efd;

	prep_read_resfd(&cb, 0, NULL);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 512);
	ck_assert_uint_eq(wait_eventfd(), 1);
	ck_assert_int_eq(close(efd), 0);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_eq(efd, old);
	prep_read_resfd(&cb, 0, NULL);
	ck_assert_int_eq(submit_one(ctx, &cb), 1);
	ck_assert_int_eq(reap_one(ctx, &cb), 512);
	ck_assert_uint_eq(wait_eventfd(), 1);
}
END_TEST

static Suite *eventfd_suite(void)
{
	Suite *s = suite_create("eventfd");
	TCase *count = tcase_create("count");
	TCase *reader = tcase_create("ring-reader");
	TCase *bad = tcase_create("bad");

	tcase_add_checked_fixture(count, ctx_up, ctx_down);
	tcase_add_checked_fixture(reader, ctx_up, ctx_down);
	tcase_add_checked_fixture(bad, ctx_up, ctx_down);
	tcase_add_test(count, signalled_once_per_completion);
	tcase_add_test(count, only_flagged_iocbs_signal);
	tcase_add_test(reader, event_is_in_ring_when_signalled);
	tcase_add_test(reader, ring_reader_single);
	tcase_add_test(reader, ring_reader_batches);
	tcase_add_test(reader, ring_reader_late_completion);
	tcase_add_test(reader, ring_reader_direct_io);
	tcase_add_test(reader, blocking_read_on_eventfd);
	tcase_add_test(bad, bad_resfd);
	tcase_add_test(bad, resfd_without_flag_is_ignored);
	tcase_add_test(bad, closed_eventfd_is_not_written_by_number);
	tcase_add_test(count, new_eventfd_on_an_old_number);
	suite_add_tcase(s, count);
	suite_add_tcase(s, reader);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	return run_suite(eventfd_suite(), "eventfd");
}
