#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Unmodified libaio programs on the library, through tools/aio-compat-run:
# a small program built against the system <libaio.h> and linked with
# -laio, and Debian's fio (its libaio engine), sysbench (fileio),
# thin-provisioning-tools, stressapptest (its disk thread) and LVM, on each
# backend.
# Prints one line per check ("ok:", "FAIL:" or "SKIP:"; a skip counts once
# however many checks it stands for) and ends with "N passed, N failed,
# N skipped"; exits non-zero when a check failed. A skip for want of what
# AIO_COMPAT_REQUIRE lists (uring, fio, strace, ...: see tests/run.sh) fails.
#
#   AIO_COMPAT_LIB   the library to preload (default: lib/libaio-compat.so.1)
#   CC               the compiler for tests/preload-client.c (default: cc)

cd "$(dirname "$0")/.." || exit 1

. tests/checks.sh
# thin-provisioning-tools and LVM live there, out of a user's PATH on Debian.
PATH=$PATH:/usr/sbin:/sbin
client=tests/preload-client
limit=60	# seconds for one fio run; a few suffice, a hang is a failure
tmp=$(mktemp -d /tmp/aio-compat-preload.XXXXXX) || exit 1
files=
loop=

cleanup() {
	[ -z "$loop" ] || losetup -d "$loop" 2>/dev/null
	rm -rf "$tmp"
	# shellcheck disable=SC2086 # a list of paths without spaces
	[ -z "$files" ] || rm -rf $files
}
trap cleanup EXIT
trap 'exit 130' INT TERM




# A check passes when the command exits 0; its output is shown on failure.
expect_ok() {
	what=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then
		pass "$what"
	else
		fail "$what (exit $?)"
		sed 's/^/    /' "$tmp/out"
	fi
}

# expect_status STATUS WHAT COMMAND...
expect_status() {
	want=$1 what=$2
	shift 2
	"$@" >/dev/null 2>&1
	got=$?
	if [ "$got" = "$want" ]; then
		pass "$what"
	else
		fail "$what (exit $got)"
	fi
}

# scratch VAR DIR: a new file in DIR, named in VAR and removed at exit.
scratch() {
	f=$(mktemp "$2/aio-compat-preload.XXXXXX") || return 1
	files="$files $f"
	eval "$1=\$f"
}

launcher_checks() {
	expect_ok "aio-compat-run --version" sh -c "$run --version | grep -qx 'aio-compat-run [0-9.]*'"
	expect_ok "aio-compat-run --help" sh -c "$run --help | grep -q '^usage: aio-compat-run'"
	expect_status 2 "aio-compat-run: an unknown backend exits 2" \
		"$run" --lib "$lib" --backend=bogus true
	expect_status 2 "aio-compat-run: a missing library exits 2" \
		"$run" --lib /nonexistent/libaio-compat.so.1 true
	expect_status 2 "aio-compat-run: no program exits 2" "$run" --lib "$lib"
	expect_status 127 "aio-compat-run: a missing program exits 127" \
		"$run" --lib "$lib" /nonexistent/program

	env=$(LD_PRELOAD='' AIO_COMPAT_LIB=$lib "$run" --backend=native env)
	if echo "$env" | grep -qx "AIO_COMPAT_BACKEND=native" &&
		echo "$env" | grep -qx "LD_PRELOAD=$lib"; then
		pass "aio-compat-run sets AIO_COMPAT_BACKEND and LD_PRELOAD"
	else
		fail "aio-compat-run sets AIO_COMPAT_BACKEND and LD_PRELOAD"
		echo "$env" | grep -E '^(AIO_COMPAT|LD_PRELOAD)' | sed 's/^/    /'
	fi
	env=$(LD_PRELOAD=$lib "$run" --lib "$lib" --backend=uring env)
	if echo "$env" | grep -qx "LD_PRELOAD=$lib:$lib"; then
		pass "aio-compat-run keeps an existing LD_PRELOAD after the library"
	else
		fail "aio-compat-run keeps an existing LD_PRELOAD after the library"
	fi
}

client_checks() {
	if ! ${CC:-cc} -std=gnu17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror \
		-o "$client" tests/preload-client.c -laio -ldl >"$tmp/out" 2>&1; then
		fail "preload-client builds against <libaio.h> with -laio"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	pass "preload-client builds against <libaio.h> with -laio"
	# Without the launcher libaio serves it: the checks below tell the two apart.
	expect_ok "preload-client on libaio itself" "./$client" /dev/shm libaio
	for b in $backends; do
		for dir in /dev/shm /var/tmp; do
			expect_ok "preload-client in $dir under aio-compat-run --backend=$b" \
				"$run" --lib "$lib" --backend="$b" "./$client" "$dir" "$b"
		done
	done
}

# Raw AIO system calls on the handle (MariaDB's InnoDB reaps that way): the
# same program, linked with -laio, then preloaded with the library on each
# backend, then linked with -laio-compat, must print what it prints on libaio.
raw_syscall_checks() {
	raw=tests/raw-syscall-client
	cflags="-std=gnu17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror"
	# shellcheck disable=SC2086 # a list of flags
	if ! ${CC:-cc} $cflags -o "$raw" tests/raw-syscall-client.c -laio >"$tmp/out" 2>&1 ||
		! ${CC:-cc} $cflags -o "$raw-linked" tests/raw-syscall-client.c -Llib \
			-Wl,-rpath,"$(dirname "$lib")" -laio-compat >>"$tmp/out" 2>&1; then
		fail "raw-syscall-client builds with -laio and with -laio-compat"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	if ! "./$raw" /dev/shm >"$tmp/raw.libaio" 2>&1; then
		fail "raw system calls on libaio itself"
		sed 's/^/    /' "$tmp/raw.libaio"
		return
	fi
	pass "raw system calls on libaio itself"
	for b in $backends; do
		raw_same "raw system calls on the handle, preloaded, $b" \
			"$run" --lib "$lib" --backend="$b" "./$raw" /dev/shm
		raw_same "raw system calls on the handle, linked with -laio-compat, $b" \
			env AIO_COMPAT_BACKEND="$b" "./$raw-linked" /dev/shm
	done
}

# raw_same WHAT COMMAND...: its output must be libaio's, line for line.
raw_same() {
	what=$1
	shift
	"$@" >"$tmp/raw.out" 2>&1
	status=$?
	if [ $status = 0 ] && cmp -s "$tmp/raw.libaio" "$tmp/raw.out"; then
		pass "$what"
	else
		fail "$what (exit $status; the differences from libaio's output:)"
		diff "$tmp/raw.libaio" "$tmp/raw.out" | sed 's/^/    /'
	fi
}

# fio's terse line: field 5 is the error, 6 the KiB read, 47 the KiB written.
# A write job with verify reads everything back, so both must be the size.
fio_terse_ok() {
	awk -F';' -v kib="$1" '
		$1 == "3" { seen = 1; if ($5 != 0 || $6 != kib || $47 != kib) bad = 1 }
		END { exit !(seen && !bad) }' "$tmp/out"
}

# fio_verify WHAT BACKEND FILE DIRECT [OPTION...]; $run_opts goes to aio-compat-run.
run_opts=
fio_verify() {
	what=$1 b=$2 f=$3 direct=$4
	shift 4
	# shellcheck disable=SC2086 # run_opts is a list of options, or nothing
	timeout -k 5 "$limit" "$run" --lib "$lib" --backend="$b" $run_opts fio --name=verify \
		--ioengine=libaio --filename="$f" --size=16M --direct="$direct" \
		--rw=randwrite --bs=4k --iodepth=16 --verify=crc32c \
		--output-format=terse "$@" >"$tmp/out" 2>&1
	status=$?
	if [ $status = 0 ] && fio_terse_ok 16384; then
		pass "$what"
	elif [ $status = 124 ] || [ $status = 137 ]; then
		fail "$what (no progress: killed after $limit s)"
	else
		fail "$what (exit $status)"
		sed 's/^/    /' "$tmp/out" | cut -c1-200
	fi
}

# The dynamic linker's own account of where fio's libaio imports went.
fio_binding() {
	b=$1 f=$2
	rm -f "$tmp"/ld.*
	if ! LD_DEBUG=bindings LD_DEBUG_OUTPUT=$tmp/ld timeout -k 5 "$limit" "$run" --lib "$lib" \
		--backend="$b" fio --name=binding --ioengine=libaio --filename="$f" \
		--size=1M --rw=randread --bs=4k --iodepth=4 --output-format=terse \
		>"$tmp/out" 2>&1; then
		fail "fio's libaio imports bind to the library, $b (fio failed)"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	cat "$tmp"/ld.* | grep 'binding file fio \[0\] to .*symbol `io_' >"$tmp/bindings"
	ok=1
	for sym in io_queue_init@LIBAIO_0.1 io_submit@LIBAIO_0.1 io_getevents@LIBAIO_0.4 \
		io_destroy@LIBAIO_0.4; do
		name=${sym%@*} version=${sym#*@}
		grep -q "to [^ ]*libaio-compat\.so\.1 \[0\]: normal symbol \`$name' \[$version\]" \
			"$tmp/bindings" || ok=0
	done
	grep -q 'to [^ ]*/libaio\.so\.1 ' "$tmp/bindings" && ok=0
	if [ $ok = 1 ]; then
		pass "fio's libaio imports bind to the library, $b"
	else
		fail "fio's libaio imports bind to the library, $b"
		sed 's/^ *[0-9]*:[[:space:]]*/    /' "$tmp/bindings"
	fi
}

# Counts the system calls named in an strace log.
calls() {
	grep -c "^[0-9]* *$1(" "$tmp/strace" || true
}

# Those of them that did not fail.
calls_taken() {
	grep -c "^[0-9]* *$1(.*) = [0-9]" "$tmp/strace" || true
}

fio_strace() {
	b=$1 f=$2
	if ! command -v strace >/dev/null; then
		skip strace "fio on $b under strace: strace is not installed"
		return
	fi
	if ! timeout -k 5 "$limit" strace -f -qq -o "$tmp/strace" -e trace=io_submit,io_uring_enter \
		"$run" --lib "$lib" --backend="$b" fio --name=strace --ioengine=libaio \
		--filename="$f" --size=4M --rw=randread --bs=4k --iodepth=16 \
		--output-format=terse >"$tmp/out" 2>&1; then
		fail "fio on $b under strace"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	enter=$(calls io_uring_enter)
	submit=$(calls io_submit)
	taken=$(calls_taken io_submit)
	# The library asks native AIO what it would refuse of a file, with
	# copies it refuses: on uring none may be taken. auto is native AIO,
	# but for the reads of a file whose pages were seen on the disk.
	case $b in
	uring) [ "$enter" -gt 0 ] && [ "$taken" -eq 0 ] ;;
	auto) if [ "$(stat -f -c %T "$f")" = tmpfs ]; then
		[ "$taken" -gt 0 ] && [ "$enter" -eq 0 ]
	else
		[ "$taken" -gt 0 ]
	fi ;;
	*) [ "$submit" -gt 0 ] && [ "$enter" -eq 0 ] ;;
	esac
	# shellcheck disable=SC2181 # the test just above
	if [ $? = 0 ]; then
		pass "fio on $b issues $enter io_uring_enter, $submit io_submit ($taken taken)"
	else
		fail "fio on $b issues $enter io_uring_enter, $submit io_submit ($taken taken)"
	fi
}

# installed PROG [PART]: whether PROG is there and linked to libaio.so.1 (a
# SKIP for want of PART, by default PROG, if not).
installed() {
	part=${2:-$1}
	if ! command -v "$1" >/dev/null; then
		skip "$part" "$1 checks: $1 is not installed (make deps installs it)"
		return 1
	fi
	if ! ldd "$(command -v "$1")" | grep -q 'libaio\.so\.1'; then
		skip "$part" "$1 checks: $(command -v "$1") is not linked to libaio.so.1"
		return 1
	fi
}

fio_checks() {
	installed fio || return
	shm='' disk=''
	if ! scratch shm /dev/shm || ! scratch disk /var/tmp; then
		fail "scratch files for fio"
		return
	fi
	for b in $backends; do
		fio_verify "fio randwrite verify=crc32c on /dev/shm, $b" "$b" "$shm" 0
		fio_verify "fio randwrite verify=crc32c on /var/tmp direct=1, $b" "$b" "$disk" 1
		fio_verify "fio userspace_reap=1 verify=crc32c on /dev/shm, $b" "$b" "$shm" 0 \
			--userspace_reap=1
		# Only with iodepth_batch_complete_min=0 does fio read the ring
		# itself, calling nothing until it sees a completion there.
		fio_verify "fio reaping from the ring on /dev/shm, $b" "$b" "$shm" 0 \
			--userspace_reap=1 --iodepth_batch_complete_min=0
		fio_verify "fio reaping from the ring on /var/tmp direct=1, $b" "$b" "$disk" 1 \
			--userspace_reap=1 --iodepth_batch_complete_min=0
		# fio uses each context from the thread that set it up.
		run_opts=--single-issuer
		fio_verify "fio --single-issuer verify=crc32c on /dev/shm, $b" "$b" "$shm" 0
		fio_verify "fio --single-issuer verify=crc32c on /var/tmp direct=1, $b" "$b" "$disk" 1
		run_opts=
		fio_binding "$b" "$shm"
		fio_strace "$b" "$shm"
	done
}

# sysbench's fileio test in its libaio mode (one context per thread, one
# buffer per thread for every request in flight). --validate checks each
# read's block as soon as io_submit returns, before its event: right only
# where the read is done inside io_submit, as native AIO does buffered I/O,
# so it runs on native; the other backends run the same mix unchecked.
sysbench_fileio() {
	# shellcheck disable=SC2086 # $sb_mode is a word list
	(cd "$dir" && timeout -k 5 "$limit" "$@" sysbench fileio --file-num=2 \
		--file-total-size=16M --file-block-size=4096 --file-io-mode=async \
		--file-async-backlog=32 --file-fsync-freq=50 --validate=on $sb_mode run) \
		>"$tmp/out" 2>&1 && ! grep -q FATAL "$tmp/out"
}

# An absolute path for a path from the top of the tree.
absolute() {
	case $1 in
	/*) echo "$1" ;;
	*) echo "$(pwd)/$1" ;;
	esac
}

sysbench_checks() {
	installed sysbench || return
	dir=$(mktemp -d /var/tmp/aio-compat-sysbench.XXXXXX) || {
		fail "a scratch directory for sysbench"
		return
	}
	files="$files $dir"
	sb_mode=--file-test-mode=seqwr
	if ! sysbench_fileio; then
		fail "sysbench fileio writes its checked blocks, on libaio"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	for b in $backends; do
		sb_mode=--file-test-mode=rndrw
		what="sysbench fileio random reads and writes, $b"
		if [ "$b" = native ]; then
			what="$what, every block read checked"
		else
			sb_mode="$sb_mode --validate=off"
		fi
		if sysbench_fileio "$(absolute "$run")" --lib "$(absolute "$lib")" --backend="$b" &&
			grep -q 'reads/s: *[1-9]' "$tmp/out"; then
			pass "$what"
		else
			fail "$what"
			sed 's/^/    /' "$tmp/out"
		fi
	done
}

# thin-provisioning-tools, whose tools read and write a thin pool's
# metadata with O_DIRECT through libaio, every block checksummed. A pool
# of THIN_DEVS devices of THIN_MAPS mappings each, as XML: what thin_dump
# prints of the metadata thin_restore wrote from it, on libaio.
THIN_DEVS=4 THIN_MAPS=20000
thin_xml() {
	awk -v devs=$THIN_DEVS -v maps=$THIN_MAPS 'BEGIN {
		printf "<superblock uuid=\"\" time=\"1\" transaction=\"3\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"%d\">\n", devs * maps * 8
		for (d = 0; d < devs; d++) {
			printf "  <device dev_id=\"%d\" mapped_blocks=\"%d\" transaction=\"0\" creation_time=\"0\" snap_time=\"1\">\n", d, maps
			for (i = 0; i < maps; i++)
				printf "    <single_mapping origin_block=\"%d\" data_block=\"%d\" time=\"%d\"/>\n", i * 3, d * maps * 8 + i * 7, i % 2
			print "  </device>"
		}
		print "</superblock>"
	}'
}

# thin_round_trip META [LAUNCHER...]: thin_restore writes META from the XML
# on the launcher's library; real libaio dumps it. Then the launcher's
# library checks and dumps the metadata libaio wrote. Both dumps must be the XML.
thin_round_trip() {
	meta=$1
	shift
	rm -f "$meta" && truncate -s 64M "$meta" &&
		timeout -k 5 "$limit" "$@" thin_restore -q -i "$tmp/thin.xml" -o "$meta" &&
		thin_dump "$meta" >"$tmp/thin.dump" && cmp "$tmp/thin.xml" "$tmp/thin.dump" &&
		timeout -k 5 "$limit" "$@" thin_check "$thin_libaio" &&
		timeout -k 5 "$limit" "$@" thin_dump "$thin_libaio" >"$tmp/thin.dump" &&
		cmp "$tmp/thin.xml" "$tmp/thin.dump"
}

thin_checks() {
	installed thin_restore thin-provisioning-tools || return
	meta='' thin_libaio=''
	if ! scratch meta /var/tmp || ! scratch thin_libaio /var/tmp; then
		fail "scratch files for thin-provisioning-tools"
		return
	fi
	thin_xml >"$tmp/thin.xml"
	if ! thin_round_trip "$thin_libaio" >"$tmp/out" 2>&1; then
		fail "thin_restore, thin_check and thin_dump round-trip a pool's metadata, on libaio"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	for b in $backends; do
		expect_ok "thin_restore writes what libaio reads back, and thin_check and thin_dump read what libaio wrote, $b" \
			thin_round_trip "$meta" "$run" --lib "$lib" --backend="$b"
	done
}

# stressapptest's disk thread: O_DIRECT writes of patterns through libaio,
# each block read back and compared; any miscompare fails the run. With
# its default disk cache of 16 MiB it reads nothing back in a few seconds.
# shellcheck disable=SC2120 # expect_ok passes the launcher
stressapptest_run() {
	timeout -k 5 "$limit" "$@" stressapptest -s 3 -M 16 -m 1 -d "$sat" --destructive \
		--cache-size 0 --read-block-size 4096 >"$tmp/sat.out" 2>&1
	status=$?
	tail -20 "$tmp/sat.out"
	[ $status = 0 ] && grep -q '^Status: PASS' "$tmp/sat.out" &&
		grep -q 'Stats: Disk: [1-9]' "$tmp/sat.out"
}

stressapptest_checks() {
	installed stressapptest || return
	sat=''
	if ! scratch sat /var/tmp || ! truncate -s 64M "$sat"; then
		fail "a scratch file for stressapptest"
		return
	fi
	if ! stressapptest_run >"$tmp/out"; then
		fail "stressapptest's disk thread, on libaio"
		sed 's/^/    /' "$tmp/out"
		return
	fi
	for b in $backends; do
		expect_ok "stressapptest's disk thread writes and reads back its patterns, $b" \
			stressapptest_run "$run" --lib "$lib" --backend="$b"
	done
}

# LVM (lvm2), whose device scans and metadata writes go through libaio with
# O_DIRECT: on a loop device, a volume group whose metadata the library
# rewrote LVM_TAGS times (a tag added each time; logical volumes would need
# device-mapper) must list the same on the real libaio as on the library.
# Needs root, for the loop device.
LVM_TAGS=8
lvm_cmd() {
	LVM_SUPPRESS_FD_WARNINGS=1 timeout -k 5 "$limit" "$@" --config "$lvm_conf"
}

# lvm_make VG [LAUNCHER...]: the group, then each tag, one command each.
lvm_make() {
	vg=$1
	shift
	lvm_cmd "$@" lvm pvcreate -qq -y "$loop" &&
		lvm_cmd "$@" lvm vgcreate -qq "$vg" "$loop" || return
	for i in $(seq $LVM_TAGS); do
		lvm_cmd "$@" lvm vgchange -qq --addtag "tag$i" "$vg" || return
	done
}

# lvm_list VG [LAUNCHER...]: what its metadata says, sequence number included.
lvm_list() {
	vg=$1
	shift
	lvm_cmd "$@" lvm vgs --noheadings -o vg_name,vg_seqno,pv_count,vg_tags "$vg"
}

lvm_drop() {
	lvm_cmd "$@" lvm vgremove -qq -y "$vg" && lvm_cmd "$@" lvm pvremove -qq -y "$loop"
}

lvm_round_trip() {
	b=$1
	vg=aio-compat-$b
	lvm_make "$vg" "$run" --lib "$lib" --backend="$b" &&
		lvm_list "$vg" >"$tmp/lvm.libaio" &&
		lvm_list "$vg" "$run" --lib "$lib" --backend="$b" >"$tmp/lvm.lib" &&
		grep -q "tag$LVM_TAGS" "$tmp/lvm.libaio" &&
		diff "$tmp/lvm.libaio" "$tmp/lvm.lib" &&
		lvm_drop "$run" --lib "$lib" --backend="$b" &&
		! lvm_cmd lvm pvs "$loop" >/dev/null 2>&1
}

lvm_checks() {
	installed lvm lvm2 || return
	if [ "$(id -u)" != 0 ] || ! command -v losetup >/dev/null; then
		skip loop "lvm checks: they need root and losetup, for a loop device"
		return
	fi
	img=''
	if ! scratch img /var/tmp || ! truncate -s 64M "$img" ||
		! loop=$(losetup -f --show "$img"); then
		skip loop "lvm checks: no loop device"
		return
	fi
	lvm_conf="devices/obtain_device_list_from_udev=0 devices/filter=[\"a|^$loop\$|\",\"r|.*|\"]
		activation/udev_sync=0 activation/udev_rules=0 global/use_lvmlockd=0"
	for b in $backends; do
		expect_ok "lvm: a volume group the library made and rewrote $LVM_TAGS times lists the same on libaio, $b" \
			lvm_round_trip "$b"
		# What a failure left, if anything.
		lvm_cmd lvm vgremove -qq -y "$vg" >/dev/null 2>&1
		lvm_cmd lvm pvremove -qq -y "$loop" >/dev/null 2>&1
	done
	losetup -d "$loop" && loop=
}

# A library built with SANITIZE=1 brings the ASan runtime into programs that
# were not built with it: it cannot come first there, and fio's own leaks
# are not the library's.
sanitized() {
	ldd "$lib" 2>/dev/null | grep -q 'libasan\.so'
}

if [ ! -r "$lib" ]; then
	fail "library $lib: not built"
else
	if sanitized; then
		echo "note: $lib is built with ASan: verify_asan_link_order=0, detect_leaks=0"
		ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
		export ASAN_OPTIONS
	fi
	backends=native
	if [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" != 0 ]; then
		skip uring "preload checks on the uring and auto backends: kernel.io_uring_disabled is set"
	else
		backends="native uring auto"
	fi
	launcher_checks
	client_checks
	raw_syscall_checks
	fio_checks
	sysbench_checks
	thin_checks
	stressapptest_checks
	lvm_checks
fi
summary
