#!/bin/sh
# Runs every suite once per backend; the line before each Check summary
# names the backend. Exits non-zero if any suite failed.
status=0
for backend in native uring; do
	for t in "$@"; do
		AIO_COMPAT_BACKEND=$backend "./$t" || status=1
	done
done
exit $status
