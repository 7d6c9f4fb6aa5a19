"""Feast's own SDK as a client of a Wafer server (run by tests/tests/all/feast_sdk.rs).

Builds a Feast repo whose online store is `type: remote` pointed at Wafer, applies the Feast
objects that name Wafer's views (entities, feature views, a push source, a feature service), then
writes and reads through the SDK exactly as a Feast user would. Prints one JSON report on stdout;
the Rust test checks every value against Wafer's native API.

Usage: sdk_client.py URL REPO_DIR NOW_MS [--token KEY] [--no-service]
"""

import argparse
import json
import os
import sys
from datetime import datetime, timedelta, timezone

import pandas as pd
import requests

from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, String

p = argparse.ArgumentParser()
p.add_argument("url")
p.add_argument("repo")
p.add_argument("now_ms", type=int)
p.add_argument("--token")
p.add_argument("--no-service", action="store_true")
a = p.parse_args()

os.makedirs(os.path.join(a.repo, "data"), exist_ok=True)
auth = f"auth:\n  type: kubernetes\n  user_token: {a.token}\n" if a.token else ""
with open(os.path.join(a.repo, "feature_store.yaml"), "w") as f:
    f.write(
        "project: wafer_sdk\nprovider: local\nregistry: data/registry.db\n"
        f"online_store:\n  type: remote\n  path: {a.url}\n"
        "entity_key_serialization_version: 3\n" + auth
    )

dummy = FileSource(path=os.path.join(a.repo, "data", "none.parquet"), timestamp_field="event_timestamp")
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64)
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="txn_count_7d", dtype=Int64),
        Field(name="amount_sum_7d", dtype=Float64),
        Field(name="amount_mean_7d", dtype=Float64),
        Field(name="last_country", dtype=String),
    ],
    source=dummy,
)
merchant_stats = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    schema=[Field(name="merchant_id", dtype=Int64), Field(name="chargebacks", dtype=Int64)],
    source=dummy,
)
# The stream view's events: its transform's input fields are this view's schema.
txn_push = PushSource(name="txn", batch_source=dummy)
txn = FeatureView(
    name="txn",
    entities=[user],
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="amount", dtype=Float64),
        Field(name="country", dtype=String),
        Field(name="merchant", dtype=String),
    ],
    source=txn_push,
)
objects = [user, merchant, user_stats, merchant_stats, txn]
if not a.no_service:
    objects.append(FeatureService(name="fraud_v1", features=[user_stats[["txn_count_7d"]]]))
store = FeatureStore(repo_path=a.repo)
store.apply(objects)

now = datetime.fromtimestamp(a.now_ms / 1000, tz=timezone.utc)
report = {}
headers = {"Authorization": f"Bearer {a.token}"} if a.token else {}

# Writes: a batch view through write_to_online_store, a stream view through push() (which the
# SDK sends as /write-to-online-store for the push source's view), and Feast's REST /push.
store.write_to_online_store(
    "user_stats",
    pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "txn_count_7d": [12, 2],
            "amount_sum_7d": [540.0, 1800.0],
            "amount_mean_7d": [45.0, 900.0],
            "last_country": ["DE", "FR"],
            "event_timestamp": [now - timedelta(hours=1)] * 2,
        }
    ),
)
store.write_to_online_store(
    "merchant_stats",
    pd.DataFrame({"merchant_id": [7, 8], "chargebacks": [3, 0], "event_timestamp": [now - timedelta(hours=1)] * 2}),
)
store.push(
    "txn",
    pd.DataFrame(
        {
            "user_id": ["u1", "u1"],
            "amount": [10.5, 20.25],
            "country": ["PT", "ES"],
            "merchant": ["m1", "m2"],
            "event_timestamp": [now - timedelta(minutes=10), now - timedelta(minutes=5)],
        }
    ),
)
r = requests.post(
    f"{a.url}/push",
    headers=headers,
    json={
        "push_source_name": "txn",
        "df": {
            "user_id": ["u2"],
            "amount": [7.0],
            "country": ["FR"],
            "merchant": ["m3"],
            "event_timestamp": [(now - timedelta(minutes=1)).isoformat()],
        },
        "to": "online",
    },
)
report["rest_push"] = r.status_code

rows = [
    {"user_id": "u1", "amount": 90.0, "country": "US"},
    {"user_id": "u2", "amount": 10.0, "country": "FR"},
    {"user_id": "nobody", "amount": 5.0, "country": "DE"},
]
features = [
    "txn:amount_sum_1h",
    "txn:amount_count_lifetime",
    "txn:country",
    "user_stats:txn_count_7d",
    "user_stats:last_country",
    "risk:risk_score",
]
report["short"] = store.get_online_features(features=features, entity_rows=rows).to_dict()
report["full"] = store.get_online_features(features=features, entity_rows=rows, full_feature_names=True).to_dict()
report["dtypes"] = {k: str(v) for k, v in store.get_online_features(features=features, entity_rows=rows).to_df().dtypes.items()}
report["int_keys"] = store.get_online_features(
    features=["merchant_stats:chargebacks"], entity_rows=[{"merchant_id": 7}, {"merchant_id": 8}, {"merchant_id": 9}]
).to_dict()
if not a.no_service:
    report["service"] = store.get_online_features(
        features=store.get_feature_service("fraud_v1"), entity_rows=rows
    ).to_dict()


def raised(f):
    try:
        f()
        return None
    except Exception as e:  # the class and module are what the SDK user catches
        return {"module": type(e).__module__, "class": type(e).__name__, "message": str(e)}


report["missing_view"] = raised(lambda: store.get_online_features(features=["nope:x"], entity_rows=rows))
report["missing_request_data"] = raised(
    lambda: store.get_online_features(features=["risk:risk_score"], entity_rows=[{"user_id": "u1"}])
)
report["health"] = requests.get(f"{a.url}/health").status_code
json.dump(report, sys.stdout, default=str)
