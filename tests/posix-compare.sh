#!/bin/sh
# Runs tests/posix-compare linked with -laio-compat-posix (on each backend)
# and linked with glibc's <aio.h>, and prints the answers side by side.
set -e
cd "$(dirname "$0")"
[ -x posix-compare ] && [ -x posix-compare-glibc ] || {
	echo "build tests/posix-compare and tests/posix-compare-glibc first" >&2
	exit 1
}
AIO_COMPAT_BACKEND=uring ./posix-compare > /tmp/posix-compare.uring.$$
AIO_COMPAT_BACKEND=native ./posix-compare > /tmp/posix-compare.native.$$
./posix-compare-glibc > /tmp/posix-compare.glibc.$$
printf '%-44s | %-26s | %-30s | %s\n' rule uring native glibc
for f in uring native glibc; do cut -c46- /tmp/posix-compare.$f.$$ > /tmp/posix-compare.$f.col.$$; done
cut -c1-44 /tmp/posix-compare.glibc.$$ | paste -d'|' - /tmp/posix-compare.uring.col.$$ \
	/tmp/posix-compare.native.col.$$ /tmp/posix-compare.glibc.col.$$ |
	awk -F'|' '{ mark = ($2 != $4) ? "  <- glibc differs" : "";
		printf "%-44s | %-26s | %-30s | %s%s\n", $1, $2, $3, $4, mark }'
rm -f /tmp/posix-compare.*.$$
