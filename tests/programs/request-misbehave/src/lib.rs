//! A request transform that does what the `mode` param says, to test the sandbox.

use std::hint::black_box;

use wafer_sdk::prelude::*;

struct RequestMisbehave;

impl RequestTransform for RequestMisbehave {
    fn describe() -> TransformInfo {
        request_transform("request_misbehave", "0").param(text("mode")).output(float64("y"))
    }

    fn compute(input: &RequestInput) -> Result<Vec<Feature>, TransformError> {
        match input.param_str("mode")? {
            "ok" => Ok(Features::new().float64("y", input.request_time_ms as f64).build()),
            "loop" => loop {
                black_box(input);
            },
            "trap" => panic!("boom on purpose"),
            "alloc" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "wrong_type" => Ok(Features::new().text("y", "nope").build()),
            other => Err(TransformError::BadInput(format!("unknown mode {other}"))),
        }
    }
}

export_request_transform!(RequestMisbehave);
