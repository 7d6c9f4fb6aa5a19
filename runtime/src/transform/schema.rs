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
}

/// Validated declaration of a transform.
#[derive(Debug, Clone)]
pub struct Schema {
    outputs: Vec<FeatureSpec>,
    index: HashMap<String, usize>,
}

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
            if !valid_name(&spec.name) {
                return Err(format!("output feature name {:?} is invalid", spec.name));
            }
            if index.insert(spec.name.clone(), i).is_some() {
                return Err(format!("output feature `{}` is declared twice", spec.name));
            }
        }
        let mut params = HashMap::new();
        for p in &info.params {
            if !valid_name(&p.name) {
                return Err(format!("request param name {:?} is invalid", p.name));
            }
            if params.insert(p.name.as_str(), ()).is_some() {
                return Err(format!("request param `{}` is declared twice", p.name));
            }
        }
        for r in &info.reads {
            match r.split_once(':') {
                Some((view, feature)) if valid_name(view) && valid_name(feature) => {}
                _ => return Err(format!("read {r:?} is not of the form `view:feature`")),
            }
        }
        Ok(Self { outputs: info.outputs.clone(), index })
    }

    pub fn outputs(&self) -> &[FeatureSpec] {
        &self.outputs
    }

    /// Validate one set of features (a row's, or a request result).
    pub fn check_features(&self, features: &[Feature]) -> Result<(), SchemaError> {
        // Rows are small; a bitmask catches duplicates without allocating for up to 128 outputs.
        let mut seen = [0u64; 2];
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
            if i < 128 {
                let (w, b) = (i / 64, 1u64 << (i % 64));
                if seen[w] & b != 0 {
                    return Err(SchemaError::Duplicate(f.name.clone()));
                }
                seen[w] |= b;
            }
        }
        Ok(())
    }

    pub fn check_row(&self, row: &FeatureRow) -> Result<(), SchemaError> {
        if row.entity_key.is_empty() {
            return Err(SchemaError::EmptyEntityKey);
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
