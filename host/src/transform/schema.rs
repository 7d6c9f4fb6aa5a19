//! The schema a transform declares in `describe`, and validation of every output against it.

use std::collections::HashMap;

use crate::bindings::types::{Feature, FeatureRow, FeatureSpec, TransformInfo, ValueType};

/// An output that does not match the declaration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("feature `{0}` is not declared by the transform")]
    Undeclared(String),
    #[error("feature `{name}` is declared as {expected} but the transform returned {found}")]
    WrongType { name: String, expected: &'static str, found: &'static str },
    #[error("feature `{0}` is not nullable but the transform returned null")]
    NullNotAllowed(String),
    #[error("feature `{0}` appears more than once in one row")]
    Duplicate(String),
    #[error("row has an empty entity key")]
    EmptyEntityKey,
    #[error("entity key of {len} bytes exceeds the cap of {cap} bytes (quota entity_key_bytes)")]
    EntityKeyTooLong { len: usize, cap: usize },
}

/// Validated declaration of a transform.
#[derive(Debug, Clone)]
pub struct Schema {
    outputs: Vec<FeatureSpec>,
    index: HashMap<String, usize>,
    entity_key_bytes: usize,
}

/// Caps on what `describe` may declare: it is stored in the registry snapshot every node reads,
/// so its size is bounded (`invalid_describe` names the cap exceeded).
pub const MAX_OUTPUTS: usize = 1024;
/// Most request params a transform may declare.
pub const MAX_PARAMS: usize = 256;
/// Most stored reads a transform may declare.
pub const MAX_READS: usize = 256;
/// Longest `version` string.
pub const MAX_VERSION_LEN: usize = 128;
/// Default cap on an entity key's length (bytes); the quota `entity_key_bytes` sets it per tenant.
pub const DEFAULT_ENTITY_KEY_BYTES: usize = 1024;

/// Longest name accepted for transforms, features and params.
pub const MAX_NAME_LEN: usize = 128;

/// Names are 1..=128 of `[A-Za-z0-9_.-]`, starting with a letter or `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Schema {
    /// Check a `describe` result and index it.
    pub fn from_info(info: &TransformInfo) -> Result<Self, String> {
        let over = |what: &str, n: usize, cap: usize| Err(format!("{what}: {n}, over the cap of {cap}"));
        if info.outputs.len() > MAX_OUTPUTS {
            return over("declared outputs", info.outputs.len(), MAX_OUTPUTS);
        }
        if info.params.len() > MAX_PARAMS {
            return over("declared request params", info.params.len(), MAX_PARAMS);
        }
        if info.reads.len() > MAX_READS {
            return over("declared stored reads", info.reads.len(), MAX_READS);
        }
        if info.version.len() > MAX_VERSION_LEN {
            return over("version string length in bytes", info.version.len(), MAX_VERSION_LEN);
        }
        if info.name.len() > MAX_NAME_LEN {
            return over("transform name length in bytes", info.name.len(), MAX_NAME_LEN);
        }
        if !valid_name(&info.name) {
            return Err(format!(
                "transform name {:?} is invalid (1-{MAX_NAME_LEN} of [A-Za-z0-9_.-], starting with a letter)",
                info.name
            ));
        }
        if info.outputs.is_empty() {
            return Err("the transform declares no output features".into());
        }
        let mut index = HashMap::new();
        for (i, spec) in info.outputs.iter().enumerate() {
            if spec.name.len() > MAX_NAME_LEN {
                return over("output feature name length in bytes", spec.name.len(), MAX_NAME_LEN);
            }
            if !valid_name(&spec.name) {
                return Err(format!("output feature name {:?} is invalid", spec.name));
            }
            if index.insert(spec.name.clone(), i).is_some() {
                return Err(format!("output feature `{}` is declared twice", spec.name));
            }
        }
        let mut params = HashMap::new();
        for p in &info.params {
            if p.name.len() > MAX_NAME_LEN {
                return over("request param name length in bytes", p.name.len(), MAX_NAME_LEN);
            }
            if !valid_name(&p.name) {
                return Err(format!("request param name {:?} is invalid", p.name));
            }
            if params.insert(p.name.as_str(), ()).is_some() {
                return Err(format!("request param `{}` is declared twice", p.name));
            }
        }
        for r in &info.reads {
            if r.len() > 2 * MAX_NAME_LEN + 1 {
                return over("stored read length in bytes", r.len(), 2 * MAX_NAME_LEN + 1);
            }
            match r.split_once(':') {
                Some((view, feature)) if valid_name(view) && valid_name(feature) => {}
                _ => return Err(format!("read {r:?} is not of the form `view:feature`")),
            }
        }
        Ok(Self { outputs: info.outputs.clone(), index, entity_key_bytes: DEFAULT_ENTITY_KEY_BYTES })
    }

    /// The same schema with rows' entity keys capped at `bytes`.
    pub fn with_entity_key_cap(mut self, bytes: usize) -> Self {
        self.entity_key_bytes = bytes;
        self
    }

    pub fn outputs(&self) -> &[FeatureSpec] {
        &self.outputs
    }

    /// Validate one set of features (a row's, or a request result).
    pub fn check_features(&self, features: &[Feature]) -> Result<(), SchemaError> {
        // Rows are small; a bitmask catches duplicates without allocating for up to 128 outputs
        // (larger schemas, up to MAX_OUTPUTS, use a heap bitmask).
        let mut small = [0u64; 2];
        let mut large = Vec::new();
        let seen: &mut [u64] = if self.outputs.len() <= 128 {
            &mut small
        } else {
            large.resize(self.outputs.len().div_ceil(64), 0u64);
            &mut large
        };
        for (pos, f) in features.iter().enumerate() {
            // Fast path: guests usually emit features in declared order.
            let i = match self.outputs.get(pos) {
                Some(spec) if spec.name == f.name => pos,
                _ => match self.index.get(f.name.as_str()) {
                    Some(&i) => i,
                    None => return Err(SchemaError::Undeclared(f.name.clone())),
                },
            };
            let spec = &self.outputs[i];
            match f.value.value_type() {
                None if !spec.nullable => return Err(SchemaError::NullNotAllowed(f.name.clone())),
                None => {}
                Some(t) if t != spec.value_type => {
                    return Err(SchemaError::WrongType {
                        name: f.name.clone(),
                        expected: spec.value_type.as_str(),
                        found: t.as_str(),
                    });
                }
                Some(_) => {}
            }
            let (w, b) = (i / 64, 1u64 << (i % 64));
            if seen[w] & b != 0 {
                return Err(SchemaError::Duplicate(f.name.clone()));
            }
            seen[w] |= b;
        }
        Ok(())
    }

    pub fn check_row(&self, row: &FeatureRow) -> Result<(), SchemaError> {
        if row.entity_key.is_empty() {
            return Err(SchemaError::EmptyEntityKey);
        }
        if row.entity_key.len() > self.entity_key_bytes {
            return Err(SchemaError::EntityKeyTooLong { len: row.entity_key.len(), cap: self.entity_key_bytes });
        }
        self.check_features(&row.features)
    }

    /// Declared type of an output.
    pub fn type_of(&self, name: &str) -> Option<ValueType> {
        self.index.get(name).map(|&i| self.outputs[i].value_type)
    }
}

/// Approximate size of a set of features, for the output cap.
pub fn features_size(features: &[Feature]) -> usize {
    features.iter().map(|f| f.name.len() + f.value.approx_size()).sum()
}

pub fn rows_size(rows: &[FeatureRow]) -> usize {
    rows.iter().map(|r| 16 + r.entity_key.len() + features_size(&r.features)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::Value;

    fn info(outputs: usize) -> TransformInfo {
        TransformInfo {
            name: "t".into(),
            version: "1".into(),
            outputs: (0..outputs)
                .map(|i| FeatureSpec { name: format!("f{i}"), value_type: ValueType::Int64, nullable: false })
                .collect(),
            params: Vec::new(),
            reads: Vec::new(),
        }
    }

    fn feature(i: usize) -> Feature {
        Feature { name: format!("f{i}"), value: Value::Int64(i as i64) }
    }

    #[test]
    fn a_duplicate_is_caught_at_any_output_index() {
        let s = Schema::from_info(&info(300)).unwrap();
        for dup in [0, 127, 128, 150, 299] {
            let mut fs: Vec<Feature> = (0..300).map(feature).collect();
            fs.push(feature(dup));
            assert_eq!(s.check_features(&fs), Err(SchemaError::Duplicate(format!("f{dup}"))), "index {dup}");
        }
        assert_eq!(s.check_features(&(0..300).map(feature).collect::<Vec<_>>()), Ok(()));
    }

    #[test]
    fn describe_is_capped_and_the_error_names_the_cap() {
        let e = Schema::from_info(&info(40_000)).unwrap_err();
        assert!(e.contains("outputs") && e.contains("1024"), "{e}");
        let mut big = info(1);
        big.version = "v".repeat(1 << 20);
        let e = Schema::from_info(&big).unwrap_err();
        assert!(e.contains("version") && e.contains("128"), "{e}");
        let mut long = info(1);
        long.outputs[0].name = "f".repeat(10_000);
        let e = Schema::from_info(&long).unwrap_err();
        assert!(e.contains("output feature name") && e.contains("128"), "{e}");
        assert!(Schema::from_info(&info(MAX_OUTPUTS)).is_ok());
    }

    #[test]
    fn entity_keys_are_capped() {
        let s = Schema::from_info(&info(1)).unwrap();
        let row = |len: usize| FeatureRow { entity_key: "k".repeat(len), event_time_ms: 0, features: vec![feature(0)] };
        assert_eq!(s.check_row(&row(DEFAULT_ENTITY_KEY_BYTES)), Ok(()));
        assert_eq!(
            s.check_row(&row(10 << 20)),
            Err(SchemaError::EntityKeyTooLong { len: 10 << 20, cap: DEFAULT_ENTITY_KEY_BYTES })
        );
        let s = s.with_entity_key_cap(8);
        assert!(s.check_row(&row(9)).is_err());
    }
}
