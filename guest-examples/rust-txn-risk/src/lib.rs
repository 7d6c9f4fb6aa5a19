//! `txn_risk`: a request-time risk score from the transaction in the request and the user's
//! stored features.
//!
//! ```text
//! amount_vs_mean = amount / (amount_mean_7d or 1)
//! is_new_country = country != last_country
//! risk_score     = min(1, 0.1*min(amount_vs_mean, 5) + 0.4*is_new_country
//!                         + (0.1 if txn_count_7d < 3 else 0))
//! ```
//! Missing stored features: `amount_mean_7d` (or 0) → 1; `last_country` → new country;
//! `txn_count_7d` → 0.

use wafer_sdk::prelude::*;

const MEAN: &str = "user_stats:amount_mean_7d";
const COUNT: &str = "user_stats:txn_count_7d";
const LAST_COUNTRY: &str = "user_stats:last_country";

struct TxnRisk;

impl RequestTransform for TxnRisk {
    fn describe() -> TransformInfo {
        request_transform("txn_risk", "1.0.0")
            .param(float64("amount"))
            .param(text("country"))
            .reads(COUNT)
            .reads(MEAN)
            .reads(LAST_COUNTRY)
            .output(float64("amount_vs_mean"))
            .output(boolean("is_new_country"))
            .output(float64("risk_score"))
    }

    fn compute(input: &RequestInput) -> Result<Vec<Feature>, TransformError> {
        let amount = input.param_f64("amount")?;
        let country = input.param_str("country")?;
        let mean = input.stored(MEAN).as_f64().filter(|m| *m != 0.0).unwrap_or(1.0);
        let count = input.stored(COUNT).as_f64().unwrap_or(0.0);
        let last_country = input.stored(LAST_COUNTRY).as_str();
        let amount_vs_mean = amount / mean;
        let is_new_country = last_country != Some(country);
        let risk = 0.1 * amount_vs_mean.min(5.0)
            + if is_new_country { 0.4 } else { 0.0 }
            + if count < 3.0 { 0.1 } else { 0.0 };
        Ok(Features::new()
            .float64("amount_vs_mean", amount_vs_mean)
            .boolean("is_new_country", is_new_country)
            .float64("risk_score", risk.min(1.0))
            .build())
    }
}

export_request_transform!(TxnRisk);
