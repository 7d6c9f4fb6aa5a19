"""Card transactions -> per-user feature rows (Python; same rows as ../rust-card-txn).

Build: componentize-py -d ../../wit -w stream-transform componentize app -o card_txn_py.wasm
"""
import json
import math
from typing import List

from componentize_py_types import Ok, Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Event, Feature, FeatureRow, FeatureSpec, TransformInfo, ValueType,
    Value_Float64, Value_Text, Value_Boolean, Value_Int64, Value_Null,
    TransformError_BadInput,
)

HIGH_VALUE = 500.0


class BadInput(Exception):
    pass


def _field(obj, name):
    v = obj.get(name)
    if v is None:
        raise BadInput(f"missing field `{name}`")
    return v


def _str(obj, name):
    v = _field(obj, name)
    if not isinstance(v, str):
        raise BadInput(f"field `{name}` must be a string")
    return v


def _f64(obj, name):
    v = _field(obj, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadInput(f"field `{name}` must be a number")
    return float(v)


def _header(event: Event, key: str):
    for h in event.headers:
        if h.key == key:
            return h.value
    return None


def transform(event: Event) -> List[FeatureRow]:
    try:
        v = json.loads(event.value)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"payload is not valid JSON: {e}")
    if not isinstance(v, dict):
        raise BadInput("payload must be a JSON object")
    user = _str(v, "user_id")
    if user == "":
        raise BadInput("field `user_id` must not be empty")
    amount = _f64(v, "amount")
    if not math.isfinite(amount) or amount < 0.0:
        host.log(host.Level.WARN, f"rejecting amount {amount} for user {user}")
        raise BadInput(f"field `amount` must be a non-negative number, got {amount}")
    country = _str(v, "country")
    merchant = _str(v, "merchant")
    channel = _header(event, "channel")
    hour = (event.timestamp_ms // 3_600_000) % 24
    return [FeatureRow(
        entity_key=user,
        event_time_ms=event.timestamp_ms,
        features=[
            Feature("amount", Value_Float64(amount)),
            Feature("country", Value_Text(country)),
            Feature("merchant", Value_Text(merchant)),
            Feature("is_high_value", Value_Boolean(amount >= HIGH_VALUE)),
            Feature("hour_of_day", Value_Int64(hour)),
            Feature("channel", Value_Null() if channel is None
                    else Value_Text(channel.decode("utf-8", errors="replace"))),
        ],
    )]


class Describe(exports.Describe):
    def describe(self) -> TransformInfo:
        def spec(name, t, nullable=False):
            return FeatureSpec(name=name, value_type=t, nullable=nullable)
        return TransformInfo(
            name="card_txn",
            version="1.0.0",
            outputs=[
                spec("amount", ValueType.FLOAT64),
                spec("country", ValueType.TEXT),
                spec("merchant", ValueType.TEXT),
                spec("is_high_value", ValueType.BOOLEAN),
                spec("hour_of_day", ValueType.INT64),
                spec("channel", ValueType.TEXT, nullable=True),
            ],
            params=[],
            reads=[],
        )


class StreamProcessor(exports.StreamProcessor):
    def process(self, events: List[Event]):
        out = []
        for event in events:
            try:
                out.append(Ok(transform(event)))
            except BadInput as e:
                out.append(Err(TransformError_BadInput(str(e))))
        return out
