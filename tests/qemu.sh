#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# QEMU as a real client: qemu-io and qemu-img (Debian's qemu-utils, linked
# against libaio.so.1) with aio=native on raw images, through
# tools/aio-compat-run on each backend, and once on the real libaio as the
# reference, so that a failure of the environment is told apart from one
# of the library. QEMU's linux-aio puts an eventfd on every iocb and reads
# the completion ring itself.
#
# For each directory (/var/tmp, disk; /dev/shm, tmpfs) and each of libaio,
# native, uring: qemu-io writes and reads back patterns (plain, vectored,
# asynchronous, misaligned, with flushes; -P verifies what it reads), and
# qemu-io without libaio (aio=threads) checks the image; qemu-img bench
# reads and writes 20000 requests of 4 KiB at depth 32, and the image the
# writes leave is checked the same way; qemu-img convert copies an image
# onto another, both aio=native, and cmp compares them.
#
# Prints one line per check (ok:, FAIL:, SKIP:) and ends with
# "N passed, N failed, N skipped"; exits non-zero when a check failed.
#
#   AIO_COMPAT_LIB   the library to preload (default: lib/libaio-compat.so.1)

cd "$(dirname "$0")/.." || exit 1

. tests/checks.sh
limit=60	# seconds for one QEMU command; a few suffice, a hang is a failure
size=64M
tmp=$(mktemp -d /tmp/aio-compat-qemu.XXXXXX) || exit 1
files=

cleanup() {
	rm -rf "$tmp"
	# shellcheck disable=SC2086 # a list of paths without spaces
	[ -z "$files" ] || rm -f $files
}
trap cleanup EXIT
trap 'exit 130' INT TERM




# image VAR DIR: a new raw image of $size in DIR, named in VAR, removed at exit.
image() {
	f=$(mktemp "$2/aio-compat-qemu.XXXXXX") || return 1
	files="$files $f"
	qemu-img create -q -f raw "$f" "$size" || return 1
	eval "$1=\$f"
}

# on RUNNER COMMAND...: the command on the real libaio (runner libaio) or on
# the library with that backend, bounded in time.
on() {
	r=$1
	shift
	if [ "$r" = libaio ]; then
		timeout -k 5 "$limit" "$@"
	else
		timeout -k 5 "$limit" "$run" --lib "$lib" --backend="$r" "$@"
	fi
}

# What a runner is called in a check's name: the reference says so.
runner_name() {
	if [ "$1" = libaio ]; then
		echo "real libaio (reference)"
	else
		echo "$1 backend"
	fi
}

# check WHAT COMMAND...: passes when the command exits 0 and prints no
# failure (qemu-io reports a failed aio_read check only in its output).
check() {
	what=$1
	shift
	"$@" >"$tmp/out" 2>&1
	status=$?
	if [ $status = 0 ] && ! grep -qi 'fail\|error' "$tmp/out"; then
		pass "$what"
	else
		if [ $status = 124 ] || [ $status = 137 ]; then
			fail "$what (no progress: killed after $limit s)"
		else
			fail "$what (exit $status)"
		fi
		{ grep -i 'fail\|error' "$tmp/out" || tail -20 "$tmp/out"; } |
			head -20 | sed 's/^/    /'
	fi
}

# qemu-io on aio=threads: plain preads and pwrites, no libaio at all.
plain_io() {
	qemu-io -f raw -t writeback -i threads "$@"
}

# qemu-io on aio=native with cache mode $cache (O_DIRECT).
native_io() {
	qemu-io -f raw -t "$cache" -i native "$@"
}

# The patterns the qemu-io script leaves, checked without libaio; 32M holds
# what plain_io wrote before the script, which the script reads first.
verify_script_image() {
	plain_io -c 'read -P 0x5a 32M 1M' -c 'read -P 0xab 0 513' \
		-c 'read -P 0xb0 513 1000' -c 'read -P 0xab 1513 4192791' \
		-c 'read -P 0xac 4M 12800' -c 'read -P 0xad 8M 64k' \
		-c 'read -P 0xae 9M 8k' -c 'read -P 0xaf 10M 1M' \
		-c 'read -P 0xb1 12M 2M' -c 'read -P 0 16M 16M' "$1"
}

qemu_io_checks() {
	r=$1 img=$2 name=$3
	if ! plain_io -c 'write -P 0x5a 32M 1M' "$img" >"$tmp/out" 2>&1; then
		fail "qemu-io (aio=threads) prepares $img"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	check "qemu-io patterns (write, writev, aio_write, flush, misaligned), $name" \
		on "$r" qemu-io -f raw -t "$cache" -i native \
		-c 'read -P 0x5a 32M 1M' \
		-c 'write -P 0xab 0 4M' -c 'read -P 0xab 0 4M' \
		-c 'writev -P 0xac 4M 4k 8k 512' -c 'readv -P 0xac 4M 512 8k 4k' \
		-c 'aio_write -P 0xad 8M 64k' -c 'aio_write -P 0xae 9M 4k 4k' \
		-c 'aio_write -P 0xaf 10M 1M' -c 'aio_write -P 0xb1 12M 2M' \
		-c aio_flush -c flush \
		-c 'aio_read -P 0xad 8M 64k' -c 'aio_read -P 0xae 9M 8k' \
		-c 'aio_read -P 0xaf 10M 512k 512k' -c 'aio_read -P 0xb1 12M 2M' \
		-c aio_flush \
		-c 'write -P 0xb0 513 1000' -c 'read -P 0xb0 513 1000' \
		-c 'read -P 0xab 0 513' -c 'read -P 0xab 1513 4192791' \
		-c flush "$img"
	check "the image qemu-io wrote, read without libaio, $name" verify_script_image "$img"
}

bench_checks() {
	r=$1 img=$2 name=$3
	check "qemu-img bench, 20000 reads of 4 KiB at depth 32, $name" \
		on "$r" qemu-img bench -f raw -t "$cache" -i native -d 32 -s 4k -c 20000 "$img"
	# 20000 writes of 4 KiB go round the 64 MiB image: all of it is written.
	check "qemu-img bench -w, 20000 writes of 4 KiB at depth 32, $name" \
		on "$r" qemu-img bench -f raw -t "$cache" -i native -d 32 -s 4k -c 20000 \
		-w --pattern=0xc3 "$img"
	check "the image qemu-img bench wrote, read without libaio, $name" \
		plain_io -c 'read -P 0xc3 0 64M' "$img"
}

# qemu-img convert has no -i: both images are named by their options.
convert_checks() {
	r=$1 src=$2 dst=$3 name=$4
	opts="driver=raw,file.driver=file,file.aio=native,cache.direct=on"
	plain_io -c 'write -P 0xff 0 64M' "$dst" >/dev/null 2>&1
	check "qemu-img convert (aio=native on both images, 8 coroutines), $name" \
		on "$r" qemu-img convert -n -m 8 -W --image-opts "$opts,file.filename=$src" \
		--target-image-opts "$opts,file.filename=$dst"
	if cmp "$src" "$dst" >"$tmp/out" 2>&1; then
		pass "the copy qemu-img convert made is the source, $name"
	else
		fail "the copy qemu-img convert made is the source, $name"
		sed 's/^/    /' "$tmp/out"
	fi
}

# The cache mode with O_DIRECT (aio=native needs it) that QEMU opens DIR's
# files with on the real libaio, or nothing: tmpfs takes O_DIRECT from
# Linux 6.6 on.
direct_cache_mode() {
	for mode in none directsync; do
		if qemu-io -f raw -t "$mode" -i native -c 'write -P 0 0 4k' "$1" \
			>/dev/null 2>&1; then
			echo "$mode"
			return
		fi
	done
}

# The real libaio, then the library's backends that this kernel allows.
runners="libaio native"
uring_allowed() {
	[ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ]
}

dir_checks() {
	dir=$1
	img='' img2='' bimg=''
	if ! image img "$dir" || ! image img2 "$dir" || ! image bimg "$dir"; then
		fail "raw images in $dir (qemu-img create)"
		return
	fi
	cache=$(direct_cache_mode "$img")
	if [ -z "$cache" ]; then
		skip - "$dir: QEMU's aio=native needs O_DIRECT, which $dir refuses on this kernel"
		return
	fi
	echo "# $dir: raw images of $size, cache mode $cache, aio=native"
	for r in $runners; do
		name="$dir, $(runner_name "$r")"
		qemu-img create -q -f raw "$img" "$size"
		qemu_io_checks "$r" "$img" "$name"
		bench_checks "$r" "$bimg" "$name"
		convert_checks "$r" "$img" "$img2" "$name"
	done
}

# Counts of system calls in strace -c's table.
calls() {
	awk -v name="$1" '$NF == name { n = $4 } END { print n + 0 }' "$tmp/strace"
}

# Those of them that did not fail: on uring the library asks native AIO
# what it would refuse of a file, with copies it refuses.
calls_taken() {
	awk -v name="$1" '$NF == name { n = $4 - (NF == 6 ? $5 : 0) } END { print n + 0 }' \
		"$tmp/strace"
}

# The uring backend issues io_uring_enter and no io_submit; on the real
# libaio, native and auto, the other way round (QEMU's own io_uring is not
# in use).
strace_check() {
	r=$1 img=$2
	if ! on "$r" strace -f -c -o "$tmp/strace" -e trace=io_submit,io_uring_enter \
		qemu-img bench -f raw -t "$cache" -i native -d 32 -s 4k -c 2000 "$img" \
		>"$tmp/out" 2>&1; then
		fail "qemu-img bench under strace, $(runner_name "$r")"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	enter=$(calls io_uring_enter)
	submit=$(calls_taken io_submit)
	what="qemu-img bench, $(runner_name "$r"): $enter io_uring_enter, $submit io_submit taken"
	case $r in
	uring) [ "$enter" -gt 0 ] && [ "$submit" -eq 0 ] ;;
	# auto is native AIO but for buffered reads of a cold file: O_DIRECT here.
	*) [ "$submit" -gt 0 ] && [ "$enter" -eq 0 ] ;;
	esac
	# shellcheck disable=SC2181 # the test just above
	if [ $? = 0 ]; then pass "$what"; else fail "$what"; fi
}

# The dynamic linker's own account of where qemu-img's libaio imports went.
binding_check() {
	r=$1 img=$2
	rm -f "$tmp"/ld.*
	if ! LD_DEBUG=bindings LD_DEBUG_OUTPUT=$tmp/ld on "$r" qemu-img bench -f raw \
		-t "$cache" -i native -d 4 -s 4k -c 100 "$img" >"$tmp/out" 2>&1; then
		fail "qemu-img's libaio imports bind to the library, $r (qemu-img failed)"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	cat "$tmp"/ld.* | grep 'binding file [^ ]*qemu-img \[0\] to .*symbol `io_' \
		>"$tmp/bindings"
	ok=1
	# QEMU reads the completion ring itself and imports no io_getevents.
	for sym in io_setup io_submit io_destroy; do
		grep -q "to [^ ]*libaio-compat\.so\.1 \[0\]: normal symbol \`$sym'" \
			"$tmp/bindings" || ok=0
	done
	grep -q 'to [^ ]*/libaio\.so\.1 ' "$tmp/bindings" && ok=0
	if [ $ok = 1 ]; then
		pass "qemu-img's libaio imports bind to the library, $r backend"
	else
		fail "qemu-img's libaio imports bind to the library, $r backend"
		sed 's/^ *[0-9]*:[[:space:]]*/    /' "$tmp/bindings"
	fi
}

in_use_checks() {
	img=''
	image img /var/tmp || return
	cache=$(direct_cache_mode "$img")
	[ -n "$cache" ] || return
	for r in $runners; do
		[ "$r" = libaio ] || binding_check "$r" "$img"
	done
	if ! command -v strace >/dev/null; then
		skip strace "qemu-img under strace: strace is not installed"
		return
	fi
	for r in $runners; do
		[ "$r" = native ] || strace_check "$r" "$img"
	done
}

# A library built with SANITIZE=1 brings the ASan runtime into QEMU, which
# was not built with it: it cannot come first there, and QEMU's own leaks
# are not the library's.
sanitized() {
	ldd "$lib" 2>/dev/null | grep -q 'libasan\.so'
}

if ! command -v qemu-io >/dev/null || ! command -v qemu-img >/dev/null; then
	skip qemu "QEMU checks: qemu-io and qemu-img are not installed (qemu-utils; make deps)"
elif ! ldd "$(command -v qemu-io)" | grep -q 'libaio\.so\.1' ||
	! ldd "$(command -v qemu-img)" | grep -q 'libaio\.so\.1'; then
	skip qemu "QEMU checks: qemu-io or qemu-img is not linked to libaio.so.1"
elif [ ! -r "$lib" ]; then
	fail "library $lib: not built"
else
	if sanitized; then
		echo "note: $lib is built with ASan: verify_asan_link_order=0, detect_leaks=0"
		ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
		export ASAN_OPTIONS
	fi
	echo "# $(qemu-img --version | head -1); a failure on the real libaio (reference)" \
		"is the environment's, not the library's"
	if uring_allowed; then
		runners="$runners uring auto"
	else
		skip uring "uring and auto backends: kernel.io_uring_disabled is set"
	fi
	for dir in /var/tmp /dev/shm; do
		dir_checks "$dir"
	done
	in_use_checks
fi
summary
