"""{{name}}: request param `amount` and the stored `txn:amount_mean_7d` -> `amount_vs_mean`.
A missing or non-numeric `amount` is a typed bad-input error."""
from typing import List

from componentize_py_types import Ok, Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Feature, FeatureSpec, TransformInfo, ValueType, Value_Float64, Value_Int64, TransformError_BadInput,
)

MEAN = "txn:amount_mean_7d"


def number(v):
    return v.value if isinstance(v, (Value_Float64, Value_Int64)) else None


class Describe(exports.Describe):
    def describe(self) -> TransformInfo:
        return TransformInfo(
            name="{{name}}", version="0.1.0",
            outputs=[FeatureSpec("amount_vs_mean", ValueType.FLOAT64, False)],
            params=[FeatureSpec("amount", ValueType.FLOAT64, False)],
            reads=[MEAN],
        )


class Request(exports.Request):
    def compute(self, inputs):
        out = []
        for inp in inputs:
            amount = next((number(p.value) for p in inp.params if p.name == "amount"), None)
            if amount is None:
                host.log(host.Level.WARN, f"{inp.entity_key}: no amount")
                out.append(Err(TransformError_BadInput("request param `amount` must be a number")))
                continue
            mean = next((number(s.value) for s in inp.stored if s.name == MEAN), None)
            if not mean:
                mean = 1.0
            out.append(Ok([Feature("amount_vs_mean", Value_Float64(float(amount) / float(mean)))]))
        return out
