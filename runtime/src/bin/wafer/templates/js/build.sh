#!/usr/bin/env bash
# Build {{name}}.wasm with QuickJS (npm install installs componentize-qjs from package.json).
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${COMPONENTIZE_QJS:-}" ]; then
  [ -x node_modules/.bin/componentize-qjs ] || npm install --no-audit --no-fund
  COMPONENTIZE_QJS=node_modules/.bin/componentize-qjs
fi
"$COMPONENTIZE_QJS" --wit wit --js app.js -n {{world}} --sync -o {{name}}.wasm
echo "built {{name}}.wasm"
