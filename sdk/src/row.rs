//! Builders for rows and feature lists.

use crate::{Feature, FeatureRow, Value};

/// Build a list of features: `Features::new().float64("a", 1.0).text("b", "x").build()`.
#[derive(Default)]
pub struct Features(Vec<Feature>);

macro_rules! setters {
    ($($name:ident($t:ty) => $variant:ident),* $(,)?) => {
        $(
            pub fn $name(mut self, name: &str, value: $t) -> Self {
                self.push(name, Value::$variant(value.into()));
                self
            }
        )*
    };
}

impl Features {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// Add any value.
    pub fn push(&mut self, name: &str, value: Value) {
        self.0.push(Feature { name: name.to_string(), value });
    }
    pub fn value(mut self, name: &str, value: Value) -> Self {
        self.push(name, value);
        self
    }
    /// Add `null`.
    pub fn null(mut self, name: &str) -> Self {
        self.push(name, Value::Null);
        self
    }
    /// Add `value` if `Some`, else `null`.
    pub fn text_opt(mut self, name: &str, value: Option<impl Into<String>>) -> Self {
        self.push(name, value.map_or(Value::Null, |v| Value::Text(v.into())));
        self
    }
    setters! {
        boolean(bool) => Boolean,
        int64(i64) => Int64,
        float64(f64) => Float64,
        text(&str) => Text,
        bytes(&[u8]) => Bytes,
        float32s(&[f32]) => Float32s,
        int64s(&[i64]) => Int64s,
    }
    pub fn texts(mut self, name: &str, values: &[&str]) -> Self {
        self.push(name, Value::Texts(values.iter().map(|s| s.to_string()).collect()));
        self
    }
    pub fn build(self) -> Vec<Feature> {
        self.0
    }
}

/// Build a feature row: `Row::new("u1", ts).float64("amount", 12.5).build()`.
pub struct Row {
    entity_key: String,
    event_time_ms: i64,
    features: Features,
}

macro_rules! row_setters {
    ($($name:ident($t:ty)),* $(,)?) => {
        $(
            pub fn $name(mut self, name: &str, value: $t) -> Self {
                self.features = self.features.$name(name, value);
                self
            }
        )*
    };
}

impl Row {
    pub fn new(entity_key: impl Into<String>, event_time_ms: i64) -> Self {
        Self { entity_key: entity_key.into(), event_time_ms, features: Features::new() }
    }
    row_setters! {
        boolean(bool), int64(i64), float64(f64), text(&str), bytes(&[u8]),
        float32s(&[f32]), int64s(&[i64]), texts(&[&str]), value(Value),
    }
    pub fn null(mut self, name: &str) -> Self {
        self.features = self.features.null(name);
        self
    }
    pub fn text_opt(mut self, name: &str, value: Option<impl Into<String>>) -> Self {
        self.features = self.features.text_opt(name, value);
        self
    }
    pub fn build(self) -> FeatureRow {
        FeatureRow { entity_key: self.entity_key, event_time_ms: self.event_time_ms, features: self.features.build() }
    }
}
