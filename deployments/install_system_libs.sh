#!/usr/bin/env bash
# Installs the Debian packages mnist-etc needs outside Python: libb64-0d (perf_analyzer links libb64.so.0d) and
# chromium (the browser tests drive it headless with Playwright; Playwright's own browser download is never used).
set -euo pipefail
packages=(libb64-0d chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "mnist-etc needs the Debian package(s) ${missing[*]} for perf_analyzer and the browser tests; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
