#!/bin/sh
# Runs the libFuzzer target: first every input of the seed corpus once (the
# regression inputs among them reproduce bugs the target found), then new
# inputs for FUZZ_SECONDS (default 20). Each input runs on a native, a
# uring and an auto context. New inputs go to a scratch directory, so the
# seed corpus in tests/fuzz-corpus stays small; crashing inputs are kept in
# tests/. On a failure the target's own words are printed again at the end.
#   sh tests/fuzz.sh [FUZZER]
set -eu
fuzzer=${1:-tests/fuzz_submit}
seconds=${FUZZ_SECONDS:-20}
scratch=$(mktemp -d /tmp/aio-compat-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

log=$scratch/log

# run ARGS...: the fuzzer's output, and on a failure the target's own
# words again last, where a log cut to its tail still shows them.
run() {
	status=0
	"$fuzzer" "$@" >"$log" 2>&1 || status=$?
	if [ $status = 0 ]; then
		grep -v '^[#"]' "$log"
		return
	fi
	cat "$log"
	echo "fuzz run failed ($status); the target said:"
	grep -E '^(fuzz_submit|lost):|runtime error|ERROR: ' "$log"
	exit 1
}

mkdir "$scratch/new"
run -runs=0 -artifact_prefix="$scratch/" tests/fuzz-corpus
run -max_total_time="$seconds" -max_len=2048 -timeout=30 \
	-artifact_prefix=tests/fuzz-crash- -print_final_stats=1 \
	"$scratch/new" tests/fuzz-corpus
