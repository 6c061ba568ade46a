#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# sysbench oltp_read_write on MariaDB's InnoDB, served by the real libaio
# and by the library on each backend (tools/aio-compat-run), in alternating
# rounds: every round runs each once, starting one further on each round.
# The server is the one tests/mariadb.sh runs (tools/mariadb-server.sh):
# native AIO through libaio, O_DIRECT, an 8 MiB buffer pool for about
# 20 MB of rows, so that InnoDB reads and writes its files all the time.
#
# The tables are prepared once (sysbench prepare, on the real libaio); each
# run starts the server on a fresh copy of that datadir, synced to disk
# first, with the same random seed, so that every run starts from the same
# state and no run writes back what another left in the page cache.
#
# Prints each run's transactions per second and the server's CPU time per
# transaction (user and system, all its threads, io_uring's workers among
# them), then for each backend the median over the rounds of the ratios
# library / libaio within a round. The TPS ratio is the one judged; the
# CPU one moves less when other work shares the machine.
#
# usage: tools/bench-clients.sh [--check]
#   --check   exit 1 when a median ratio is below MIN_RATIO
#
#   ROUNDS=5 RUNTIME=20 (seconds a run) TABLES=4 TABLE_SIZE=20000 THREADS=8
#   MIN_RATIO=0.95 AIO_COMPAT_LIB=lib/libaio-compat.so.1

cd "$(dirname "$0")/.." || exit 1
. tools/mariadb-server.sh

rounds=${ROUNDS:-5}
runtime=${RUNTIME:-20}
tables=${TABLES:-4}
table_size=${TABLE_SIZE:-20000}
threads=${THREADS:-8}
min_ratio=${MIN_RATIO:-0.95}
lib=${AIO_COMPAT_LIB:-$(pwd)/lib/libaio-compat.so.1}
run=tools/aio-compat-run
me=bench-clients
check=0

case ${1-} in
--check) check=1 ;;
"") ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

die() {
	echo "$me: $*" >&2
	exit 1
}

mariadb_find || die "$mariadb_missing"
command -v sysbench >/dev/null || die "sysbench is not installed (make deps installs it)"
[ -r "$lib" ] || die "$lib: not built (make)"

tmp=$(mktemp -d /var/tmp/aio-compat-bench-clients.XXXXXX) || exit 1
trap 'mariadb_kill; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
mariadb_limit=$((runtime + 300))

contenders=libaio
if [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ]; then
	contenders="$contenders native uring"
else
	echo "$me: kernel.io_uring_disabled is set: no uring backend"
	contenders="$contenders native"
fi

sysbench_cmd() {
	sysbench oltp_read_write --db-driver=mysql --mysql-socket="$1/sock" \
		--mysql-user=root --mysql-db=sbtest --tables="$tables" \
		--table-size="$table_size" --threads="$threads" --time="$runtime" \
		--rand-seed=1 "$2"
}

# server_or_die DIR [LAUNCHER...]
server_or_die() {
	mariadb_start "$@" || {
		sed 's/^/    /' "$1/err.log" "$1/stderr.log" | tail -n 20 >&2
		die "mariadbd did not start"
	}
	grep -q 'Using Linux native AIO' "$1/err.log" || die "InnoDB is not on native AIO"
}

prepare() {
	master=$tmp/master
	mkdir "$master" || exit 1
	mariadb_install "$master" || die "mariadb-install-db failed"
	server_or_die "$master"
	mariadb_sql "$master" "CREATE DATABASE sbtest" || die "CREATE DATABASE failed"
	sysbench_cmd "$master" prepare >"$tmp/prepare.log" 2>&1 || {
		cat "$tmp/prepare.log" >&2
		die "sysbench prepare failed"
	}
	mariadb_stop "$master" || die "mariadbd did not shut down cleanly"
}

# The server's CPU time so far, user and system, in clock ticks.
server_ticks() {
	awk '{ print $14 + $15 }' "/proc/$(cat "$1/pid")/stat"
}

# measure CONTENDER: one run; its transactions per second in $tps, the
# server's CPU milliseconds per transaction in $cpu.
measure() {
	dir=$tmp/run
	rm -rf "$dir"
	if ! mkdir "$dir" || ! cp -a "$tmp/master/data" "$dir/data" || ! sync; then
		die "copying the datadir"
	fi
	case $1 in
	libaio) server_or_die "$dir" ;;
	*) server_or_die "$dir" "$run" --lib "$lib" --backend="$1" ;;
	esac
	ticks=$(server_ticks "$dir")
	sysbench_cmd "$dir" run >"$tmp/run.log" 2>&1 || {
		cat "$tmp/run.log" >&2
		die "sysbench run on $1 failed"
	}
	ticks=$(($(server_ticks "$dir") - ticks))
	mariadb_stop "$dir" || die "mariadbd on $1 did not shut down cleanly"
	! grep '\[ERROR\]' "$dir/err.log" >&2 || die "mariadbd on $1 logged errors"
	tps=$(awk '/^ *transactions:/ { sub(/^\(/, "", $3); print $3 }' "$tmp/run.log")
	[ -n "$tps" ] || die "no transactions per second in sysbench's report"
	cpu=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" '/^ *transactions:/ {
		printf "%.3f", t * 1000 / hz / $2 }' "$tmp/run.log")
}

# ratio FILE A B: appends A / B to FILE.
ratio() {
	awk -v a="$2" -v b="$3" 'BEGIN { printf "%.4f\n", a / b }' >>"$1"
}

median() {
	sort -n | awk '{ v[NR] = $1 } END {
		printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

started=$(date +%s)
echo "sysbench oltp_read_write, $tables tables of $table_size rows, $threads threads," \
	"${runtime} s a run, $rounds rounds; $("$mariadbd" --version | awk '{ print $3 }')," \
	"innodb_linux_aio=aio, O_DIRECT, 8 MiB buffer pool;" \
	"$(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
prepare

n=$(echo "$contenders" | wc -w)
round=1
while [ "$round" -le "$rounds" ]; do
	# One further each round: the contender that ran first ran last before.
	order=$(echo "$contenders" | tr ' ' '\n' |
		awk -v r="$round" -v n="$n" '{ c[NR - 1] = $0 } END {
			for (i = 0; i < n; i++) print c[(i + r - 1) % n] }')
	for c in $order; do
		measure "$c"
		echo "$tps" >"$tmp/tps.$c"
		echo "$cpu" >"$tmp/cpu.$c"
		printf 'round %d  %-8s %9.2f tps %8.3f ms CPU/transaction\n' \
			"$round" "$c" "$tps" "$cpu"
	done
	for c in $contenders; do
		[ "$c" != libaio ] || continue
		ratio "$tmp/ratios.$c" "$(cat "$tmp/tps.$c")" "$(cat "$tmp/tps.libaio")"
		ratio "$tmp/cpu-ratios.$c" "$(cat "$tmp/cpu.$c")" "$(cat "$tmp/cpu.libaio")"
	done
	round=$((round + 1))
done

echo
status=0
for c in $contenders; do
	[ "$c" != libaio ] || continue
	r=$(median <"$tmp/ratios.$c")
	ok=$(awk -v r="$r" -v m="$min_ratio" 'BEGIN { print (r >= m) ? "ok" : "below" }')
	echo "$c / libaio, TPS, median of the per-round ratios: $r ($ok $min_ratio;" \
		"rounds: $(tr '\n' ' ' <"$tmp/ratios.$c" | sed 's/ $//'))"
	echo "$c / libaio, CPU per transaction, median: $(median <"$tmp/cpu-ratios.$c")" \
		"(not judged; rounds: $(tr '\n' ' ' <"$tmp/cpu-ratios.$c" | sed 's/ $//'))"
	[ "$ok" = ok ] || status=1
done
echo "$me: $(($(date +%s) - started)) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$check" = 1 ] || status=0
exit $status
