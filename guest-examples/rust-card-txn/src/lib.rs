//! Card transactions → per-user feature rows.
//!
//! Input: JSON like `{"user_id":"u1","amount":12.5,"country":"DE","merchant":"m9"}`; optional
//! header `channel`. Output: one row for entity `user_id` at the event time.
//! The Python example (`../python-card-txn/app.py`) must produce exactly the same rows.

use wafer_sdk::prelude::*;

/// Amounts at or above this are "high value".
const HIGH_VALUE: f64 = 500.0;

/// Public so the benchmark can run the same logic natively.
pub struct CardTxn;

impl StreamTransform for CardTxn {
    fn describe() -> TransformInfo {
        stream_transform("card_txn", "1.0.0")
            .output(float64("amount"))
            .output(text("country"))
            .output(text("merchant"))
            .output(boolean("is_high_value"))
            .output(int64("hour_of_day"))
            .output(text("channel").nullable())
    }

    fn process(event: &Event) -> Result<Vec<FeatureRow>, TransformError> {
        let v = json::parse(&event.value)?;
        let user = json::str(&v, "user_id")?;
        if user.is_empty() {
            return Err(TransformError::BadInput("field `user_id` must not be empty".into()));
        }
        let amount = json::f64(&v, "amount")?;
        if !amount.is_finite() || amount < 0.0 {
            log::warn(&format!("rejecting amount {amount} for user {user}"));
            return Err(TransformError::BadInput(format!(
                "field `amount` must be a non-negative number, got {amount}"
            )));
        }
        let country = json::str(&v, "country")?;
        let merchant = json::str(&v, "merchant")?;
        let channel = event.header("channel").map(|b| String::from_utf8_lossy(b).into_owned());
        let hour = event.timestamp_ms.div_euclid(3_600_000).rem_euclid(24);
        Ok(vec![
            Row::new(user, event.timestamp_ms)
                .float64("amount", amount)
                .text("country", country)
                .text("merchant", merchant)
                .boolean("is_high_value", amount >= HIGH_VALUE)
                .int64("hour_of_day", hour)
                .text_opt("channel", channel)
                .build(),
        ])
    }
}

export_stream_transform!(CardTxn);
