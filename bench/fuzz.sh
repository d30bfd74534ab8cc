#!/usr/bin/env bash
# bench/fuzz.sh SECONDS [TARGET...]: runs every fuzz target (or the ones named) for SECONDS each, one after the other
# (one process at a time), and prints a table: target, executions, exec/s, coverage (libFuzzer's "cov" = covered
# code edges, and "ft" = features), corpus size, and the crashes / leaks / timeouts / OOMs found.
#
# Needs `make fuzz` (build-fuzz/, seeds in build-fuzz/seeds/). Each target grows its corpus in
# build-fuzz/corpus/<target>/ (kept between runs, so campaigns accumulate); findings go to
# build-fuzz/artifacts/<target>/{crash,leak,timeout,oom}-<sha1>; each run's log is build-fuzz/logs/<target>.log and
# one line per target and run is appended to build-fuzz/fuzz-runs.tsv (date, commit, target, seconds = the run's wall
# time, executions, crashes, leaks, timeouts, ooms), from which the totals per target are printed at the end.
#
# libFuzzer stops a target at its first finding (the artifact is the reproducer: run the target on it); the table
# then shows the finding and the executions up to it.
# Environment: FUZZ_BUILD (build-fuzz), FUZZ_RSS_MB (2048: -rss_limit_mb and -malloc_limit_mb), FUZZ_TIMEOUT
# (10: seconds per input), FUZZ_NICE (10), FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:?usage: bench/fuzz.sh SECONDS [TARGET...]}"
shift
B="${FUZZ_BUILD:-build-fuzz}"
RSS="${FUZZ_RSS_MB:-2048}"
TMO="${FUZZ_TIMEOUT:-10}"
NICE="${FUZZ_NICE:-10}"
[ -d "$B/seeds" ] || { echo "fuzz.sh: $B/seeds is missing: run make fuzz first" >&2; exit 1; }
if [ $# -gt 0 ]; then targets=("$@"); else
  targets=()
  for f in fuzz/targets/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

dict_of() {
  case "$1" in
    fuzz_gguf*) echo gguf ;;
    fuzz_safetensors|fuzz_hf_llama) echo safetensors ;;
    fuzz_llama2c*) echo llama2c ;;
    fuzz_catq_*) echo catq ;;
    *) echo "${1#fuzz_}" ;;
  esac
}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit+dirty"
mkdir -p "$B/logs"
[ -f "$B/fuzz-runs.tsv" ] || printf 'date\tcommit\ttarget\tseconds\texecs\tcrashes\tleaks\ttimeouts\tooms\n' > "$B/fuzz-runs.tsv"
rows=()
for t in "${targets[@]}"; do
  bin="$B/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: $bin is missing: run make fuzz" >&2; exit 1; }
  corpus="$B/corpus/$t"; art="$B/artifacts/$t"; log="$B/logs/$t.log"
  mkdir -p "$corpus" "$art" "$B/seeds/$t"
  before=$(ls "$art" | sort)
  dict="fuzz/dict/$(dict_of "$t").dict"
  echo "fuzz.sh: $t for ${SECONDS_EACH}s (log $log)" >&2
  started=$(date +%s)
  set +e
  # -close_fd_mask=1: readers' stdout is noise. stderr keeps libFuzzer's and the sanitizers' reports.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:detect_stack_use_after_return=0}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" OMP_NUM_THREADS=1 \
    nice -n "$NICE" "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS" -malloc_limit_mb="$RSS" \
      -timeout="$TMO" -dict="$dict" -artifact_prefix="$art/" -print_final_stats=1 -close_fd_mask=1 \
      ${FUZZ_ARGS:-} "$corpus" "$B/seeds/$t" > "$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - started ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | sed 's/cov: //; s/ ft: /\//')
  corp=$(ls "$corpus" | wc -l)
  new=$(comm -13 <(echo "$before") <(ls "$art" | sort) | sed '/^$/d')
  count() { grep -c "^$1-" <<< "$new" || true; }
  cr=$(count crash); lk=$(count leak); to=$(count timeout); om=$(count oom)
  # A sanitizer report or a deadly signal without an artifact (e.g. during startup) counts as a crash.
  if [ "$rc" -ne 0 ] && [ $((cr + lk + to + om)) -eq 0 ]; then cr=1; echo "fuzz.sh: $t exited $rc without an artifact: see $log" >&2; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$commit" "$t" "$elapsed" "${execs:-0}" \
    "$cr" "$lk" "$to" "$om" >> "$B/fuzz-runs.tsv"
  rows+=("$(printf '| %-24s | %10s | %7s | %12s | %6s | %7s | %5s | %8s | %4s |' "$t" "${execs:-0}" "${rate:-0}" \
    "${cov:--}" "$corp" "$cr" "$lk" "$to" "$om")")
  [ -z "$new" ] || echo "fuzz.sh: $t found: $(tr '\n' ' ' <<< "$new")(in $art)" >&2
done

echo
echo "This run (${SECONDS_EACH} s per target, -rss_limit_mb=$RSS -malloc_limit_mb=$RSS -timeout=$TMO, commit $commit):"
printf '| %-24s | %10s | %7s | %12s | %6s | %7s | %5s | %8s | %4s |\n' target executions exec/s "cov/ft" corpus crashes leaks timeouts ooms
echo "|--------------------------|-----------:|--------:|-------------:|-------:|--------:|------:|---------:|-----:|"
printf '%s\n' "${rows[@]}"
echo
echo "All runs recorded in $B/fuzz-runs.tsv (executions and findings per target, all commits):"
awk -F'\t' 'NR > 1 { n[$3] += $5; s[$3] += $4; c[$3] += $6; l[$3] += $7; t[$3] += $8; o[$3] += $9 }
  END { printf "| %-24s | %12s | %9s | %7s | %5s | %8s | %4s |\n", "target", "executions", "seconds", "crashes", "leaks", "timeouts", "ooms";
        print "|--------------------------|-------------:|----------:|--------:|------:|---------:|-----:|";
        for (k in n) printf "| %-24s | %12d | %9d | %7d | %5d | %8d | %4d |\n", k, n[k], s[k], c[k], l[k], t[k], o[k] }' \
  "$B/fuzz-runs.tsv" | { read -r h; read -r s; echo "$h"; echo "$s"; sort; }
