//! Reading a stored view's features (latest values and aggregations merged from tiles) for a
//! set of entities at a time `t`: one store round trip per view.

use std::collections::HashMap;

use crate::aggregate::Window;
use crate::aggregate::ops::latest_field;
use crate::aggregate::read::{FieldSource, compute, fields_for, latest_stored};
use crate::bindings::types::{Value, ValueType};
use crate::store::{OnlineStore, StoreError};
use crate::view::ViewSpec;

/// Status of one served value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Present,
    Missing,
    Expired,
    /// The store could not be read for this entity (its shard is down); retry later.
    Unavailable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Present => "present",
            Status::Missing => "missing",
            Status::Expired => "expired",
            Status::Unavailable => "unavailable",
        }
    }

    /// Feast's name for the status.
    pub fn feast(self) -> &'static str {
        match self {
            Status::Present => "PRESENT",
            Status::Missing => "NOT_FOUND",
            Status::Expired => "OUTSIDE_MAX_AGE",
            // Feast has no status for a store that could not answer.
            Status::Unavailable => "INVALID",
        }
    }
}

/// One served feature value.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub value: Value,
    pub status: Status,
    pub event_time_ms: Option<i64>,
}

impl Served {
    pub const MISSING: Served = Served { value: Value::Null, status: Status::Missing, event_time_ms: None };
    /// A value the store could not read.
    pub const UNAVAILABLE: Served = Served { value: Value::Null, status: Status::Unavailable, event_time_ms: None };
}

/// Where a served feature comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureRef {
    /// Index into `spec.latest`.
    Latest(usize),
    /// Index into `spec.aggs`, the window, and the aggregated column's type.
    Agg(usize, Window, ValueType),
}

/// The read side of a stream or batch view.
pub struct StoredView {
    /// Namespaced id (`tenant/view`): the store namespace.
    pub id: String,
    pub spec: ViewSpec,
    /// Every served feature by name, resolved once.
    features: HashMap<String, FeatureRef>,
    /// Stored field name of each `spec.latest` feature (`f:<name>`), built once.
    latest_fields: Vec<String>,
}

impl StoredView {
    pub fn new(tenant: &str, spec: ViewSpec) -> Self {
        let mut features = HashMap::new();
        for (i, (name, _)) in spec.latest.iter().enumerate() {
            features.insert(name.clone(), FeatureRef::Latest(i));
        }
        for (i, a) in spec.aggs.iter().enumerate() {
            let ct = spec.column_type(&a.column);
            for w in &a.windows {
                features.insert(a.feature_name(*w), FeatureRef::Agg(i, *w, ct));
            }
        }
        let latest_fields = spec.latest.iter().map(|(n, _)| latest_field(n)).collect();
        Self { id: crate::view::view_id(tenant, &spec.name), spec, features, latest_fields }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Resolve a feature name of this view.
    pub fn resolve(&self, feature: &str) -> Option<FeatureRef> {
        self.features.get(feature).copied()
    }

    /// The type of a resolved feature.
    pub fn value_type(&self, r: FeatureRef) -> ValueType {
        match r {
            FeatureRef::Latest(i) => self.spec.latest[i].1,
            FeatureRef::Agg(i, _, ct) => crate::aggregate::read::output_type(self.spec.aggs[i].function, ct),
        }
    }

    /// Read `refs` of every entity at time `t`: `out[e][f]`.
    pub async fn read(
        &self,
        store: &dyn OnlineStore,
        entities: &[&str],
        refs: &[FeatureRef],
        t: i64,
    ) -> Result<Vec<Vec<Served>>, StoreError> {
        let (fields, hlls) = self.fields(refs, t);
        self.read_fields(store, entities, refs, &fields, &hlls, t).await
    }

    /// The stored fields and sketches `refs` need at time `t`, sorted and without repeats.
    pub fn fields(&self, refs: &[FeatureRef], t: i64) -> (Vec<String>, Vec<String>) {
        let (mut fields, mut hlls) = (Vec::with_capacity(refs.len()), Vec::new());
        for r in refs {
            match *r {
                FeatureRef::Latest(i) => fields.push(self.latest_fields[i].clone()),
                FeatureRef::Agg(i, w, _) => fields_for(&self.spec.aggs[i], w, t, &mut fields, &mut hlls),
            }
        }
        fields.sort_unstable();
        fields.dedup();
        (fields, hlls)
    }

    /// [`Self::fields`] when they do not depend on the request time (no aggregations): a plan
    /// computes them once.
    pub fn fixed_fields(&self, refs: &[FeatureRef]) -> Option<Vec<String>> {
        refs.iter().all(|r| matches!(r, FeatureRef::Latest(_))).then(|| self.fields(refs, 0).0)
    }

    /// [`Self::read`] with the fields already listed (from [`Self::fields`]).
    pub async fn read_fields(
        &self,
        store: &dyn OnlineStore,
        entities: &[&str],
        refs: &[FeatureRef],
        fields: &[String],
        hlls: &[String],
        t: i64,
    ) -> Result<Vec<Vec<Served>>, StoreError> {
        let records = store.read(&self.id, entities, fields, hlls).await?;
        Ok(records
            .iter()
            .map(|rec| {
                if rec.is_unavailable() {
                    return vec![Served::UNAVAILABLE; refs.len()];
                }
                refs.iter().map(|r| self.serve(*r, rec, rec.is_empty(), t)).collect()
            })
            .collect())
    }

    /// One value from a fetched record.
    fn serve(&self, r: FeatureRef, rec: &dyn FieldSource, empty: bool, t: i64) -> Served {
        match r {
            FeatureRef::Latest(i) => match latest_stored(&self.latest_fields[i], self.spec.latest[i].1, rec) {
                None => Served::MISSING,
                // Written after `t` (an `as_of` read of the past): not known at `t`.
                Some((et, _)) if et > t => Served::MISSING,
                Some((et, _)) if t - et > self.spec.ttl_ms => {
                    Served { value: Value::Null, status: Status::Expired, event_time_ms: Some(et) }
                }
                Some((et, v)) => Served { value: v, status: Status::Present, event_time_ms: Some(et) },
            },
            FeatureRef::Agg(i, w, ct) => Served {
                value: compute(&self.spec.aggs[i], w, t, ct, rec),
                status: if empty { Status::Missing } else { Status::Present },
                event_time_ms: None,
            },
        }
    }
}
