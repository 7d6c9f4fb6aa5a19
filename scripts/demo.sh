#!/usr/bin/env bash
# Wafer's main job on embedded defaults (no Redis, no Kafka): build the example card-transaction
# transform and run it over sample events, printing feature rows as JSONL.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-guests.sh
cargo build -q --release -p wafer-runtime --bin wafer
set -x
./target/release/wafer inspect target/wasm-guests/wasm32-wasip2/release/card_txn.wasm
./target/release/wafer run --transform target/wasm-guests/wasm32-wasip2/release/card_txn.wasm \
  --events guest-examples/events/card_txns.jsonl || true   # the sample has one bad event on purpose
