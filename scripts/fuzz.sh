#!/usr/bin/env bash
# make fuzz: runs every target in fuzz/ for FUZZ_SECONDS (30 by default)
# each, and prints how many inputs each executed. A crash's input is copied
# to fuzz/regressions/<target>/, where tests/fuzz_cases.rs keeps running it
# in `make test` once it is fixed; the run then fails.
#
# cargo-fuzz drives libFuzzer through rustc's -Z flags, which a stable
# toolchain takes with RUSTC_BOOTSTRAP=1; --sanitizer none, since the
# sanitizers need nightly's runtimes.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build --sanitizer none -O
status=0
for target in $(cargo fuzz list); do
    corpus="../target/fuzz-corpus/$target"
    log="../target/fuzz-$target.log"
    mkdir -p "$corpus"
    if cargo fuzz run --sanitizer none -O "$target" "$corpus" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz: $target: $runs executions in ${seconds} s, no crash"
    else
        status=1
        crash=$(ls -t "artifacts/$target"/* 2>/dev/null | head -n 1 || true)
        if [ -n "$crash" ]; then
            mkdir -p "regressions/$target"
            cp "$crash" "regressions/$target/"
            echo "fuzz: $target: CRASH; input kept as fuzz/regressions/$target/$(basename "$crash") (log: target/fuzz-$target.log)"
        else
            echo "fuzz: $target: failed without a crash input; see target/fuzz-$target.log"
        fi
    fi
done
exit "$status"
