#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after
# another, starting from the committed corpus (fuzz/corpus/<target>).
#
#   fuzz/run.sh 30            what CI runs (.ci/run)
#   fuzz/run.sh 600           the long run
#   fuzz/run.sh 600 requests  one target
#
# Needs the nightly toolchain and cargo-fuzz (.ci/run installs both:
# `rustup toolchain install nightly --profile minimal`,
# `cargo install cargo-fuzz --locked`). Builds in fuzz/target.
#
# New inputs a run finds go to fuzz/target/corpus/<target>, so the
# committed corpus stays as it is. To keep what a long run found, merge it
# into the committed one: only inputs that reach code the corpus does not
# are added (set cover over edges, so the corpus stays small; the seed-*
# and crash-* files stay):
#   cd fuzz && cargo +nightly fuzz run TARGET corpus/TARGET target/corpus/TARGET -- \
#     -set_cover_merge=1 -use_counters=0
# A crash stops the run; the input is in fuzz/artifacts/<target>/, and
# `cargo +nightly fuzz tmin TARGET ARTIFACT` minimises it.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build
summary=()
for target in "${targets[@]}"; do
  echo "== fuzz $target (${seconds}s)"
  mkdir -p "target/corpus/$target"
  log="target/fuzz-$target.log"
  # -timeout: an input that takes 10 s is a hang, and fails like a crash.
  set +e
  cargo +nightly fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    2>&1 | tee "$log" | grep --line-buffered -E '^#[0-9]+[[:space:]]+(INITED|pulse|DONE)'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    tail -60 "$log" >&2
    echo "fuzz target $target failed (exit $status); log: fuzz/$log, input: fuzz/artifacts/$target/" >&2
    exit 1
  fi
  summary+=("$target: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)")
done
echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
