#!/usr/bin/env bash
# Build {{name}}.wasm (needs: pip install componentize-py==0.25.1).
set -euo pipefail
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -d wit -w {{world}} componentize app -o {{name}}.wasm
echo "built {{name}}.wasm"
