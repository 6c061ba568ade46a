#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# QEMU's block layer as a benchmark: qemu-img bench -t none -d 32 -s 4k on
# a raw image, reads and writes, on disk (/var/tmp, 20000 requests) and on
# tmpfs (/dev/shm, 100000 requests), through five contenders in alternating
# rounds, the order rotated by one each round:
#
#   libaio       -i native on the real libaio.so.1 (QEMU's linux-aio)
#   io_uring     -i io_uring: QEMU's own io_uring engine (liburing)
#   lib-native   -i native through tools/aio-compat-run --backend=native
#   lib-uring    -i native through tools/aio-compat-run --backend=uring
#   lib-auto     -i native through tools/aio-compat-run (auto: per file)
#
# The time of a run is what qemu-img bench reports (the requests only, not
# the program's start). Prints every run, then per scenario the median
# times and the medians of the per-round ratios (lower is better):
#
#   lib-native / libaio      the library on native AIO against libaio
#   lib-uring / io_uring     the library on io_uring against QEMU's io_uring
#   lib-uring / libaio       the uring backend against the libaio it replaces
#   lib-auto / best          the default against the faster of libaio and
#                            QEMU's io_uring in the same round
#
# and, from one run of each contender on tmpfs reads under strace -f -c,
# the system calls per request.
#
#   ROUNDS=5 DISK_REQUESTS=20000 SHM_REQUESTS=100000 STRACE_REQUESTS=20000
#   SIZE=256M (each image, fully allocated)
#   AIO_COMPAT_LIB=lib/libaio-compat.so.1

cd "$(dirname "$0")/.." || exit 1

rounds=${ROUNDS:-5}
disk_requests=${DISK_REQUESTS:-20000}
shm_requests=${SHM_REQUESTS:-100000}
strace_requests=${STRACE_REQUESTS:-20000}
size=${SIZE:-256M}
lib=${AIO_COMPAT_LIB:-$(pwd)/lib/libaio-compat.so.1}
run=tools/aio-compat-run
limit=300	# seconds for one run; a hang is a failure
me=bench-qemu

die() {
	echo "$me: $*" >&2
	exit 1
}

for prog in qemu-img strace; do
	command -v "$prog" >/dev/null || die "$prog is not installed (make deps)"
done
[ -r "$lib" ] || die "$lib: not built (make)"

tmp=$(mktemp -d /tmp/bench-qemu.XXXXXX) || exit 1
files=
cleanup() {
	rm -rf "$tmp"
	# shellcheck disable=SC2086 # a list of paths without spaces
	[ -z "$files" ] || rm -f $files
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# image VAR DIR: a raw image of $size in DIR, every block written, so that
# no write of the benchmark allocates; named in VAR, removed at exit.
image() {
	f=$(mktemp "$2/bench-qemu.XXXXXX") || exit 1
	files="$files $f"
	qemu-img create -q -f raw -o preallocation=full "$f" "$size" || exit 1
	eval "$1=\$f"
}

contenders="libaio io_uring lib-native lib-uring lib-auto"
if [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" != 0 ]; then
	echo "kernel.io_uring_disabled is set: io_uring and lib-uring left out (lib-auto is native)"
	contenders="libaio lib-native lib-auto"
fi

# bench CONTENDER IMAGE REQUESTS [OPTION...]: qemu-img bench through it,
# under $tracer when that is set.
tracer=
bench() {
	c=$1 img=$2 n=$3
	shift 3
	case $c in
	libaio) set -- qemu-img bench -i native "$@" ;;
	io_uring) set -- qemu-img bench -i io_uring "$@" ;;
	lib-native) set -- "$run" --lib "$lib" --backend=native qemu-img bench -i native "$@" ;;
	lib-uring) set -- "$run" --lib "$lib" --backend=uring qemu-img bench -i native "$@" ;;
	lib-auto) set -- "$run" --lib "$lib" --backend=auto qemu-img bench -i native "$@" ;;
	esac
	# shellcheck disable=SC2086 # tracer is a command prefix or nothing
	timeout -k 5 "$limit" $tracer "$@" -f raw -t none -d 32 -s 4k -c "$n" "$img"
}

# The scenarios: name, directory, requests, qemu-img bench options.
disk_img='' shm_img=''
image disk_img /var/tmp
image shm_img /dev/shm
scenarios="disk-read disk-write shm-read shm-write"
if ! qemu-img bench -f raw -t none -i native -c 1 "$shm_img" >/dev/null 2>&1; then
	echo "/dev/shm refuses O_DIRECT (tmpfs takes it from Linux 6.6 on): tmpfs left out"
	scenarios="disk-read disk-write"
fi

scenario() {
	case $1 in
	disk-read) echo "$disk_img $disk_requests" ;;
	disk-write) echo "$disk_img $disk_requests -w" ;;
	shm-read) echo "$shm_img $shm_requests" ;;
	shm-write) echo "$shm_img $shm_requests -w" ;;
	esac
}

# rotate N WORDS...: the words, starting at the Nth (from 0), wrapped round.
rotate() {
	n=$1
	shift
	i=0
	for w in "$@"; do
		[ "$i" -lt "$n" ] || printf '%s ' "$w"
		i=$((i + 1))
	done
	i=0
	for w in "$@"; do
		[ "$i" -ge "$n" ] || printf '%s ' "$w"
		i=$((i + 1))
	done
}

echo "qemu-img bench -t none -d 32 -s 4k, raw images of $size; $(qemu-img --version | head -1)"
echo "$(nproc) CPUs, kernel $(uname -r), $rounds rounds, library $lib"
ncontenders=$(echo "$contenders" | wc -w)
round=1
while [ "$round" -le "$rounds" ]; do
	# shellcheck disable=SC2086 # a list of words
	order=$(rotate $(((round - 1) % ncontenders)) $contenders)
	for s in $scenarios; do
		for c in $order; do
			# shellcheck disable=SC2046 # image, count and options
			if ! bench "$c" $(scenario "$s") >"$tmp/out" 2>&1; then
				cat "$tmp/out" >&2
				die "$c failed on $s"
			fi
			t=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' "$tmp/out")
			[ -n "$t" ] || die "$c on $s: no time in qemu-img's output"
			echo "$round $t" >>"$tmp/$s.$c"
			printf 'round %d  %-10s %-10s %8.3f s\n' "$round" "$s" "$c" "$t"
		done
	done
	round=$((round + 1))
done

# median FILE COLUMN
median() {
	awk -v col="$2" '{ print $col }' "$1" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio SCENARIO A B: the median over the rounds of A's time / B's time.
ratio() {
	if [ ! -r "$tmp/$1.$2" ] || [ ! -r "$tmp/$1.$3" ]; then
		echo -
		return
	fi
	# Both files hold one line a round, in the order of the rounds.
	paste "$tmp/$1.$2" "$tmp/$1.$3" | awk '{ print $2 / $4 }' >"$tmp/ratio"
	printf '%.2f' "$(median "$tmp/ratio" 1)"
}

# ratio_best SCENARIO A B C: the median over the rounds of A's time / the
# shorter of B's and C's.
ratio_best() {
	if [ ! -r "$tmp/$1.$2" ] || [ ! -r "$tmp/$1.$3" ] || [ ! -r "$tmp/$1.$4" ]; then
		echo -
		return
	fi
	paste "$tmp/$1.$2" "$tmp/$1.$3" "$tmp/$1.$4" |
		awk '{ print $2 / ($4 < $6 ? $4 : $6) }' >"$tmp/ratio"
	printf '%.2f' "$(median "$tmp/ratio" 1)"
}

time_of() {
	if [ -r "$tmp/$1.$2" ]; then printf '%.3f' "$(median "$tmp/$1.$2" 2)"; else echo -; fi
}

echo
echo "median time (s) over $rounds rounds; ratios: medians of the per-round ratios"
printf '%-11s %8s %8s %10s %9s %8s  %12s %12s %12s %10s\n' scenario libaio io_uring \
	lib-native lib-uring lib-auto "native/libaio" "uring/io_uring" "uring/libaio" "auto/best"
for s in $scenarios; do
	printf '%-11s %8s %8s %10s %9s %8s  %12s %12s %12s %10s\n' "$s" "$(time_of "$s" libaio)" \
		"$(time_of "$s" io_uring)" "$(time_of "$s" lib-native)" \
		"$(time_of "$s" lib-uring)" "$(time_of "$s" lib-auto)" \
		"$(ratio "$s" lib-native libaio)" "$(ratio "$s" lib-uring io_uring)" \
		"$(ratio "$s" lib-uring libaio)" "$(ratio_best "$s" lib-auto libaio io_uring)"
done

# System calls per request, one traced run of each contender on tmpfs reads
# (the program's start included: several hundred calls, most of them
# outside the calls named here).
case $scenarios in
*shm-read*) ;;
*) exit 0 ;;
esac
traced="io_submit io_getevents io_uring_enter ppoll read write futex newfstatat fstat kcmp clock_nanosleep"
echo
echo "system calls per request, shm-read, $strace_requests requests under strace -f -c" \
	"(tracing slows the program, so timed wake-ups count more than untraced)"
for c in $contenders; do
	tracer="strace -f -c -o $tmp/strace.$c"
	if ! bench "$c" "$shm_img" "$strace_requests" >"$tmp/out" 2>&1; then
		cat "$tmp/out" >&2
		die "$c failed under strace"
	fi
done
# shellcheck disable=SC2086 # a list of words
printf '%-16s' "" && printf ' %10s' $contenders && echo
for sc in $traced total; do
	printf '%-16s' "$(echo "$sc" | sed 's/^total$/all calls/')"
	for c in $contenders; do
		awk -v name="$sc" -v n="$strace_requests" \
			'$NF == name { calls = $4 } END { printf " %10.2f", calls / n }' "$tmp/strace.$c"
	done
	echo
done
