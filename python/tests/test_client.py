"""The online client against real servers: `wafer serve` on Redis and `wafer dev` (embedded)."""

from __future__ import annotations

import os
import time

import pytest

import wafer
from wafer import errors

from conftest import ADMIN_TOKEN, guest

NOW = int(time.time() * 1000)
T0 = NOW - 10 * 60_000


def txn(i: int, user: str, amount, country: str, merchant: str, channel: str | None = None) -> dict:
    e = {
        "timestamp_ms": T0 + i * 1000,
        "key": user,
        "value": {"user_id": user, "amount": amount, "country": country, "merchant": merchant},
    }
    if channel:
        e["headers"] = {"channel": channel}
    return e


EVENTS = [
    txn(0, "u1", 12.5, "DE", "m9", "web"),
    txn(1, "u2", 920.0, "FR", "m1"),
    txn(2, "u1", 80, "US", "m3", "pos"),
    txn(3, "u3", 5, "DE", "m2"),
    txn(4, "u2", 15.0, "FR", "m1"),
]


def risk(amount: float, country: str, mean: float, count: float, last_country: str | None):
    """txn_risk (guest-examples/rust-txn-risk), the same float operations in the same order."""
    avm = amount / (mean if mean != 0.0 else 1.0)
    new = last_country != country
    r = 0.1 * min(avm, 5.0) + (0.4 if new else 0.0) + (0.1 if count < 3.0 else 0.0)
    return avm, new, min(r, 1.0)


@pytest.fixture(scope="module", params=["serve", "dev"])
def client(request):
    server = request.getfixturevalue(request.param)
    c = wafer.Client(server.url)
    r = c.push("txn", EVENTS)
    assert r == {"accepted": 5, "rows": 5, "failed": []}
    yield c
    c.close()


def test_online_features_exact_values_and_feast_shape(client):
    resp = client.get_online_features(
        features=["txn:amount_sum_24h", "txn:amount_count_lifetime", "txn:country", "txn:merchant_last_3_24h",
                  "user_stats:txn_count_7d", "user_stats:last_country"],
        entity_rows=[{"user": "u1"}, {"user": "u2"}, {"user": "u3"}, {"user": "nobody"}],
    )
    assert resp.to_dict() == {
        "user": ["u1", "u2", "u3", "nobody"],
        "amount_sum_24h": [92.5, 935.0, 5.0, 0.0],
        "amount_count_lifetime": [2, 2, 1, 0],
        "country": ["US", "FR", "DE", None],
        "merchant_last_3_24h": [["m3", "m9"], ["m1"], ["m2"], []],
        "txn_count_7d": [12, 2, 5, None],
        "last_country": ["DE", "FR", "US", None],
    }
    st = resp.statuses
    assert st["country"] == ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND"]
    assert st["txn_count_7d"] == ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND"]
    ts = resp.to_dict(include_event_timestamps=True)["country__ts"]
    assert ts == [(T0 + 2000) // 1000, (T0 + 4000) // 1000, (T0 + 3000) // 1000, 0]


def test_full_feature_names_and_entities_form(client):
    resp = client.get_online_features(
        features=["txn:amount_max_24h", "user_stats:amount_mean_7d"],
        entities={"user": ["u2", "u1"]},
        full_feature_names=True,
    )
    assert resp.to_dict() == {
        "user": ["u2", "u1"],
        "txn__amount_max_24h": [920.0, 80.0],
        "user_stats__amount_mean_7d": [900.0, 45.0],
    }


def test_request_view_and_feature_service(client):
    rows = [{"user": "u1", "amount": 90.0, "country": "FR"}, {"user": "u3", "amount": 10.0, "country": "US"}]
    resp = client.get_online_features(features=["risk:amount_vs_mean", "risk:is_new_country", "risk:risk_score"],
                                      entity_rows=rows)
    e1, e3 = risk(90.0, "FR", 45.0, 12, "DE"), risk(10.0, "US", 20.0, 5, "US")
    assert resp.to_dict() == {
        "user": ["u1", "u3"],
        "amount_vs_mean": [e1[0], e3[0]],
        "is_new_country": [e1[1], e3[1]],
        "risk_score": [e1[2], e3[2]],
    }
    svc = client.get_online_features(feature_service="fraud_v1", entity_rows=rows).to_dict()
    assert svc == {
        "user": ["u1", "u3"],
        "amount_sum_24h": [92.5, 5.0],
        "txn_count_7d": [12, 5],
        "risk_score": [e1[2], e3[2]],
        "is_new_country": [e1[1], e3[1]],
    }


def test_to_pandas_has_natural_dtypes(client):
    df = client.get_online_features(
        features=["txn:amount_count_lifetime", "txn:amount_sum_24h", "txn:country", "user_stats:txn_count_7d"],
        entity_rows=[{"user": "u1"}, {"user": "nobody"}],
    ).to_pandas()
    assert str(df["amount_count_lifetime"].dtype) == "Int64"
    assert str(df["txn_count_7d"].dtype) == "Int64"
    assert df["txn_count_7d"].isna().tolist() == [False, True]
    assert str(df["amount_sum_24h"].dtype) == "float64"
    assert df["country"].tolist() == ["US", None]


def test_push_read_after_write_and_failures(client):
    r = client.push("txn", [txn(5, "u4", 1.25, "JP", "m5"), {"timestamp_ms": T0, "value": "not json at all"}])
    assert r["rows"] == 1
    assert [(f["index"], f["code"]) for f in r["failed"]] == [(1, "bad_input")]
    d = client.get_online_features(features=["txn:amount_sum_lifetime"], entities={"user": ["u4"]}).to_dict()
    assert d["amount_sum_lifetime"] == [1.25]


def raises(cls, code, fn, *args, **kw):
    with pytest.raises(cls) as ei:
        fn(*args, **kw)
    assert type(ei.value) is cls, f"{type(ei.value).__name__} is not {cls.__name__}: {ei.value}"
    assert ei.value.code == code, str(ei.value)
    return ei.value


def test_every_serving_error_code_is_its_exception(client):
    g = client.get_online_features
    e = raises(errors.UnknownFeatures, "unknown_features", g, features=["txn:nope", "txn:also_no"],
               entities={"user": ["u1"]})
    assert e.status == 400 and sorted(e.details["unknown"]) == ["txn:also_no", "txn:nope"]
    e = raises(errors.UnknownFeatures, "unknown_views", g, features=["nope:x"], entities={"user": ["u1"]})
    assert e.details["unknown"] == ["nope"]
    raises(errors.UnknownFeatures, "unknown_feature_service", g, feature_service="nope", entities={"user": ["u1"]})
    raises(errors.MissingEntity, "missing_entity", g, features=["txn:country"], entities={"merchant": ["m1"]})
    e = raises(errors.RequestDataError, "missing_request_data", g, features=["risk:risk_score"],
               entities={"user": ["u1"]}, request_data={"amount": [1.0]})
    assert e.details["missing"] == ["country"]
    e = raises(errors.RequestDataError, "invalid_request_data", g, features=["risk:risk_score"],
               entities={"user": ["u1"]}, request_data={"amount": ["abc"], "country": ["DE"]})
    assert e.details["param"] == "amount"
    raises(errors.RequestRejected, "request_rejected", g, features=["misbehave:y"], entities={"user": ["u1"]},
           request_data={"mode": ["unknown"]})
    e = raises(errors.TransformFailed, "transform_failed", g, features=["misbehave:y"], entities={"user": ["u1"]},
               request_data={"mode": ["trap"]})
    assert e.status == 500
    e = raises(errors.TransformDeadline, "transform_deadline", g, features=["misbehave:y"],
               entities={"user": ["u1"]}, request_data={"mode": ["loop"]})
    assert e.status == 504
    raises(errors.InvalidRequest, "invalid_json", client.request, "POST", "/v1/features", b"{not json")
    raises(errors.InvalidRequest, "invalid_request", client.request, "POST", "/v1/features",
           {"entities": ["u1"], "features": ["txn:country"], "feature_service": "fraud_v1"})
    raises(errors.NotFound, "unknown_view", client.push, "nope", [])
    raises(errors.NotFound, "not_found", client.request, "GET", "/v1/nope")
    # The server still serves after every error.
    assert client.get_online_features(features=["misbehave:y"], entities={"user": ["u1"]},
                                      request_data={"mode": ["ok"]}, as_of=NOW).to_dict()["y"] == [float(NOW)]


def test_store_unavailable(tmp_path):
    import shutil
    import subprocess

    from conftest import Server, free_port, manifest

    port = free_port()
    redis = subprocess.Popen([os.environ.get("WAFER_TEST_REDIS_SERVER") or shutil.which("redis-server"), "--port",
                              str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: _connects(port))
        s = Server(["serve", "--config", str(manifest(tmp_path, f"redis://127.0.0.1:{port}/", "down"))])
    finally:
        redis.kill()
        redis.wait()
    try:
        c = wafer.Client(s.url)
        e = raises(errors.Unavailable, "store_unavailable", c.get_online_features, features=["txn:country"],
                   entities={"user": ["u1"]})
        assert e.status == 503
    finally:
        s.close()


def _connects(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_view_paused_after_failing_batches(tmp_path):
    from conftest import Server, manifest

    s = Server(["dev", "--config", str(manifest(tmp_path, None, "paused"))])
    try:
        c = wafer.Client(s.url)
        bad = [{"timestamp_ms": T0, "value_text": "{"}] * 10
        for _ in range(2):  # the third failing batch in a row trips the breaker
            assert c.push("txn", bad)["rows"] == 0
        e = raises(errors.ViewPaused, "view_paused", c.push, "txn", bad)
        assert e.status == 503 and e.retry_after is not None and e.retry_after > 0
    finally:
        s.close()


def test_control_plane_and_auth_errors(registry):
    admin = wafer.Client(registry.url, admin_token=ADMIN_TOKEN)
    raises(errors.AuthenticationError, "missing_credentials", wafer.Client(registry.url).views)
    raises(errors.AuthenticationError, "invalid_api_key", wafer.Client(registry.url, "wfr_nope").views)
    name = f"acme{int(time.time() * 1000) % 10**9}"
    t = admin.create_tenant(name, {"max_views": 1, "upload_mib": 1})
    assert t["name"] == name
    assert name in [x["name"] for x in admin.tenants()]
    raises(errors.Conflict, "tenant_exists", admin.create_tenant, name)
    key = admin.create_key(name)
    c = wafer.Client(registry.url, key["key"])
    raises(errors.PermissionDenied, "forbidden", c.request, "GET", "/v1/admin/tenants")  # a tenant key
    raises(errors.PermissionDenied, "forbidden", wafer.Client(registry.url, ADMIN_TOKEN).views)

    v1 = c.deploy("card_txn", guest("card_txn.wasm"))
    assert v1["active"] == v1["version"] and len(v1["version"]) == 64
    assert [o["name"] for o in v1["schema"]["outputs"]][:2] == ["amount", "country"]
    raises(errors.TransformRejected, "not_wasm", c.deploy, "bad", b"hello")
    raises(errors.TransformRejected, "wrong_world", c.deploy, "bad", guest("not-a-transform.wasm"))
    raises(errors.TransformRejected, "forbidden_import", c.deploy, "bad", guest("forbidden_import.wasm"))
    raises(errors.UploadTooLarge, "upload_too_large", c.deploy, "big", b"\0asm" + b"\0" * (2 << 20))
    v2 = c.deploy("card_txn", guest("misbehave.wasm"), activate=False)
    assert v2["version"] != v1["version"]
    assert c.activate("card_txn", v1["version"])["active"] == v1["version"]

    c.put_view("txn", {"kind": "stream", "entity": "user", "transform": "card_txn", "features": ["country"]})
    raises(errors.QuotaExceeded, "quota_exceeded", c.put_view, "txn2",
           {"kind": "stream", "entity": "user", "transform": "card_txn", "features": ["country"]})
    deadline = time.monotonic() + 10
    while True:
        try:
            r = c.push("txn", [txn(0, "u1", 5, "DE", "m1")])
            break
        except errors.NotFound:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert r["rows"] == 1
    assert c.get_online_features(features=["txn:country"], entity_rows=[{"user": "u1"}]).to_dict() == {
        "user": ["u1"], "country": ["DE"]}
    assert [v["name"] for v in c.views()] == ["txn"]

    admin.revoke_key(name, key["id"])
    wait_for(lambda: expect(errors.AuthenticationError, "revoked_api_key", c.views))
    key2 = admin.create_key(name)
    admin.set_tenant_disabled(name, True)
    c2 = wafer.Client(registry.url, key2["key"])
    wait_for(lambda: expect(errors.PermissionDenied, "tenant_disabled", c2.views))


def expect(cls, code, fn):
    try:
        fn()
    except cls as e:
        return type(e) is cls and e.code == code
    return False


def wait_for(cond, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_rate_limited(registry):
    admin = wafer.Client(registry.url, admin_token=ADMIN_TOKEN)
    name = f"slow{int(time.time() * 1000) % 10**9}"
    admin.create_tenant(name, {"requests_per_second": 1})
    c = wafer.Client(registry.url, admin.create_key(name)["key"])
    wait_for(lambda: expect_ok(c.views))
    with pytest.raises(errors.RateLimited) as ei:
        for _ in range(50):
            c.views()
    assert ei.value.code == "rate_limited" and ei.value.status == 429 and ei.value.retry_after > 0


def expect_ok(fn):
    try:
        fn()
        return True
    except errors.WaferError:
        return False
