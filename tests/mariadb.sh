#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# MariaDB's InnoDB, unmodified, on the library: mariadbd with native AIO
# through libaio (innodb_linux_aio=aio), O_DIRECT and an 8 MiB buffer pool,
# run through tools/aio-compat-run on each backend, and once on the real
# libaio as the reference, so that a broken environment shows there too.
# Each run, on a datadir of its own made by mariadb-install-db:
#
#   - the error log says "Using Linux native AIO";
#   - the server's AIO system calls (strace): io_uring_enter on the uring
#     backend (its writes are io_submit on a native context of their own),
#     io_submit and no io_uring_enter on the others (auto's reads are
#     O_DIRECT here: native AIO's);
#   - a table of $rows rows, several times the buffer pool, is written and
#     read back; after a clean shutdown and a restart every row is there
#     (count, CRC32 of every row, CHECKSUM TABLE) and CHECK TABLE says OK;
#   - rows written and updated, then kill -9: after crash recovery every
#     committed row is there, and CHECK TABLE says OK;
#   - the error log has no [ERROR] line;
#   - mariabackup (mariadb-backup) copies the running server while a client
#     inserts rows 1, 2, ... into a second table, a transaction each, and
#     prepares the copy, both on the run's launcher: --prepare applies the
#     redo log it copied through InnoDB's AIO (io_submit, or io_uring_enter
#     on uring, under strace). A server started on the copy holds every row
#     of the first table, rows 1 to n of the second (n at least the count
#     when the backup began), and CHECK TABLE says OK.
#
# Skipped, with a SKIP line, where mariadbd is not installed, and the
# backup where mariabackup is not (make deps installs mariadb-server and
# mariadb-backup). Prints one line per check and ends with
# "N passed, N failed, N skipped"; exits non-zero when a check failed. Each server lives at most $mariadb_limit seconds.
#
#   AIO_COMPAT_LIB   the library to preload (default: lib/libaio-compat.so.1)
#   KEEP=1           keeps the datadirs and logs (the first note names them)

cd "$(dirname "$0")/.." || exit 1
. tools/mariadb-server.sh

. tests/checks.sh
rows=100000	# about 30 MB of rows and index: nearly four buffer pools
mariadb_limit=300
tmp=

cleanup() {
	mariadb_kill
	[ -z "$tmp" ] || [ -n "$KEEP" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# show FILE: the last lines of a log, indented, after a failure.
show() {
	[ -r "$1" ] && tail -n 15 "$1" | sed 's/^/    /'
}

# What the server said before it died, without its notes and the stack
# trace and limits it prints after a fatal signal.
show_server_log() {
	for log in "$dir/err.log" "$dir/stderr.log"; do
		[ ! -r "$log" ] ||
			awk '/\[Note\]/ { next } { print } / got signal / { exit }' "$log"
	done | tail -n 12 | sed 's/^/    /'
}

# check WHAT COMMAND...: a check that passes when COMMAND exits 0.
check() {
	what=$1
	shift
	if "$@"; then
		pass "$what"
	else
		fail "$what"
		return 1
	fi
}

# Counts the calls named in the server's strace log.
calls() {
	grep -c "^[0-9]* *$1(" "$dir/strace" || true
}

# Those of them that did not fail; strace -f splits a call that another
# thread's call interrupts, and prints its result on a line of its own.
calls_taken() {
	grep -Ec "^[0-9]+ +($1\(|<\.\.\. $1 resumed>).*= [0-9]" "$dir/strace" || true
}

# syscall_check [WHO]: the system calls that say which engine served
# InnoDB's I/O in WHO (mariadbd). On uring the
# writes are io_submit on the native context the library keeps for them;
# the library also asks native AIO what it would refuse of a file, with copies it
# refuses.
syscall_check() {
	enter=$(calls io_uring_enter)
	submit=$(calls_taken io_submit)
	if [ "$name" = uring ]; then
		[ "$enter" -gt 0 ]
	else
		[ "$submit" -gt 0 ] && [ "$enter" -eq 0 ]
	fi
	# shellcheck disable=SC2181 # the test just above
	if [ $? = 0 ]; then
		pass "$name: ${1:-mariadbd} issued $enter io_uring_enter, $submit io_submit taken"
	else
		fail "$name: ${1:-mariadbd} issued $enter io_uring_enter, $submit io_submit taken"
	fi
}

# Every row, read through the clustered index, and the count.
table_rows_sum() {
	mariadb_sql "$dir" "SELECT COUNT(*), SUM(CRC32(CONCAT_WS(',', id, k, pad))) FROM aio.t" |
		tr '\t' ' '
}

# The same, and InnoDB's own checksum of the table: a second scan.
table_sums() {
	echo "$(table_rows_sum) $(mariadb_sql "$dir" "CHECKSUM TABLE aio.t" | cut -f2)"
}

table_check() {
	result=$(mariadb_sql "$dir" "CHECK TABLE aio.t" | awk -F'\t' '{ print $3 ": " $4 }')
	if [ "$result" = "status: OK" ]; then
		pass "$name: CHECK TABLE $1: OK"
	else
		fail "$name: CHECK TABLE $1: $result"
	fi
}

# start WHAT [PREFIX...]: mariadbd under the run's launcher and PREFIX.
start() {
	what=$1
	shift
	# shellcheck disable=SC2086 # launcher is a command prefix, or nothing
	if mariadb_start "$dir" "$@" $launcher; then
		pass "$name: mariadbd $what"
	else
		fail "$name: mariadbd $what"
		show_server_log
		return 1
	fi
}

stop() {
	mariadb_stop "$dir"
	status=$?
	if [ $status = 0 ] && grep -q 'Shutdown complete' "$dir/err.log"; then
		pass "$name: clean shutdown $1"
	else
		fail "$name: clean shutdown $1 (exit $status)"
		show_server_log
		return 1
	fi
}

fill() {
	mariadb_sql "$dir" "CREATE DATABASE aio;
		USE aio;
		CREATE TABLE aio.t (id INT PRIMARY KEY, k INT NOT NULL,
			pad VARCHAR(255) NOT NULL, KEY (k)) ENGINE=InnoDB;
		INSERT INTO aio.t SELECT seq, CRC32(seq) % $rows,
			CONCAT(SHA2(seq, 256), REPEAT('x', 150)) FROM seq_1_to_$rows" \
		>"$dir/sql.log" 2>&1
}

# Committed rows and updates that only the redo log holds at the kill.
more_rows() {
	mariadb_sql "$dir" "USE aio;
		INSERT INTO aio.t SELECT seq, CRC32(seq) % $rows, REPEAT('y', 200)
			FROM seq_$((rows + 1))_to_$((rows + rows / 10));
		UPDATE aio.t SET pad = CONCAT(pad, 'z'), k = k + 1 WHERE id % 97 = 0" \
		>"$dir/sql.log" 2>&1
}

# What table_rows_sum must give after more_rows, computed before it runs:
# the server is killed as soon as it has committed, with no query between.
more_rows_sum() {
	mariadb_sql "$dir" "USE aio;
		SELECT COUNT(*), SUM(CRC32(CONCAT_WS(',', id, k, pad))) FROM (
			SELECT id, k, pad FROM aio.t
			UNION ALL
			SELECT seq, CRC32(seq) % $rows, REPEAT('y', 200)
				FROM seq_$((rows + 1))_to_$((rows + rows / 10))) AS r
		WHERE id % 97 != 0
		UNION ALL
		SELECT COUNT(*), SUM(CRC32(CONCAT_WS(',', id, k + 1, CONCAT(pad, 'z')))) FROM (
			SELECT id, k, pad FROM aio.t
			UNION ALL
			SELECT seq, CRC32(seq) % $rows, REPEAT('y', 200)
				FROM seq_$((rows + 1))_to_$((rows + rows / 10))) AS r
		WHERE id % 97 = 0" | awk '{ n += $1; s += $2 } END { printf "%d %.0f", n, s }'
}

# error_log_check [WHOSE]
error_log_check() {
	if grep '\[ERROR\]' "$dir/err.log" "$dir/stderr.log" >"$dir/errors"; then
		fail "$name: the error log${1:+ $1} has [ERROR] lines"
		show "$dir/errors"
	else
		pass "$name: the error log${1:+ $1} has no [ERROR] line"
	fi
}

# run_mariabackup [--traced] OPTION...: mariabackup on the run's launcher,
# InnoDB set up as the server's; under strace, where there is one, if traced.
run_mariabackup() {
	traced=
	if [ "$1" = --traced ]; then
		shift
		[ -z "$strace" ] || traced="$strace -o $copy/strace"
	fi
	# shellcheck disable=SC2046,SC2086 # command prefixes, or nothing; one word per option
	timeout -s KILL "$mariadb_limit" $traced $launcher "$mariabackup" --no-defaults \
		$(mariadb_aio_options) "$@"
}

# Inserts rows 1, 2, ... into aio.w, a transaction each, in the
# background ($writer), until killed or until the server goes.
writer_start() {
	mariadb_sql "$dir" "CREATE TABLE aio.w (id INT PRIMARY KEY) ENGINE=InnoDB" || return
	seq 1000000 | sed 's/.*/INSERT INTO aio.w VALUES (&);/' |
		timeout -s KILL "$mariadb_limit" "$mariadb" --no-defaults --socket="$dir/sock" \
			--user=root aio >/dev/null 2>&1 &
	writer=$!
	for _ in $(seq 50); do
		[ "$(mariadb_sql "$dir" "SELECT COUNT(*) FROM aio.w")" = 0 ] || return 0
		sleep 0.1
	done
	writer_stop
	return 1
}

writer_stop() {
	kill "$writer" 2>/dev/null
	wait "$writer" 2>/dev/null	# the shell's "Terminated"
}

# Copies the running server into $dir/copy while rows go into aio.w, so
# that the copy's redo log holds what its data files may not, and prepares
# the copy: the prepare applies that redo.
backup_take() {
	copy=$dir/copy
	copied=$(table_rows_sum)
	mkdir "$copy" || return
	check "$name: rows go into a second table during the backup" writer_start || return
	before_backup=$(mariadb_sql "$dir" "SELECT COUNT(*) FROM aio.w")
	run_mariabackup --backup --target-dir="$copy/data" --socket="$dir/sock" --user=root \
		--datadir="$dir/data" >"$copy/backup.log" 2>&1
	status=$?
	writer_stop
	if ! check "$name: mariabackup --backup" [ $status = 0 ]; then
		show "$copy/backup.log"
		return 1
	fi
	run_mariabackup --traced --prepare --target-dir="$copy/data" >"$copy/prepare.log" 2>&1
	if ! check "$name: mariabackup --prepare" [ $? = 0 ]; then
		show "$copy/prepare.log"
		return 1
	fi
	check "$name: the prepare says \"Using Linux native AIO\"" \
		grep -q 'Using Linux native AIO' "$copy/prepare.log"
}

# rows_from_one COUNT MAX LEAST: COUNT rows numbered 1 to MAX, at least LEAST.
rows_from_one() {
	[ "$1" = "$2" ] && [ "$1" -ge "$3" ]
}

# A server on the prepared copy holds what the original held when copied.
backup_restore() {
	original=$dir
	dir=$copy
	if [ -n "$strace" ]; then
		syscall_check "mariabackup --prepare"
	else
		skip strace "$name: AIO system calls of the prepare: strace is not installed"
	fi
	if start "starts on the prepared copy"; then
		after=$(table_rows_sum)
		check "$name: the copy holds every row the original held ($after)" \
			[ "$after" = "$copied" ]
		# Rows 1 to n, with n at least what was there when the backup began.
		inserted=$(mariadb_sql "$dir" "SELECT COUNT(*), MAX(id) FROM aio.w" | tr '\t' ' ')
		# shellcheck disable=SC2086 # COUNT and MAX, as two arguments
		check "$name: the copy holds rows 1 to ${inserted#* } of the second table" \
			rows_from_one $inserted "$before_backup"
		table_check "on the copy"
		stop "of the copy" && error_log_check "of the copy"
	fi
	dir=$original
}

# server_run NAME [LAUNCHER...]: the whole sequence on a new datadir.
server_run() {
	name=$1
	shift
	launcher=$*
	dir=$tmp/$name
	before=
	mkdir "$dir" || return
	if ! mariadb_install "$dir"; then
		fail "$name: mariadb-install-db"
		show "$dir/install.log"
		return
	fi
	if [ -n "$strace" ]; then
		# shellcheck disable=SC2086 # strace is a command prefix
		start "starts (under strace)" $strace -o "$dir/strace" || return
	else
		start starts || return
	fi
	check "$name: error log says \"Using Linux native AIO\"" \
		grep -q 'Using Linux native AIO' "$dir/err.log"
	if check "$name: $rows rows written" fill; then
		before=$(table_sums)
		check "$name: $rows rows read back" [ "${before%% *}" = "$rows" ]
	else
		show "$dir/sql.log"
	fi
	stop "after writing" || return
	if [ -n "$strace" ]; then
		syscall_check
	else
		skip strace "$name: AIO system calls: strace is not installed"
	fi

	start "restarts on the same datadir" || return
	after=$(table_sums)
	check "$name: every row is there after the restart ($after)" [ "$after" = "$before" ]
	table_check "after the restart"

	expected=$(more_rows_sum)
	check "$name: $((rows / 10)) more rows written, every 97th row updated" more_rows ||
		show "$dir/sql.log"
	# At once: the redo log holds what the data files may not.
	mariadb_crash "$dir"
	start "recovers after kill -9" || return
	if grep -q 'Starting crash recovery' "$dir/err.log"; then
		pass "$name: recovery applied the redo log"
	else
		skip - "$name: no redo to apply: every page was written before the kill"
	fi
	after=$(table_rows_sum)
	check "$name: every committed row is there after recovery ($after)" \
		[ "$after" = "$expected" ]
	if [ "$name" = libaio ]; then
		reference_rows=$after
	elif [ -n "$reference_rows" ]; then
		check "$name: the same rows as on the real libaio" [ "$after" = "$reference_rows" ]
	fi
	table_check "after recovery"
	copy=
	if [ -z "$mariabackup" ]; then
		skip mariadb-backup \
			"$name: mariabackup: mariadb-backup is not installed (make deps installs it)"
	elif ! backup_take; then
		copy=
	fi
	stop "after recovery" || return
	error_log_check
	[ -z "$copy" ] || backup_restore
}

# The library's backends that this kernel allows, into $backends.
find_backends() {
	backends=native
	if [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" != 0 ]; then
		skip uring "uring and auto: kernel.io_uring_disabled is set"
	else
		backends="native uring auto"
	fi
}

main() {
	if ! mariadb_find; then
		skip mariadb "MariaDB's InnoDB: $mariadb_missing (make deps installs it)"
		return
	fi
	if [ ! -r "$lib" ]; then
		fail "library $lib: not built"
		return
	fi
	# As in tests/preload.sh: a library built with SANITIZE=1 brings the
	# ASan runtime into a server not built with it, and the server's own
	# leaks are not the library's. The runtime cannot come first, and must
	# be preloaded itself: mariadbd names the dynamic linker among its
	# libraries, ahead of the runtime, which then cannot find in it what
	# it looks up with RTLD_NEXT at its start.
	asan=
	if runtime=$(ldd "$lib" 2>/dev/null | awk '/libasan\.so/ { print $3 }') &&
		[ -n "$runtime" ]; then
		echo "note: $lib is built with ASan: verify_asan_link_order=0, detect_leaks=0," \
			"$runtime preloaded"
		ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
		export ASAN_OPTIONS
		asan="env LD_PRELOAD=$runtime"
	fi
	strace=
	if command -v strace >/dev/null; then
		strace="strace -f -qq --seccomp-bpf -e trace=io_submit,io_uring_enter"
	fi
	mariabackup=$(command -v mariadb-backup || command -v mariabackup)
	tmp=$(mktemp -d /var/tmp/aio-compat-mariadb.XXXXXX) || exit 1
	echo "note: $("$mariadbd" --version | sed 's/^[^ ]* *//'), datadirs in $tmp"

	started=$(date +%s)
	reference_rows=
	server_run libaio
	reference=$failed
	find_backends
	for b in $backends; do
		# shellcheck disable=SC2086 # asan is a command prefix, or nothing
		server_run "$b" $asan "$run" --lib "$lib" --backend="$b"
	done
	[ "$reference" = 0 ] ||
		echo "note: the reference run on the real libaio failed: look at the environment first"
	echo "note: $(($(date +%s) - started)) s"
}

main
summary
