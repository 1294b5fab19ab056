#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (default 300 s each) with cargo-fuzz on nightly.
# Usage: fuzz/run-all.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-300}"
for target in spiffe_id jwt_svid bundle_json x509_svid; do
    echo "== $target ($secs s)"
    cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 | tail -n 4
done
