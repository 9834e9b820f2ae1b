#!/usr/bin/env bash
# Installs what building and testing dinomo needs on a fresh Debian machine: C libraries for the
# -sys crates (hwloc, udev, rdma-core headers, cmake and clang for the rdma feature) and Redis's
# tools, which the smoke tests drive against `dinomo serve`. Safe to run again.
set -euo pipefail
packages=(pkg-config cmake clang libhwloc-dev libudev-dev libibverbs-dev librdmacm-dev redis-server redis-tools)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The Debian package starts a Redis on the default port; dinomo's tests start their own.
    if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop redis-server >/dev/null 2>&1 || true; fi
    pkill -x redis-server >/dev/null 2>&1 || true
fi
