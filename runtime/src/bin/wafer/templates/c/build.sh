#!/usr/bin/env bash
# Build {{name}}.wasm with clang + wasi-libc and Wafer's wasm-c tool (bindings + component step).
# Needs: apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32, and wasm-c
# (cargo install --path tools/wasm-c in the Wafer repository), or set WASM_C.
set -euo pipefail
cd "$(dirname "$0")"
"${WASM_C:-wasm-c}" build --wit wit --world {{world}} -I . --work-dir build -o {{name}}.wasm app.c
