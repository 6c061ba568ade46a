#!/bin/sh
# Runs every suite once per backend (BACKENDS, default "native uring auto
# libaio"), and those built with the real libaio
# (tests/libaio/, the reference) once, as backend "libaio"; the line before
# each Check summary names the backend. The unit counted is a suite run (one suite on one
# backend): it passed (exit 0), was skipped (exit 77: some or all of its
# checks could not run here, each named by a line starting "SKIP:") or
# failed (any other exit). Ends with "N passed, N failed, N skipped" after
# naming the failures and repeating what each failed suite said of them
# (its failed checks, sanitizer reports), where a truncated log still shows
# them; exits non-zero if any suite failed. CHECK_WRAPPER (make check
# VALGRIND=1) runs each under valgrind.
#
# A skip names what it lacks; AIO_COMPAT_REQUIRE, a comma-separated list of
# such names, makes a skip for want of one of them a failure (.ci/run lists
# them all): native (the kernel's AIO), uring (io_uring), loop (root, a loop
# device and mkfs.ext2, for test_durability, test_faults' enospc and
# tests/preload.sh's LVM check), and,
# outside the suites, fio, sysbench, thin-provisioning-tools, stressapptest,
# lvm2 and strace (tests/preload.sh), mariadb and mariadb-backup
# (tests/mariadb.sh), qemu (tests/qemu.sh) and clang (the fuzz run of make
# check). Skips that are limits of valgrind or ASan name nothing.
passed=0 failed=0 skipped=0 failures=
scratch=$(mktemp -d) || exit 1
trap 'rm -rf "$scratch"' EXIT

# Keeps the lines of a failed suite's log that say why (check's F and E
# lines, the headings of sanitizer and valgrind reports), or its last lines
# where none does.
keep_why() {
	grep -E ':[EF]:|(^|==)(WARNING|ERROR|SUMMARY): |runtime error|^==[0-9]+== [A-Z][a-z]+ [a-z]' \
		"$scratch/log" > "$scratch/why" ||
		tail -n 5 "$scratch/log" > "$scratch/why"
	{
		echo "== $1:${2#tests/}"
		tail -n 12 "$scratch/why"
	} >> "$scratch/failed"
}

# run BACKEND SUITE
run() {
	{
		AIO_COMPAT_BACKEND=$1 $CHECK_WRAPPER "./$2" 2>&1
		echo $? > "$scratch/status"
	} | tee "$scratch/log"
	status=$(cat "$scratch/status")
	case $status in
	0) passed=$((passed + 1)) ;;
	77) skipped=$((skipped + 1)) ;;
	*)
		failed=$((failed + 1))
		failures="$failures $1:${2#tests/}($status)"
		keep_why "$1" "$2"
		;;
	esac
}

for backend in ${BACKENDS:-native uring auto libaio}; do
	for t in "$@"; do
		case $backend:$t in
		libaio:tests/libaio/* | native:tests/test_* | uring:tests/test_* | auto:tests/test_*) run "$backend" "$t" ;;
		esac
	done
done
if [ -n "$failures" ]; then
	cat "$scratch/failed"
	echo "FAILED suites (backend:suite(exit status)):$failures"
fi
echo "$passed passed, $failed failed, $skipped skipped (suite runs)"
[ "$failed" = 0 ]
