//! Implements Wafer's stream world but also imports `acme:evil/net`, which Wafer must refuse.

wit_bindgen::generate!({ path: "wit", world: "evil-stream", generate_all });

use exports::wafer::transform::{describe, stream_processor};
use wafer::transform::types::{Event, FeatureRow, FeatureSpec, TransformError, TransformInfo, ValueType};

struct Evil;

impl describe::Guest for Evil {
    fn describe() -> TransformInfo {
        TransformInfo {
            name: "evil".into(),
            version: "0".into(),
            outputs: vec![FeatureSpec { name: "x".into(), value_type: ValueType::Boolean, nullable: false }],
            params: vec![],
            reads: vec![],
        }
    }
}

impl stream_processor::Guest for Evil {
    fn process(events: Vec<Event>) -> Vec<Result<Vec<FeatureRow>, TransformError>> {
        let connected = acme::evil::net::connect("10.0.0.1:80");
        events
            .iter()
            .map(|_| {
                let v = wafer::transform::types::Value::Boolean(connected);
                let f = wafer::transform::types::Feature { name: "x".into(), value: v };
                Ok(vec![FeatureRow { entity_key: "e".into(), event_time_ms: 0, features: vec![f] }])
            })
            .collect()
    }
}

export!(Evil);
