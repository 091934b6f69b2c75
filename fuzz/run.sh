#!/usr/bin/env bash
# Fuzzes the parsers Plinth owns (Stripe-Signature headers, access tokens, page
# cursors, stored flag rules) with cargo-fuzz/libFuzzer, FUZZ_SECONDS (default 20)
# per target. Installs cargo-fuzz when missing. The machine's toolchain is stable:
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its instrumentation flags; without a
# sanitizer (safe Rust), a panic or a failed assertion is what a crash means.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-20}
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none
log=$(mktemp)
for target in webhook_signature access_token page_cursor flag_rules; do
    echo "== fuzz $target (${seconds} s)"
    if ! cargo fuzz run -s none "$target" -- -max_total_time="$seconds" > "$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    grep -E "^Done" "$log"
done
