#!/bin/sh
# Runs every suite once per backend; the line before each Check summary
# names the backend. Exits non-zero if any suite failed. CHECK_WRAPPER
# (make check VALGRIND=1) runs each under valgrind.
status=0
for backend in native uring; do
	for t in "$@"; do
		AIO_COMPAT_BACKEND=$backend $CHECK_WRAPPER "./$t" || status=1
	done
done
exit $status
