/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unloading: plugins link the library and are dlclose()d. The library's
 * threads and destructors must never run code of a library no longer
 * mapped. tests/unload-client, which does not link the library, loads,
 * uses and closes it, then carries on; it must exit 0.
 */
#include "util.h"

#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs tests/unload-client WHAT on the libraries of this build: 10 s at most. */
static void run_client(const char *what)
{
	char self[PATH_MAX], client[PATH_MAX + 32], libdir[PATH_MAX + 32];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int status = 0, ms;
	pid_t pid;

	ck_assert_int_gt(len, 0);
	self[len] = '\0';
	snprintf(client, sizeof(client), "%s/unload-client", dirname(self));
	snprintf(libdir, sizeof(libdir), "%s/../lib", self);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(client, client, what, libdir, (char *)NULL);
		_exit(127);
	}
	for (ms = 0; ms < 10000 && waitpid(pid, &status, WNOHANG) != pid; ms += 10)
		usleep(10 * 1000);
	if (ms >= 10000) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		ck_abort_msg("unload-client %s still runs after 10 s", what);
	}
	ck_assert_msg(!WIFSIGNALED(status), "unload-client %s killed by signal %d", what,
		      WTERMSIG(status));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "unload-client %s exited with %d", what, WEXITSTATUS(status));
}

START_TEST(dlclose_after_io)
{
	run_client("libaio");
}
END_TEST

START_TEST(dlclose_posix_after_io)
{
	run_client("posix");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("unload");
	TCase *tc = tcase_create("dlclose");

	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, dlclose_after_io);
	tcase_add_test(tc, dlclose_posix_after_io);
	suite_add_tcase(s, tc);
	return run_suite(s, "unload");
}
