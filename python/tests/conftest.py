"""Fixtures: real `wafer serve` (Redis from $WAFER_TEST_REDIS_URL) and `wafer dev` processes on
free loopback ports, and the Wasm guests the Rust test build made (target/wasm-guests)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "target"
GUESTS = TARGET / "wasm-guests" / "wasm32-wasip2" / "release"
EXAMPLES = ROOT / "guest-examples"
ADMIN_TOKEN = "pytest-admin-token-0123456789"


def wafer_bin() -> Path:
    p = Path(os.environ.get("WAFER_BIN", TARGET / "release" / "wafer"))
    if not p.exists():
        pytest.fail(f"{p} not found: build it with `cargo build --release -p wafer-runtime` (scripts/test.sh does)")
    return p


def guest(name: str) -> Path:
    p = GUESTS / name
    if not p.exists():
        pytest.fail(f"{p} not found: the Rust test build makes it (`cargo test --release --workspace --no-run`)")
    return p


def redis_url(db: int = 0) -> str:
    url = os.environ.get("WAFER_TEST_REDIS_URL")
    if not url:
        pytest.fail("WAFER_TEST_REDIS_URL is not set: run the tests with scripts/test.sh (it starts Redis)")
    return url.rstrip("/") + f"/{db}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ)
    e["WAFER_CACHE_DIR"] = str(TARGET / "test-artifact-cache")
    e["WAFER_LOG"] = "warn"
    return e


class Server:
    """A `wafer` process serving HTTP on `port`; stopped (SIGTERM, then SIGKILL) on close."""

    def __init__(self, args: list, extra_env: dict | None = None) -> None:
        self.port = free_port()
        e = env()
        e.update(extra_env or {})
        self.proc = subprocess.Popen(
            [str(wafer_bin()), *args, "--listen", f"127.0.0.1:{self.port}"],
            env=e,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"wafer {args[0]} exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"wafer {args[0]} did not start")
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def manifest(dir: Path, redis: str | None, tenant: str) -> Path:
    """The dev.toml views (txn, user_stats, risk, fraud_v1) with absolute paths, optionally on Redis."""
    data = dir / "user_stats.csv"
    shutil.copy(EXAMPLES / "data" / "user_stats.csv", data)
    text = (EXAMPLES / "dev.toml").read_text()
    text = text.replace("../target/wasm-guests/wasm32-wasip2/release/card_txn.wasm", str(guest("card_txn.wasm")))
    text = text.replace("../target/wasm-guests/wasm32-wasip2/release/txn_risk.wasm", str(guest("txn_risk.wasm")))
    text = text.replace("data/user_stats.csv", str(data))
    text = text.replace('tenant = "dev"', f'tenant = "{tenant}"')
    text += (
        '\n[[request_view]]\nname = "misbehave"\ntransform = "%s"\ndeadline_ms = 20\n' % guest("request_misbehave.wasm")
    )
    if redis:
        text = f'[redis]\nurl = "{redis}"\n' + text
    p = dir / "wafer.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="session")
def serve(tmp_path_factory):
    """`wafer serve` on Redis with the example views; user_stats materialized first."""
    d = tmp_path_factory.mktemp("serve")
    m = manifest(d, redis_url(), f"py{uuid.uuid4().hex[:8]}")
    subprocess.run(
        [str(wafer_bin()), "materialize", "--config", str(m), "--view", "user_stats"],
        env=env(),
        check=True,
        capture_output=True,
    )
    s = Server(["serve", "--config", str(m)])
    yield s
    s.close()


@pytest.fixture(scope="session")
def dev(tmp_path_factory):
    """`wafer dev`: the same views on the embedded store."""
    s = dev_server(tmp_path_factory.mktemp("dev"))
    yield s
    s.close()


def dev_server(dir: Path) -> Server:
    """`wafer dev` with the example views (see `manifest`), its files in `dir`."""
    return Server(["dev", "--config", str(manifest(dir, None, "dev"))])


def registry_server(dir: Path, db: int) -> Server:
    """`wafer serve` in registry mode on Redis database `db`, with ADMIN_TOKEN; its manifest in `dir`."""
    m = dir / "platform.toml"
    m.write_text(f'[redis]\nurl = "{redis_url(db)}"\n[control]\n')
    return Server(["serve", "--config", str(m)], {"WAFER_ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """`wafer serve` in registry mode (tenants, keys, uploads), on its own Redis database."""
    s = registry_server(tmp_path_factory.mktemp("registry"), 9)
    yield s
    s.close()
