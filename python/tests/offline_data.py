"""A deterministic event history and spine for the offline tests (and the Spark tests)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import guest

T0 = 1_700_000_000_000
DAY = 86_400_000
FEATURES = [
    "txn:country",
    "txn:merchant",
    "txn:channel",
    "txn:amount_count_1m",
    "txn:amount_count_1h",
    "txn:amount_count_24h",
    "txn:amount_count_lifetime",
    "txn:amount_sum_1h",
    "txn:amount_sum_lifetime",
    "txn:amount_mean_1h",
    "txn:amount_min_1h",
    "txn:amount_max_24h",
    "txn:merchant_last_3_1h",
    "txn:merchant_approx_count_distinct_lifetime",
    "score:amount_vs_mean",
    "score:count_24h",
    "score:new_country",
]


def write_manifest(d: Path) -> Path:
    p = d / "wafer.toml"
    p.write_text(
        f"""[server]
tenant = "t1"

[[stream_view]]
name = "txn"
entity = "user"
transform = "{guest('card_txn.wasm')}"
features = ["country", "merchant", "channel"]
ttl = "7d"
batch_size = 64

[[stream_view.aggregations]]
column = "amount"
functions = ["count", "sum", "mean", "min", "max"]
windows = ["1m", "1h", "24h", "lifetime"]

[[stream_view.aggregations]]
column = "merchant"
functions = ["last_n(3)", "approx_count_distinct"]
windows = ["1h", "lifetime"]

[[request_view]]
name = "score"
transform = "{guest('txn_score.wasm')}"
"""
    )
    return p


def events(n: int = 3000, users: int = 40, seed: int = 7):
    """(timestamp_ms, key, payload JSON text, channel or None), in a shuffled (not time) order."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        u = f"u{rng.randrange(users)}"
        ts = T0 + rng.randrange(3 * DAY)
        payload = json.dumps(
            {"user_id": u, "amount": rng.randrange(100_000) / 100, "country": rng.choice(["DE", "FR", "US", "JP"]),
             "merchant": f"m{rng.randrange(9)}"},
            separators=(",", ":"),
        )
        out.append((ts, u, payload))
    # A few bad events: the transform rejects them, as the CLI does.
    out.insert(17, (T0 + 5, "u1", "not json"))
    return out


def write_events(d: Path, evs) -> tuple[Path, Path]:
    """The same events as JSONL (value_text) and as a Parquet event file."""
    jsonl = d / "events.jsonl"
    jsonl.write_text("".join(json.dumps({"timestamp_ms": t, "key": k, "value_text": v}) + "\n" for t, k, v in evs))
    pqf = d / "events.parquet"
    pq.write_table(events_table(evs), pqf)
    return jsonl, pqf


def events_table(evs) -> pa.Table:
    return pa.table(
        {
            "timestamp_ms": pa.array([e[0] for e in evs], pa.int64()),
            "key": pa.array([e[1] for e in evs], pa.string()),
            "value": pa.array([e[2] for e in evs], pa.string()),
        }
    )


def spine_rows(n: int = 600, users: int = 45, seed: int = 11):
    """(user or None, t, amount, country): some users without events, a null entity, edge times."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        u = None if i == 5 else f"u{rng.randrange(users)}"
        t = T0 + rng.randrange(-DAY // 2, 4 * DAY)
        rows.append((u, t, (t % 100_000) / 100 + 1, ["DE", "FR", "US", "JP"][t % 4]))
    rows.append(rows[3])  # a duplicate row gets identical values
    return rows


def spine_table(rows) -> pa.Table:
    return pa.table(
        {
            "user": pa.array([r[0] for r in rows], pa.string()),
            "timestamp_ms": pa.array([r[1] for r in rows], pa.int64()),
            "label": pa.array(list(range(len(rows))), pa.int64()),
            "amount": pa.array([r[2] for r in rows], pa.float64()),
            "country": pa.array([r[3] for r in rows], pa.string()),
        }
    )


def assert_bit_equal(a: pa.Table, b: pa.Table, columns=None) -> None:
    """Same columns, types, nulls and values; floats compared by their bits."""
    import numpy as np

    cols = columns or a.column_names
    for name in cols:
        x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
        assert x.type == y.type, f"{name}: {x.type} != {y.type}"
        assert x.null_count == y.null_count and x.equals(y), f"column {name} differs"
        if pa.types.is_floating(x.type):
            fx = np.asarray(x.fill_null(0.0)).view(np.uint64)
            fy = np.asarray(y.fill_null(0.0)).view(np.uint64)
            assert (fx == fy).all(), f"column {name}: float bits differ"
