#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a bounded time, starting from the committed seeds
# in fuzz/corpus/<target>/, which are only read: what a run adds goes to a temporary directory.
# .ci/run calls it after the tests. Fails if any target crashes; the input that crashed is left
# in fuzz/artifacts/<target>/ and the command that replays it is printed.
#
#   bash fuzz/run.sh                               # every target, 60 s each, one per core
#   FUZZ_SECONDS=600 bash fuzz/run.sh config_toml  # one target, longer
#
# On a 2-core machine a clean build takes about 3.5 minutes and the five targets 3 more (two
# at a time).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(pientegra_webhook decentro_callback decentro_status config_toml ffi_json)
fi

# cargo-fuzz passes nightly-only flags to rustc; the stable toolchain accepts them with this.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# No sanitizer: the code under test is safe Rust, so what fuzzing finds is panics (integer
# overflow included: debug assertions are on), which need none, and AddressSanitizer would
# slow the build and every run. Build and run must get the same flags, or the run rebuilds.
flags=(-s none)

started=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz build: $((SECONDS - started)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_one() {
  local target=$1
  mkdir -p "$work/$target"
  # -timeout: an input slower than 10 s fails the run too, rather than stalling it.
  cargo fuzz run "${flags[@]}" "$target" "$work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$work/$target.log" 2>&1
}

running=()
for target in "${targets[@]}"; do
  echo "-- $target: ${seconds} s"
  { run_one "$target" && echo 0 >"$work/$target.rc" || echo 1 >"$work/$target.rc"; } &
  running+=($!)
  if [ ${#running[@]} -ge "$jobs" ]; then
    wait "${running[0]}"
    running=("${running[@]:1}")
  fi
done
wait

failed=()
for target in "${targets[@]}"; do
  if [ "$(cat "$work/$target.rc")" = 0 ]; then
    echo "-- $target: ok"
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' \
      "$work/$target.log" || true
  else
    echo "-- $target: FAILED"
    log="$work/$target.log"
    if grep -aq 'panicked at' "$log"; then
      # The panic's message (with the input, as the target prints it), then how to replay it.
      grep -a -m1 -B1 -A30 'panicked at' "$log" || true
      grep -a -A2 'Reproduce with:' "$log" || true
    else
      tail -n 80 "$log"
    fi
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}; each input is in fuzz/artifacts/<target>/ (see above)" >&2
  exit 1
fi
