#!/usr/bin/env bash
# Time `make setup` on a fresh clone of this repository (pip's download cache is whatever the machine has).
#   bash benchmarks/bench_setup.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q "$repo" "$tmp/clean"
cd "$tmp/clean"
start=$(date +%s)
make setup >/dev/null
mid=$(date +%s)
make setup >/dev/null
end=$(date +%s)
echo "make setup on a fresh clone: $((mid - start)) s; second run: $((end - mid)) s"
