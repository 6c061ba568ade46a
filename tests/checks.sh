# shellcheck shell=sh disable=SC2034 # lib and run are the sourcing script's
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the scripts that run real programs on the library
# (tests/preload.sh, mariadb.sh, qemu.sh), from the top of the tree: the
# library and launcher they run programs through, and one way to count and
# print checks. Each check prints a line (ok:, FAIL:, SKIP:), and summary
# prints "N passed, N failed, N skipped".

lib=${AIO_COMPAT_LIB:-$(pwd)/lib/libaio-compat.so.1}
run=tools/aio-compat-run
passed=0
failed=0
skipped=0

pass() {
	passed=$((passed + 1))
	echo "ok: $*"
}

fail() {
	failed=$((failed + 1))
	echo "FAIL: $*"
}

# skip PART WHAT: WHAT cannot run here for want of PART (tests/skip.sh: a
# failure where AIO_COMPAT_REQUIRE lists PART; "-" names no part).
skip() {
	if sh tests/skip.sh "$1" "$2"; then
		skipped=$((skipped + 1))
	else
		failed=$((failed + 1))
	fi
}

# The closing line, and the exit status: non-zero when a check failed.
summary() {
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" = 0 ]
}
