#!/bin/sh
# Runs every suite once per backend (BACKENDS, default "native uring");
# the line before each Check summary names the backend. Exits non-zero if
# any suite failed, after naming the failures last, where a truncated log
# still shows them. CHECK_WRAPPER (make check VALGRIND=1) runs each under
# valgrind.
failed=
for backend in ${BACKENDS:-native uring}; do
	for t in "$@"; do
		AIO_COMPAT_BACKEND=$backend $CHECK_WRAPPER "./$t" ||
			failed="$failed $backend:${t#tests/}($?)"
	done
done
[ -z "$failed" ] && exit 0
echo "FAILED suites (backend:suite(exit status)):$failed"
exit 1
