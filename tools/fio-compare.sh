#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# fio 4 KiB random reads at depth 32 on a tmpfs file, through seven engines
# in alternating rounds of one run: fio's own io_uring engine, as fio sets
# it up and again on a ring that any thread may use (tools/fio-shareable-
# ring.so drops SINGLE_ISSUER and DEFER_TASKRUN from its setup), its libaio
# engine on the real libaio, and the same libaio engine on libaio-compat
# (preloaded by tools/aio-compat-run) with each backend, the uring one also
# with --single-issuer, and auto. Prints the median IOPS of each and the
# ratios:
#
#   uring backend / fio io_uring shareable   the library's cost on such a ring
#   uring --single-issuer / fio io_uring     the same, both rings single-issuer
#   native backend / real libaio             the library's cost on native AIO
#   fio io_uring shareable / fio io_uring    the kernel's price of a ring that
#                                            any thread may use
#   uring backend / fio io_uring             the first times the fourth
#   auto / the better of fio io_uring and libaio   the default against the
#                                            faster of the two in each round
#                                            (median of the rounds' ratios)
#
# usage: tools/fio-compare.sh [--check]
#   --check   exit 1 when one of the first three or the last is below
#             MIN_RATIO (the fourth and fifth hold the kernel's price, which
#             is not judged)
#
#   RUNTIME=3 ROUNDS=9 SIZE=256M MIN_RATIO=0.9 DIR=/dev/shm
#   AIO_COMPAT_LIB=lib/libaio-compat.so.1
#   CPU=N  pins fio to CPU N (default: not pinned)

cd "$(dirname "$0")/.." || exit 1

runtime=${RUNTIME:-3}
rounds=${ROUNDS:-9}
size=${SIZE:-256M}
min_ratio=${MIN_RATIO:-0.9}
dir=${DIR:-/dev/shm}
lib=${AIO_COMPAT_LIB:-$(pwd)/lib/libaio-compat.so.1}
run=tools/aio-compat-run
shareable=$(pwd)/tools/fio-shareable-ring.so
check=0

case ${1-} in
--check) check=1 ;;
"") ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

command -v fio >/dev/null || {
	echo "fio-compare: fio is not installed" >&2
	exit 1
}
for built in "$lib" "$shareable"; do
	[ -r "$built" ] || {
		echo "fio-compare: $built: not built (make)" >&2
		exit 1
	}
done

tmp=$(mktemp -d) || exit 1
file=$(mktemp "$dir/fio-compare.XXXXXX") || exit 1
trap 'rm -rf "$tmp" "$file"' EXIT
trap 'exit 130' INT TERM

pin=
[ -z "${CPU-}" ] || pin="taskset -c $CPU"

# The engines, by label, in the order each round runs them.
engines="io_uring io_uring-shareable libaio compat-uring compat-uring-si compat-native compat-auto"

# aio-compat-run executes a program: the whole fio command goes through it.
run_engine() {
	case $1 in
	io_uring) set -- fio --ioengine=io_uring ;;
	io_uring-shareable) set -- env LD_PRELOAD="$shareable" fio --ioengine=io_uring ;;
	libaio) set -- fio --ioengine=libaio ;;
	compat-uring) set -- "$run" --lib "$lib" --backend=uring fio --ioengine=libaio ;;
	compat-uring-si)
		set -- "$run" --lib "$lib" --backend=uring --single-issuer fio --ioengine=libaio
		;;
	compat-native) set -- "$run" --lib "$lib" --backend=native fio --ioengine=libaio ;;
	compat-auto) set -- "$run" --lib "$lib" --backend=auto fio --ioengine=libaio ;;
	esac
	# shellcheck disable=SC2086 # pin is a command prefix or nothing
	$pin "$@" --name=randread --filename="$file" --size="$size" --rw=randread \
		--bs=4k --iodepth=32 --direct=0 --time_based --runtime="$runtime" \
		--ramp_time=1 --output-format=terse
}

# Lay the file out once, outside the measured runs.
fio --name=layout --filename="$file" --size="$size" --rw=write --bs=1M \
	--output-format=terse >/dev/null || exit 1

echo "fio $(fio --version | sed 's/^fio-//'), 4 KiB randread, depth 32, $size in $dir," \
	"${runtime}s x $rounds rounds, $(nproc) CPUs, kernel $(uname -r)"
round=1
while [ "$round" -le "$rounds" ]; do
	for e in $engines; do
		# Field 8 of fio's terse line is the read IOPS.
		if ! iops=$(run_engine "$e" 2>"$tmp/err" | awk -F';' '$1 == "3" { print $8 }') ||
			[ -z "$iops" ]; then
			echo "fio-compare: $e failed:" >&2
			cat "$tmp/err" >&2
			exit 1
		fi
		echo "$iops" >>"$tmp/$e"
		printf 'round %d  %-16s %9d IOPS\n' "$round" "$e" "$iops"
	done
	round=$((round + 1))
done

median() {
	sort -n "$tmp/$1" | awk '{ v[NR] = $1 } END {
		print NR % 2 ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

echo
printf '%-40s %9s\n' "engine (median of $rounds)" IOPS
printf '%-40s %9d\n' "fio io_uring" "$(median io_uring)"
printf '%-40s %9d\n' "  the same, on a shareable ring" "$(median io_uring-shareable)"
printf '%-40s %9d\n' "fio libaio (libaio.so.1)" "$(median libaio)"
printf '%-40s %9d\n' "fio libaio on aio-compat, uring" "$(median compat-uring)"
printf '%-40s %9d\n' "  the same, --single-issuer" "$(median compat-uring-si)"
printf '%-40s %9d\n' "fio libaio on aio-compat, native" "$(median compat-native)"
printf '%-40s %9d\n' "fio libaio on aio-compat, auto" "$(median compat-auto)"

status=0
ratio() {
	r=$(awk -v a="$(median "$2")" -v b="$(median "$3")" 'BEGIN { printf "%.3f", a / b }')
	if [ -n "${4-}" ]; then
		printf '%-40s %9s  (%s)\n' "$1" "$r" "$4"
		return
	fi
	ok=$(awk -v r="$r" -v m="$min_ratio" 'BEGIN { print (r >= m) ? "ok" : "below" }')
	printf '%-40s %9s  (%s %s)\n' "$1" "$r" "$ok" "$min_ratio"
	[ "$ok" = ok ] || status=1
}
echo
ratio "uring backend / fio io_uring shareable" compat-uring io_uring-shareable
ratio "uring --single-issuer / fio io_uring" compat-uring-si io_uring
ratio "native backend / real libaio" compat-native libaio
ratio "fio io_uring shareable / fio io_uring" io_uring-shareable io_uring "the kernel's; not judged"
ratio "uring backend / fio io_uring" compat-uring io_uring "first x fourth; not judged"
# Each file holds one line a round, in the order of the rounds.
paste "$tmp/compat-auto" "$tmp/io_uring" "$tmp/libaio" |
	awk '{ print $1 / ($2 > $3 ? $2 : $3) }' | sort -g >"$tmp/best"
best=$(awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] :
	(v[NR / 2] + v[NR / 2 + 1]) / 2 }' "$tmp/best")
ok=$(awk -v r="$best" -v m="$min_ratio" 'BEGIN { print (r >= m) ? "ok" : "below" }')
printf '%-40s %9s  (%s %s)\n' "auto / better of io_uring and libaio" "$best" "$ok" "$min_ratio"
[ "$ok" = ok ] || status=1
[ "$check" = 1 ] || status=0
exit $status
