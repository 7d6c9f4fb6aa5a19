#!/usr/bin/env bash
# Build the example transforms: Rust (wasm32-wasip2) and, if componentize-py is installed, Python.
# Output: target/wasm-guests/wasm32-wasip2/release/*.wasm and target/wasm-guests/python/*.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
(cd guest-examples && cargo build -q --release --target wasm32-wasip2 --target-dir ../target/wasm-guests)
PY=${COMPONENTIZE_PY:-.venv-tools/bin/componentize-py}
if [ -x "$PY" ]; then
  mkdir -p target/wasm-guests/python
  (cd guest-examples/python-card-txn && "../../$PY" -d ../../wit -w stream-transform componentize app \
      -o ../../target/wasm-guests/python/card_txn_py.wasm >/dev/null)
fi
