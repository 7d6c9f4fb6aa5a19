"""`@wafer.stream_transform` + `wafer.build` (componentize-py), run by Wafer's host."""

from __future__ import annotations

import filecmp
import textwrap

import pyarrow as pa
import pytest

import wafer
from wafer import errors

from conftest import ROOT

APP = '''\
import json
import wafer


@wafer.stream_transform(entity="user_id", outputs={"amount": "float64", "country": "text", "big": "boolean",
                                                   "channel": "text?", "tags": "texts"})
def card_txn(event):
    v = json.loads(event.value)
    if v.get("skip"):
        return None
    amount = float(v["amount"])
    if amount < 0:
        raise wafer.BadInput(f"negative amount {amount}")
    return {"user_id": v["user_id"], "amount": amount, "country": v["country"], "big": amount >= 500,
            "channel": event.headers.get("channel"), "tags": [event.topic, str(event.offset)]}
'''


def test_the_wheel_ships_the_repository_wit():
    assert filecmp.cmp(ROOT / "wit" / "transform.wit", ROOT / "python" / "wafer" / "wit" / "transform.wit",
                       shallow=False), "python/wafer/wit/transform.wit is stale: copy wit/transform.wit"


def test_build_and_run_a_decorated_function(tmp_path):
    src = tmp_path / "app.py"
    src.write_text(APP)
    wasm = wafer.build(src)
    assert wasm == tmp_path / "app.wasm" and wasm.stat().st_size > 1_000_000
    events = pa.table({
        "timestamp_ms": pa.array([1000, 2000, 3000, 4000, 5000], pa.int64()),
        "value": [
            '{"user_id":"u1","amount":12.5,"country":"DE"}',
            '{"user_id":"u2","amount":-1,"country":"FR"}',
            '{"user_id":"u3","amount":700,"country":"US"}',
            '{"skip":true}',
            '{"user_id":"u4","country":"JP"}',
        ],
        "topic": ["txns"] * 5,
    })
    with pytest.raises(wafer.TransformEventError) as ei:
        wafer.run(wasm, events)
    f = {i: (code, msg) for i, code, msg in ei.value.failures}
    assert sorted(f) == [1, 4]
    assert f[1] == ("bad_input", "bad input: app.py, line 13, in card_txn: negative amount -1.0")
    assert f[4][0] == "bad_input" and f[4][1] == "bad input: app.py, line 11, in card_txn: KeyError: 'amount'"
    t = ei.value.table
    assert t.to_pylist() == [
        {"event": 0, "entity_key": "u1", "event_time_ms": 1000, "amount": 12.5, "country": "DE", "big": False,
         "channel": None, "tags": ["txns", "0"]},
        {"event": 2, "entity_key": "u3", "event_time_ms": 3000, "amount": 700.0, "country": "US", "big": True,
         "channel": None, "tags": ["txns", "2"]},
    ]


def test_build_errors_point_at_the_users_line(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import wafer\n\ndef f(:\n    pass\n")
    with pytest.raises(errors.BuildError, match=r"^broken\.py:3: "):
        wafer.build(bad)
    decl = tmp_path / "decl.py"
    decl.write_text(textwrap.dedent('''\
        import wafer


        @wafer.stream_transform(entity="user_id", outputs={"amount": "float"})
        def f(event):
            return None
    '''))
    with pytest.raises(errors.BuildError) as ei:
        wafer.build(decl)
    assert str(ei.value).startswith("decl.py:4: ") and "output `amount` has type 'float'" in str(ei.value)
