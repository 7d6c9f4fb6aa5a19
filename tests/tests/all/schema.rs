//! Outputs are validated against the declared schema: a violation fails that event, not the host.

use serde_json::json;
use wafer_runtime::TransformError;
use wafer_runtime::transform::SchemaError;

use crate::support::{event, guests, load};

fn err_for(mode: &str) -> TransformError {
    let mut w = load(guests::MISBEHAVE).stream_worker().unwrap();
    let r = w.process(&[event(0, 1, json!({"mode": mode})), event(1, 1, json!({"mode":"ok"}))]);
    assert!(r[1].is_ok(), "the other event of the batch is unaffected");
    r.into_iter().next().unwrap().unwrap_err()
}

#[test]
fn undeclared_feature_is_an_error_for_that_event() {
    assert_eq!(err_for("undeclared"), TransformError::Schema(SchemaError::Undeclared("nope".into())));
}

#[test]
fn wrong_type_is_an_error_naming_both_types() {
    let e = err_for("wrong_type");
    assert_eq!(
        e,
        TransformError::Schema(SchemaError::WrongType { name: "x".into(), expected: "int64", found: "text" })
    );
    assert_eq!(e.to_string(), "schema violation: feature `x` is declared as int64 but the transform returned text");
}

#[test]
fn null_for_a_non_nullable_feature_is_an_error() {
    assert_eq!(err_for("null"), TransformError::Schema(SchemaError::NullNotAllowed("x".into())));
}

#[test]
fn empty_entity_key_is_an_error() {
    assert_eq!(err_for("empty_key"), TransformError::Schema(SchemaError::EmptyEntityKey));
}
