#!/bin/sh
# Runs every suite once per backend; the line before each Check summary
# names the backend. The unit counted is a suite run (one suite on one
# backend): it passed (exit 0), was skipped (exit 77: some or all of its
# checks could not run here, each named by a line starting "SKIP:") or
# failed (any other exit). Ends with "N passed, N failed, N skipped" after
# naming the failures, where a truncated log still shows them; exits
# non-zero if any suite failed. CHECK_WRAPPER (make check VALGRIND=1) runs
# each under valgrind.
#
# A skip names what it lacks; AIO_COMPAT_REQUIRE, a comma-separated list of
# such names, makes a skip for want of one of them a failure (.ci/run lists
# them all): native (the kernel's AIO), uring (io_uring), loop (root, a loop
# device and mkfs.ext2, for test_durability and test_faults' enospc), and,
# outside the suites, fio and strace (tests/preload.sh) and clang (the fuzz
# run of make check). Skips that are limits of valgrind or ASan name nothing.
passed=0 failed=0 skipped=0 failures=
for backend in native uring; do
	for t in "$@"; do
		AIO_COMPAT_BACKEND=$backend $CHECK_WRAPPER "./$t"
		status=$?
		case $status in
		0) passed=$((passed + 1)) ;;
		77) skipped=$((skipped + 1)) ;;
		*)
			failed=$((failed + 1))
			failures="$failures $backend:${t#tests/}($status)"
			;;
		esac
	done
done
[ -z "$failures" ] || echo "FAILED suites (backend:suite(exit status)):$failures"
echo "$passed passed, $failed failed, $skipped skipped (suite runs)"
[ "$failed" = 0 ]
