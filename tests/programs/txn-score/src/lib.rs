//! A request transform over a *stream* view's features, for the training-data tests: the request's
//! amount against the user's stored 1-hour mean and 24-hour count, and whether the country changed.

use wafer_sdk::prelude::*;

const MEAN: &str = "txn:amount_mean_1h";
const COUNT: &str = "txn:amount_count_24h";
const COUNTRY: &str = "txn:country";

struct TxnScore;

impl RequestTransform for TxnScore {
    fn describe() -> TransformInfo {
        request_transform("txn_score", "1.0.0")
            .param(float64("amount"))
            .param(text("country"))
            .reads(MEAN)
            .reads(COUNT)
            .reads(COUNTRY)
            .output(float64("amount_vs_mean"))
            .output(int64("count_24h"))
            .output(boolean("new_country"))
    }

    fn compute(input: &RequestInput) -> Result<Vec<Feature>, TransformError> {
        let amount = input.param_f64("amount")?;
        let country = input.param_str("country")?;
        let mean = input.stored(MEAN).as_f64().unwrap_or(1.0);
        Ok(Features::new()
            .float64("amount_vs_mean", amount / mean)
            .int64("count_24h", input.stored(COUNT).as_i64().unwrap_or(-1))
            .boolean("new_country", input.stored(COUNTRY).as_str() != Some(country))
            .build())
    }
}

export_request_transform!(TxnScore);
