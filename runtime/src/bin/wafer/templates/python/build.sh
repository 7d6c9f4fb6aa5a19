#!/usr/bin/env bash
# Build {{name}}.wasm from app.py with wafer.build (needs: pip install componentize-py==0.25.1;
# set COMPONENTIZE_PY to use another copy). {{kind}} transforms as decorated functions: see wafer.py.
set -euo pipefail
cd "$(dirname "$0")"
"${PYTHON:-python3}" -c 'import wafer; wafer.build("app.py", "{{name}}.wasm")'
echo "built {{name}}.wasm"
