#!/usr/bin/env bash
# Sets up a fresh machine, builds dinomo in release mode and runs `dinomo serve` with its
# embedded defaults (pool in ./dinomo-data, Redis protocol on 127.0.0.1:7379). Extra arguments
# are passed to `dinomo serve` (see `dinomo serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec cargo run --release --locked -p dinomo-tools --bin dinomo -- serve "$@"
