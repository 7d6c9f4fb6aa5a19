"""{{name}}: events like {"user_id":"u1","amount":12.5} -> one row per user with `amount` and
`is_large`. Bad input (not JSON, a missing field, a negative amount) is a typed error."""
import json
from typing import List

from componentize_py_types import Ok, Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Event, Feature, FeatureRow, FeatureSpec, TransformInfo, ValueType,
    Value_Float64, Value_Boolean, TransformError_BadInput,
)


class BadInput(Exception):
    pass


def transform(event: Event) -> List[FeatureRow]:
    try:
        v = json.loads(event.value)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"payload is not valid JSON: {e}")
    user = v.get("user_id") if isinstance(v, dict) else None
    if not isinstance(user, str):
        raise BadInput("field `user_id` must be a string")
    amount = v.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise BadInput("field `amount` must be a number")
    amount = float(amount)
    if amount < 0:
        host.log(host.Level.WARN, f"rejecting negative amount {amount} for {user}")
        raise BadInput(f"field `amount` must be non-negative, got {amount}")
    return [FeatureRow(entity_key=user, event_time_ms=event.timestamp_ms, features=[
        Feature("amount", Value_Float64(amount)),
        Feature("is_large", Value_Boolean(amount >= 100.0)),
    ])]


class Describe(exports.Describe):
    def describe(self) -> TransformInfo:
        return TransformInfo(
            name="{{name}}", version="0.1.0",
            outputs=[FeatureSpec("amount", ValueType.FLOAT64, False), FeatureSpec("is_large", ValueType.BOOLEAN, False)],
            params=[], reads=[],
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
