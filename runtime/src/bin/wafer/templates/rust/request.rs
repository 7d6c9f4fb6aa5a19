//! {{name}}: request param `amount` and the stored `txn:amount_mean_7d` → `amount_vs_mean`.
//! A missing or non-numeric `amount` is a typed bad-input error.

wit_bindgen::generate!({ path: "wit", world: "request-transform" });

use exports::wafer::transform::describe::Guest as Describe;
use exports::wafer::transform::request::{Guest as Request, RequestInput};
use wafer::transform::host::{Level, log};
use wafer::transform::types::{Feature, FeatureSpec, TransformError, TransformInfo, Value, ValueType};

const MEAN: &str = "txn:amount_mean_7d";

struct Component;

fn spec(name: &str, value_type: ValueType) -> FeatureSpec {
    FeatureSpec { name: name.into(), value_type, nullable: false }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Float64(f) => Some(*f),
        Value::Int64(i) => Some(*i as f64),
        _ => None,
    }
}

fn compute(input: &RequestInput) -> Result<Vec<Feature>, TransformError> {
    let amount = input.params.iter().find(|p| p.name == "amount").and_then(|p| number(&p.value));
    let Some(amount) = amount else {
        log(Level::Warn, &format!("{}: no amount", input.entity_key));
        return Err(TransformError::BadInput("request param `amount` must be a number".into()));
    };
    // A missing (null) or zero mean counts as 1.
    let mean = input.stored.iter().find(|s| s.name == MEAN).and_then(|s| number(&s.value)).filter(|m| *m != 0.0).unwrap_or(1.0);
    Ok(vec![Feature { name: "amount_vs_mean".into(), value: Value::Float64(amount / mean) }])
}

impl Describe for Component {
    fn describe() -> TransformInfo {
        TransformInfo {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            outputs: vec![spec("amount_vs_mean", ValueType::Float64)],
            params: vec![spec("amount", ValueType::Float64)],
            reads: vec![MEAN.into()],
        }
    }
}

impl Request for Component {
    fn compute(inputs: Vec<RequestInput>) -> Vec<Result<Vec<Feature>, TransformError>> {
        inputs.iter().map(compute).collect()
    }
}

export!(Component);
