/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes io_submit accepted reach the file however the process ends right
 * after it (return from main, _exit, SIGKILL), buffered or O_DIRECT, as on
 * native AIO, where the kernel ties them to the process and not to a thread.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITES 64
#define BLOCK (256 * 1024)

enum ending {
	RETURN_FROM_MAIN,
	UNDERSCORE_EXIT,
	SIGKILLED
};

static unsigned char pattern_of(int i)
{
	return (unsigned char)(0x11 + i);
}

/*
 * Submits the writes and tells the parent through ready_fd that io_submit
 * returned; then ends. exit() stands for a return from main: it runs the
 * same atexit handlers and destructors.
 */
static void child_writes(const char *path, bool direct, enum ending how, int ready_fd)
{
	static struct iocb iocbs[WRITES];
	struct iocb *ios[WRITES];
	io_context_t ctx = 0;
	void *bufs;
	int fd;

	fd = open(path, O_WRONLY | (direct ? O_DIRECT : 0));
	if (fd < 0 || io_setup(WRITES, &ctx) || posix_memalign(&bufs, 4096, (size_t)WRITES * BLOCK))
		_exit(2);
	for (int i = 0; i < WRITES; i++) {
		unsigned char *buf = (unsigned char *)bufs + (size_t)i * BLOCK;

		memset(buf, pattern_of(i), BLOCK);
		io_prep_pwrite(&iocbs[i], fd, buf, BLOCK, (long long)i * BLOCK);
		ios[i] = &iocbs[i];
	}
	if (io_submit(ctx, WRITES, ios) != WRITES)
		_exit(3);
	if (how == SIGKILLED) {
		(void)!write(ready_fd, "", 1);
		for (;;)
			pause();
	}
	if (how == UNDERSCORE_EXIT)
		_exit(0);
	exit(0);
}

static void check_file(int fd)
{
	unsigned char *back = malloc(BLOCK);

	ck_assert_ptr_nonnull(back);
	for (int i = 0; i < WRITES; i++) {
		ck_assert_int_eq(pread(fd, back, BLOCK, (off_t)i * BLOCK), BLOCK);
		int j = 0;

		/* One check per block: Check records every assertion that passes. */
		while (j < BLOCK && back[j] == pattern_of(i))
			j++;
		ck_assert_msg(j == BLOCK, "block %d byte %d is %#x, not %#x", i, j,
			      j < BLOCK ? back[j] : 0, pattern_of(i));
	}
	free(back);
}

static void writes_survive(const char *dir, bool direct, enum ending how)
{
	char path[64];
	int pipefd[2], status, fd;
	char byte;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/aio-compat-exit-XXXXXX", dir);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (direct) {
		int dfd = open(path, O_WRONLY | O_DIRECT);

		if (dfd < 0 && errno == EINVAL) {
			close(fd);
			printf("SKIP: %s has no O_DIRECT\n", dir);
			return;
		}
		close(dfd);
	}
	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pipefd[0]);
		child_writes(path, direct, how, pipefd[1]);
	}
	close(pipefd[1]);
	if (how == SIGKILLED) {
		ck_assert_int_eq(read(pipefd[0], &byte, 1), 1);
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	close(pipefd[0]);
	if (how == SIGKILLED)
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	else
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x",
			      status);
	check_file(fd);
	close(fd);
}

#define CASES(name, dir, direct)                                                                   \
	START_TEST(test_##name##_return_from_main)                                                 \
	{                                                                                          \
		writes_survive(dir, direct, RETURN_FROM_MAIN);                                     \
	}                                                                                          \
	END_TEST                                                                                   \
	START_TEST(test_##name##_underscore_exit)                                                  \
	{                                                                                          \
		writes_survive(dir, direct, UNDERSCORE_EXIT);                                      \
	}                                                                                          \
	END_TEST                                                                                   \
	START_TEST(test_##name##_sigkill)                                                          \
	{                                                                                          \
		writes_survive(dir, direct, SIGKILLED);                                            \
	}                                                                                          \
	END_TEST

CASES(buffered_disk, "/var/tmp", false)
CASES(buffered_shm, "/dev/shm", false)
CASES(direct_disk, "/var/tmp", true)

#define ADD_CASES(tc, name)                                                                        \
	do {                                                                                       \
		tcase_add_test(tc, test_##name##_return_from_main);                                \
		tcase_add_test(tc, test_##name##_underscore_exit);                                 \
		tcase_add_test(tc, test_##name##_sigkill);                                         \
	} while (0)

int main(void)
{
	Suite *s = suite_create("exit");
	TCase *tc = tcase_create("exit");

	tcase_set_timeout(tc, 60);
	ADD_CASES(tc, buffered_disk);
	ADD_CASES(tc, buffered_shm);
	ADD_CASES(tc, direct_disk);
	suite_add_tcase(s, tc);
	return run_suite(s, "exit");
}
