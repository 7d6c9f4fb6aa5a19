"""Benchmarks of the Python package (numbers in docs/python.md).

    .venv-python/bin/python python/bench/bench.py offline [--events 1000000]   # training_data vs the CLI
    .venv-python/bin/python python/bench/bench.py client  [--n 2000]           # get_online_features latency

`offline`: the same 1M-event history (10,000 users over 30 days) and 100,000-row spine, 11
features of the card_txn view: `wafer training-data` (files) against `wafer.training_data` from
pandas DataFrames, alternating, CPU seconds (user+sys) and wall per run.
`client`: sequential reads against `wafer dev` for 1 and 100 entities: `Client.get_online_features`
(+ `to_dict()`) against the same request sent with bare `http.client` and `json.loads`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import wafer  # noqa: E402
from conftest import Server, env, guest, manifest, wafer_bin  # noqa: E402

FEATURES = ["txn:country", "txn:merchant", "txn:amount_count_1h", "txn:amount_count_24h", "txn:amount_sum_1h",
            "txn:amount_sum_24h", "txn:amount_mean_24h", "txn:amount_max_24h", "txn:amount_count_lifetime",
            "txn:merchant_last_3_24h", "txn:merchant_approx_count_distinct_lifetime"]
T0 = 1_700_000_000_000
DAY = 86_400_000


def offline(args) -> None:
    d = Path(tempfile.mkdtemp(prefix="wafer-bench-"))
    m = d / "wafer.toml"
    m.write_text(f'''[server]
tenant = "b"
[[stream_view]]
name = "txn"
entity = "user"
transform = "{guest('card_txn.wasm')}"
features = ["country", "merchant"]
ttl = "7d"
[[stream_view.aggregations]]
column = "amount"
functions = ["count", "sum", "mean", "max"]
windows = ["1h", "24h", "lifetime"]
[[stream_view.aggregations]]
column = "merchant"
functions = ["last_n(3)", "approx_count_distinct"]
windows = ["24h", "lifetime"]
''')
    rng = random.Random(1)
    n, users = args.events, 10_000
    ts = sorted(T0 + rng.randrange(30 * DAY) for _ in range(n))
    us = [f"u{rng.randrange(users)}" for _ in range(n)]
    vals = [f'{{"user_id":"{u}","amount":{rng.randrange(100000) / 100},"country":"{rng.choice("ABCD")}","merchant":"m{rng.randrange(50)}"}}' for u in us]
    events = pa.table({"timestamp_ms": pa.array(ts, pa.int64()), "key": us, "value": vals})
    pq.write_table(events, d / "events.parquet")
    spine = pa.table({"user": [f"u{rng.randrange(users)}" for _ in range(100_000)],
                      "timestamp_ms": pa.array([T0 + rng.randrange(30 * DAY) for _ in range(100_000)], pa.int64())})
    pq.write_table(spine, d / "spine.parquet")
    ev_df, spine_df = events.to_pandas(), spine.to_pandas()
    print(f"data: {n} events, {spine.num_rows} spine rows, {len(FEATURES)} features, in {d}")
    for run in range(args.runs):
        t = time.perf_counter()
        r = subprocess.run([str(wafer_bin()), "training-data", "--config", str(m), "--events", str(d / "events.parquet"),
                            "--spine", str(d / "spine.parquet"), "--features", ",".join(FEATURES), "--out",
                            str(d / "out.parquet")], env=env(), capture_output=True, text=True)
        wall = time.perf_counter() - t
        assert r.returncode == 0, r.stderr
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu = ru.ru_utime + ru.ru_stime - getattr(offline, "_children", 0.0)
        offline._children = ru.ru_utime + ru.ru_stime
        print(f"run {run}: cli     wall {wall:6.2f} s  cpu {cli_cpu:6.2f} s")
        before = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        out = wafer.training_data(m, ev_df, spine_df, FEATURES)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(f"run {run}: python  wall {wall:6.2f} s  cpu {cpu:6.2f} s  (pandas in, {out.num_rows} rows out)")
        ref = pq.read_table(d / "out.parquet")
        assert all(out.column(c).equals(ref.column(c)) for c in ref.column_names), "python != cli"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def client(args) -> None:
    d = Path(tempfile.mkdtemp(prefix="wafer-bench-"))
    s = Server(["dev", "--config", str(manifest(d, None, "bench"))])
    try:
        c = wafer.Client(s.url)
        now = int(time.time() * 1000)
        users = [f"u{i}" for i in range(100)]
        c.push("txn", [{"timestamp_ms": now - 1000 * i, "key": u,
                        "value": {"user_id": u, "amount": i, "country": "DE", "merchant": f"m{i % 7}"}}
                       for i, u in enumerate(users)])
        feats = ["txn:amount_sum_24h", "txn:amount_count_lifetime", "txn:country", "user_stats:txn_count_7d"]
        for k in (1, 100):
            ents = users[:k]
            body = json.dumps({"entities": {"user": ents}, "features": feats}).encode()
            raw = http.client.HTTPConnection("127.0.0.1", s.port)

            def bare():
                raw.request("POST", "/v1/features", body, {"Content-Type": "application/json"})
                return json.loads(raw.getresponse().read())

            def sdk():
                return c.get_online_features(features=feats, entities={"user": ents}).to_dict()

            for fn in (bare, sdk):
                for _ in range(200):
                    fn()
            res = {"bare": [], "sdk": []}
            for _ in range(args.n):  # interleaved, so both see the same machine load
                for name, fn in (("bare", bare), ("sdk", sdk)):
                    t = time.perf_counter_ns()
                    fn()
                    res[name].append((time.perf_counter_ns() - t) / 1e6)
            for name, xs in res.items():
                print(f"{k:3d} entities  {name:4s}  p50 {pct(xs, .5):.3f} ms  p99 {pct(xs, .99):.3f} ms  (n={len(xs)})")
    finally:
        s.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("offline")
    o.add_argument("--events", type=int, default=1_000_000)
    o.add_argument("--runs", type=int, default=2)
    cl = sub.add_parser("client")
    cl.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    {"offline": offline, "client": client}[a.cmd](a)
