#!/bin/sh
# Runs the libFuzzer target: first every input of the seed corpus once (the
# regression inputs among them reproduce bugs the target found), then new
# inputs for FUZZ_SECONDS (default 20). Each input runs on a native, a
# uring and an auto context. New inputs go to a scratch directory, so the
# seed corpus in tests/fuzz-corpus stays small; crashing inputs are kept in
# tests/.
#   sh tests/fuzz.sh [FUZZER]
set -eu
fuzzer=${1:-tests/fuzz_submit}
seconds=${FUZZ_SECONDS:-20}
scratch=$(mktemp -d /tmp/aio-compat-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

"$fuzzer" -runs=0 -artifact_prefix="$scratch/" tests/fuzz-corpus
"$fuzzer" -max_total_time="$seconds" -max_len=2048 -timeout=30 \
	-artifact_prefix=tests/fuzz-crash- -print_final_stats=1 \
	"$scratch" tests/fuzz-corpus
