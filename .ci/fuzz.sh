#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time. Needs a nightly toolchain (libFuzzer's
# instrumentation is nightly-only) and cargo-fuzz, which it installs into .ci/cache/cargo once; without
# either it says that fuzzing was skipped, and why, and succeeds. A crash fails it, naming the input.
#
#   FUZZ_SECONDS   seconds per target (default 25)
#   FUZZ_TARGETS   the targets to run (default: all of them)
#
# The build is unoptimised and without a sanitizer (`--dev --sanitizer none`): the code under test is safe
# Rust, and in a short run a quick build buys more than speed per input. The corpus is kept in .ci/cache,
# so that each run starts where the last one stopped. Long runs: see README.md, "Hostile input".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache="$root/.ci/cache"
seconds="${FUZZ_SECONDS:-25}"
read -r -a targets <<<"${FUZZ_TARGETS:-webhook_body connectpay_response kyc_proto}"
cargo_fuzz_version=0.13.2

skip() {
  echo "fuzzing SKIPPED: $*"
  exit 0
}

if ! nightly=$(cargo +nightly --version 2>/dev/null); then
  skip "no nightly toolchain ('cargo +nightly --version' failed; 'rustup toolchain install nightly' adds one)"
fi
echo "toolchain: $nightly"

cargo_fuzz="$cache/cargo/bin/cargo-fuzz"
if [[ "$("$cargo_fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]]; then
  echo "installing cargo-fuzz $cargo_fuzz_version into $cache/cargo"
  if ! cargo install --locked --quiet --root "$cache/cargo" --version "$cargo_fuzz_version" cargo-fuzz; then
    skip "cargo-fuzz $cargo_fuzz_version could not be installed"
  fi
fi

# This cargo-fuzz, whatever else is installed, driving the nightly toolchain's cargo.
fuzz() { RUSTUP_TOOLCHAIN=nightly "$cargo_fuzz" fuzz "$@"; }
flags=(--dev --sanitizer none --target-dir "$cache/fuzz-target")
started=$SECONDS
fuzz build "${flags[@]}"
echo "fuzz build: $((SECONDS - started)) s"

failed=()
for target in "${targets[@]}"; do
  corpus="$cache/fuzz-corpus/$target"
  artifacts="$root/fuzz/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  [[ -d "fuzz/seeds/$target" ]] && seeds=("$root/fuzz/seeds/$target")
  dict=()
  [[ "$target" != kyc_proto ]] && dict=("-dict=$root/fuzz/connectpay.dict")
  stamp=$(mktemp)
  echo "--- $target: ${seconds} s"
  if fuzz run "${flags[@]}" "$target" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" 2>"$cache/fuzz-$target.log"; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' \
      "$cache/fuzz-$target.log" || true
  else
    tail -n 60 "$cache/fuzz-$target.log"
    found=$(find "$artifacts" -type f -newer "$stamp" | head -n 1)
    if [[ -n "$found" ]]; then
      echo "FUZZ CRASH in $target: input saved at ${found#"$root"/}"
      echo "  reproduce: cargo +nightly fuzz run --dev --sanitizer none $target ${found#"$root"/}"
    else
      echo "FUZZ FAILURE in $target (no input saved; see the log above)"
    fi
    failed+=("$target")
  fi
  rm -f "$stamp"
done

# A fresh CI clone never reuses the instrumented build, and it takes gigabytes; a workstation keeps it.
if [[ "${CI:-}" == true ]]; then
  rm -rf "$cache/fuzz-target"
fi

if ((${#failed[@]})); then
  echo "fuzz targets failed: ${failed[*]}"
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${seconds} s each, no crash ($((SECONDS - started)) s in all)"
