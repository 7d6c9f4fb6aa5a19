#!/usr/bin/env bash
# Wafer's main job on embedded defaults (no Redis, no Kafka): build the example card-transaction
# transform, start `wafer dev` (embedded store, HTTP push), push events, read streaming features
# (latest values and time-window aggregations), then stop. Also shows `wafer run` over a file.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-guests.sh
cargo build -q --release -p wafer-runtime --bin wafer
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
WAFER_LOG=warn ./target/release/wafer dev --listen "127.0.0.1:$PORT" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
NOW=$(($(date +%s) * 1000))
echo "== push 4 card transactions (one is bad input) to view txn"
curl -s -X POST -H "content-type: application/json" "http://127.0.0.1:$PORT/v1/views/txn/events" -d '{"events": [
  {"timestamp_ms": '$NOW', "value": {"user_id": "u1", "amount": 12.5, "country": "DE", "merchant": "m9"}, "headers": {"channel": "web"}},
  {"timestamp_ms": '$NOW', "value": {"user_id": "u1", "amount": 80, "country": "US", "merchant": "m3"}},
  {"timestamp_ms": '$NOW', "value": {"user_id": "u2", "amount": 920, "country": "FR", "merchant": "m1"}},
  {"timestamp_ms": '$NOW', "value": {"user_id": "u3", "amount": -5, "country": "DE", "merchant": "m2"}}]}'
echo; echo "== read features (readable as soon as the push returned)"
curl -s -X POST -H "content-type: application/json" "http://127.0.0.1:$PORT/v1/features" -d '{"view": "txn", "entities": ["u1", "u2", "nobody"],
  "features": ["country", "amount_count_1h", "amount_sum_24h", "amount_mean_7d", "amount_max_lifetime", "merchant_last_3_24h"]}'
echo; echo "== stored (batch view), streaming and request-time features in one call"
curl -s -X POST -H "content-type: application/json" "http://127.0.0.1:$PORT/v1/features" -d '{"entities": ["u1", "u2"],
  "features": ["txn:amount_sum_24h", "user_stats:txn_count_7d", "user_stats:last_country", "risk:risk_score", "risk:is_new_country"],
  "request_data": {"amount": [90, 10], "country": ["US", "FR"]}}'
echo; echo "== the same through the Feast-compatible endpoint (feature service fraud_v1)"
curl -s -X POST -H "content-type: application/json" "http://127.0.0.1:$PORT/get-online-features" -d '{"feature_service": "fraud_v1",
  "entities": {"user": ["u1", "u2"], "amount": [90, 10], "country": ["US", "FR"]}}'
echo; echo "== wafer run over a JSONL file"
./target/release/wafer run --transform target/wasm-guests/wasm32-wasip2/release/card_txn.wasm \
  --events guest-examples/events/card_txns.jsonl || true   # the sample has one bad event on purpose
