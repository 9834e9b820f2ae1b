#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: the workspace's unit, property, crash, stress and
# multi-process tests, the loom models of the index, and a smoke run of the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --workspace --locked
# The loom models build the index with loom's atomics: a separate target directory keeps that
# build from invalidating the normal one.
RUSTFLAGS="--cfg dinomo_loom" CARGO_TARGET_DIR=target/loom \
    cargo test --locked --release -p dinomo-index --test loom
./scripts/smoke.sh
