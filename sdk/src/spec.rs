//! Declaring a transform: `TransformInfo::stream("name", "1").output(float64("amount"))`.

use crate::{FeatureSpec, TransformInfo, ValueType};

/// Start declaring a stream transform.
pub fn stream_transform(name: &str, version: &str) -> TransformInfo {
    TransformInfo { name: name.into(), version: version.into(), outputs: vec![], params: vec![], reads: vec![] }
}

/// Start declaring a request transform.
pub fn request_transform(name: &str, version: &str) -> TransformInfo {
    stream_transform(name, version)
}

/// Builder methods on [`TransformInfo`].
pub trait InfoExt: Sized {
    /// Declare an output feature.
    fn output(self, spec: FeatureSpec) -> Self;
    /// Declare a request parameter (request transforms).
    fn param(self, spec: FeatureSpec) -> Self;
    /// Declare a stored feature to read, as `view:feature` (request transforms).
    fn reads(self, name: &str) -> Self;
}

impl InfoExt for TransformInfo {
    fn output(mut self, spec: FeatureSpec) -> Self {
        self.outputs.push(spec);
        self
    }
    fn param(mut self, spec: FeatureSpec) -> Self {
        self.params.push(spec);
        self
    }
    fn reads(mut self, name: &str) -> Self {
        self.reads.push(name.into());
        self
    }
}

/// Builder methods on [`FeatureSpec`].
pub trait SpecExt {
    /// Allow `null` for this feature.
    fn nullable(self) -> Self;
}

impl SpecExt for FeatureSpec {
    fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
}

fn spec(name: &str, value_type: ValueType) -> FeatureSpec {
    FeatureSpec { name: name.into(), value_type, nullable: false }
}

pub fn boolean(name: &str) -> FeatureSpec {
    spec(name, ValueType::Boolean)
}
pub fn int64(name: &str) -> FeatureSpec {
    spec(name, ValueType::Int64)
}
pub fn float64(name: &str) -> FeatureSpec {
    spec(name, ValueType::Float64)
}
pub fn text(name: &str) -> FeatureSpec {
    spec(name, ValueType::Text)
}
pub fn bytes(name: &str) -> FeatureSpec {
    spec(name, ValueType::Bytes)
}
pub fn float32s(name: &str) -> FeatureSpec {
    spec(name, ValueType::Float32s)
}
pub fn int64s(name: &str) -> FeatureSpec {
    spec(name, ValueType::Int64s)
}
pub fn texts(name: &str) -> FeatureSpec {
    spec(name, ValueType::Texts)
}
