#!/usr/bin/env bash
# Run the transform over the sample input with `wafer run` (exit 1: some inputs failed, as the
# last sample line is meant to).
set -euo pipefail
cd "$(dirname "$0")"
exec "${WAFER:-wafer}" run --transform {{name}}.wasm --events {{sample}} "$@"
