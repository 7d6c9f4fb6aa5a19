"""`wafer.training_data` equals `wafer training-data` bit for bit (files, pandas, Arrow)."""

from __future__ import annotations

import subprocess

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import wafer
from wafer import errors

from conftest import env, guest, wafer_bin
from offline_data import (FEATURES, assert_bit_equal, events, events_table, spine_rows, spine_table,
                          write_events, write_manifest)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("offline")
    m = write_manifest(d)
    evs = events()
    jsonl, pqf = write_events(d, evs)
    rows = spine_rows()
    spine = d / "spine.parquet"
    pq.write_table(spine_table(rows), spine)
    out = d / "cli.parquet"
    r = subprocess.run(
        [str(wafer_bin()), "training-data", "--config", str(m), "--events", str(jsonl), "--spine", str(spine),
         "--features", ",".join(FEATURES), "--full-names", "--out", str(out)],
        env=env(), capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    return {"dir": d, "manifest": m, "events": evs, "jsonl": jsonl, "parquet": pqf, "rows": rows, "spine": spine,
            "cli": pq.read_table(out)}


FEATURE_COLS = [f.replace(":", "__") for f in FEATURES]
FULL = {"full_feature_names": True}  # the spine has a `country` column (a request param)


def test_from_files_equals_cli_bit_for_bit(data):
    for ev in (data["jsonl"], data["parquet"], [str(data["parquet"])], {"txn": data["jsonl"]}):
        t = wafer.training_data(data["manifest"], ev, data["spine"], FEATURES, **FULL)
        assert t.column_names == data["cli"].column_names
        assert_bit_equal(t, data["cli"])


def test_from_pandas_and_arrow_equals_cli_bit_for_bit(data):
    cli = data["cli"]
    ev_df = events_table(data["events"]).to_pandas()
    spine_df = spine_table(data["rows"]).to_pandas()
    t = wafer.training_data(data["manifest"], ev_df, spine_df, FEATURES, **FULL)
    assert_bit_equal(t, cli)
    t = wafer.training_data(data["manifest"], events_table(data["events"]), spine_table(data["rows"]), FEATURES,
                            **FULL)
    assert_bit_equal(t, cli)
    # The features are not all the same value (the comparison is not vacuous).
    assert len(set(cli.column("txn__amount_count_24h").to_pylist())) > 5
    assert cli.column("txn__country").null_count > 0


def test_timezone_aware_spine(data):
    df = spine_table(data["rows"]).to_pandas()
    df["ts"] = pd.to_datetime(df["timestamp_ms"], unit="ms", utc=True).dt.tz_convert("America/New_York")
    df = df.drop(columns=["timestamp_ms"])
    t = wafer.training_data(data["manifest"], data["parquet"], df, FEATURES, time_column="ts", **FULL)
    assert_bit_equal(t, data["cli"], FEATURE_COLS)
    out = wafer.to_pandas(t)
    assert str(out["ts"].dtype) == "datetime64[ns, America/New_York]"
    assert out["ts"].tolist() == df["ts"].tolist()


def test_natural_pandas_dtypes(data):
    df = wafer.to_pandas(wafer.training_data(data["manifest"], data["parquet"], data["spine"], FEATURES, **FULL))
    assert str(df["txn__amount_count_24h"].dtype) == "Int64"
    assert str(df["score__count_24h"].dtype) == "Int64"
    assert str(df["txn__amount_sum_1h"].dtype) == "float64"
    assert str(df["score__new_country"].dtype) == "boolean"
    assert df["txn__country"].dtype == object
    assert str(df["label"].dtype) == "Int64"
    # The row with a null entity has null features (pd.NA for ints, not 0 or NaN floats).
    assert df["user"].isna().tolist().index(True) == 5
    assert df["txn__amount_count_24h"][5] is pd.NA
    assert isinstance(df["txn__merchant_last_3_1h"][0], (list, type(df["txn__merchant_last_3_1h"][0])))


def test_full_feature_names_and_entity_column(data):
    spine = spine_table(data["rows"]).rename_columns(["customer", "timestamp_ms", "label", "amount", "country"])
    t = wafer.training_data(data["manifest"], data["parquet"], spine, ["txn:country", "txn:amount_sum_1h"],
                            entity_column="customer", full_feature_names=True)
    assert t.column_names[-2:] == ["txn__country", "txn__amount_sum_1h"]
    assert t.column("txn__amount_sum_1h").equals(data["cli"].column("txn__amount_sum_1h"))


def test_shards_together_equal_one_call(data):
    """`shard=(i, n)`: n workers' results hold every spine row once, with the CLI's exact values
    (the stream and the request view's features, the null-entity row in shard 1)."""
    n = 3
    parts = [wafer.training_data(data["manifest"], data["parquet"], data["spine"], FEATURES, shard=(i, n), **FULL)
             for i in range(1, n + 1)]
    owner = {}
    for i, p in enumerate(parts, start=1):
        for u in p.column("user").to_pylist():
            assert owner.setdefault(u, i) == i, f"{u} in shards {owner[u]} and {i}"
    assert owner[None] == 1
    assert len(set(owner.values())) == n
    both = pa.concat_tables(parts).sort_by("label")
    assert both.num_rows == data["cli"].num_rows
    assert_bit_equal(both, data["cli"])
    with pytest.raises(errors.OfflineError, match=r"shard `4/3`.*expected I/N"):
        wafer.training_data(data["manifest"], data["parquet"], data["spine"], FEATURES, shard=(4, 3), **FULL)


def test_row_cache_reuses_transformed_rows(data, tmp_path):
    cache = tmp_path / "rows"
    first = wafer.training_data(data["manifest"], data["parquet"], data["spine"], FEATURES, row_cache=cache, **FULL)
    (entry,) = cache.glob("*.parquet")
    written = entry.stat().st_mtime_ns
    again = wafer.training_data(data["manifest"], data["parquet"], data["spine"], FEATURES, row_cache=cache, **FULL)
    assert list(cache.glob("*.parquet")) == [entry]
    assert entry.stat().st_mtime_ns == written, "the second call read the entry and did not rewrite it"
    assert_bit_equal(first, data["cli"])
    assert_bit_equal(again, data["cli"])


def test_errors_are_offline_errors(data):
    m, ev, sp = data["manifest"], data["parquet"], data["spine"]
    with pytest.raises(errors.OfflineError, match="unknown features.*txn:nope|txn:nope"):
        wafer.training_data(m, ev, sp, ["txn:nope"])
    with pytest.raises(errors.OfflineError, match="expected `view:feature`"):
        wafer.training_data(m, ev, sp, ["country"])
    with pytest.raises(errors.OfflineError, match="no column `when`"):
        wafer.training_data(m, ev, sp, ["txn:country"], time_column="when")
    with pytest.raises(errors.OfflineError, match="does-not-exist"):
        wafer.training_data(m, data["dir"] / "does-not-exist.jsonl", sp, ["txn:country"])
    bad = pa.table({"timestamp_ms": pa.array([1], pa.int64())})
    with pytest.raises(errors.OfflineError, match="`value` is missing"):
        wafer.training_data(m, bad, sp, ["txn:country"])


def test_run_stream_transform_over_a_table():
    evs = [(1_700_000_000_000, "u1", '{"user_id":"u1","amount":12.5,"country":"DE","merchant":"m9"}'),
           (1_700_000_060_000, "u2", "nope"),
           (1_700_000_120_000, "u2", '{"user_id":"u2","amount":3,"country":"FR","merchant":"m1"}')]
    with pytest.raises(wafer.TransformEventError) as ei:
        wafer.run(guest("card_txn.wasm"), events_table(evs))
    assert [(f[0], f[1]) for f in ei.value.failures] == [(1, "bad_input")]
    t = wafer.run(guest("card_txn.wasm"), events_table(evs), on_error="skip")
    assert t.column("event").to_pylist() == [0, 2]
    assert t.column("entity_key").to_pylist() == ["u1", "u2"]
    assert t.column("event_time_ms").to_pylist() == [1_700_000_000_000, 1_700_000_120_000]
    assert t.column("amount").to_pylist() == [12.5, 3.0]
    assert t.column("country").to_pylist() == ["DE", "FR"]
    assert t.schema.field("amount").type == pa.float64()
