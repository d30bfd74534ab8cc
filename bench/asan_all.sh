#!/usr/bin/env bash
# bench/asan_all.sh [BUILD_DIR] [GTEST_FILTER]: the whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer
# (`make asan-all` builds build-asan and runs this). CI runs only the cheap bad-input subset (`make asan`): the whole
# suite under ASan takes far longer than CI's time limit.
#
# Each test suite runs in its own process (a sanitizer report aborts only its suite, the others still run), one after
# the other, niced; per suite: result, seconds, and the first sanitizer report. Logs: BUILD_DIR/asan-all/<suite>.log;
# summary: BUILD_DIR/asan-all/summary.tsv. Exit status 1 when any suite failed or reported.
# Environment: ASAN_ALL_TIMEOUT (seconds per suite, default 3600), ASAN_ALL_NICE (10).
set -uo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-asan}"
FILTER="${2:-*}"
BIN="$B/catq_tests"
[ -x "$BIN" ] || { echo "asan_all: $BIN is missing: run make asan-all (or make asan)" >&2; exit 2; }
OUT="$B/asan-all"
mkdir -p "$OUT"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" OMP_NUM_THREADS=1
suites=$("$BIN" --gtest_list_tests --gtest_filter="$FILTER" | grep -v '^ ' | sed 's/\.$//; s/ .*//' | sort -u)
printf 'suite\tresult\tseconds\ttests\tfailed\n' > "$OUT/summary.tsv"
bad=0
total_start=$(date +%s)
for s in $suites; do
  log="$OUT/$(tr '/' '_' <<< "$s").log"
  start=$(date +%s)
  timeout "${ASAN_ALL_TIMEOUT:-3600}" nice -n "${ASAN_ALL_NICE:-10}" "$BIN" --gtest_filter="$s.*" > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  tests=$(grep -c '^\[       OK \]\|^\[  FAILED  \]\|^\[  SKIPPED \]' "$log")
  failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$log")
  if grep -q 'ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer' "$log"; then result=SANITIZER
  elif [ "$rc" -eq 124 ]; then result=TIMEOUT
  elif [ "$rc" -ne 0 ]; then result=FAILED
  else result=ok; fi
  [ "$result" = ok ] || bad=1
  printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$result" "$secs" "$tests" "$failed" >> "$OUT/summary.tsv"
  printf '%-40s %-9s %6ss %4s tests\n' "$s" "$result" "$secs" "$tests"
  if [ "$result" != ok ]; then
    grep -m1 -A12 'ERROR: AddressSanitizer\|runtime error:\|ERROR: LeakSanitizer\|^\[  FAILED  \]' "$log" | sed 's/^/    /'
  fi
done
echo "asan_all: $(grep -c . <<< "$suites") suites in $(( $(date +%s) - total_start )) s; summary $OUT/summary.tsv"
awk -F'\t' 'NR > 1 && $2 != "ok" { printf "  not ok: %s (%s)\n", $1, $2 }' "$OUT/summary.tsv"
exit $bad
