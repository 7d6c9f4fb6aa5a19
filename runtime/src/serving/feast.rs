//! Feast-compatible online serving: `POST /get-online-features` with Feast's request JSON and
//! response shape, so an existing Feast client can point at Wafer.
//!
//! Request: `{"features": ["view:feature", ...]` or `"feature_service": "name"`,
//! `"entities": {"<join key>": [...], "<request data column>": [...]}`, `"full_feature_names": bool}`.
//! A column whose name is the `entity` of a view is a join key; every other column is request data.
//! Entity values may be strings or integers (integers are keyed by their decimal text).
//!
//! Response: `{"metadata": {"feature_names": [join keys..., features...]}, "results": [{"values",
//! "statuses", "event_timestamps"}, ...]}`, one result per column, join-key columns first.
//! Statuses: `PRESENT`, `NOT_FOUND`, `OUTSIDE_MAX_AGE`; timestamps RFC 3339 UTC, the epoch when
//! there is none. Feature names are `feature` or, with `full_feature_names`, `view__feature`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{Catalog, Entities, Plan, ServeError, Table};
use crate::time::format_rfc3339;
use crate::transform::json_out::value_to_json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeastRequest {
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub feature_service: Option<String>,
    pub entities: HashMap<String, Vec<Json>>,
    #[serde(default)]
    pub full_feature_names: bool,
    /// Wafer extension: serve as of this time (ms since the epoch); default now.
    #[serde(default)]
    pub as_of: Option<i64>,
}

/// A Feast request split into what [`Catalog::get`] takes.
pub struct Parsed {
    pub plan: std::sync::Arc<Plan>,
    /// Join-key columns (in request order) with their keys as text.
    pub join_keys: Vec<(String, Vec<Json>)>,
    pub keys: HashMap<String, Vec<String>>,
    pub request_data: HashMap<String, Vec<Json>>,
}

pub fn parse(catalog: &Catalog, req: FeastRequest) -> Result<Parsed, ServeError> {
    let features: Vec<String> = match (req.features, req.feature_service) {
        (Some(f), None) => f,
        (None, Some(s)) => catalog.service(&s)?.to_vec(),
        (Some(_), Some(_)) => {
            return Err(ServeError::Invalid("give either `features` or `feature_service`, not both".into()));
        }
        (None, None) => return Err(ServeError::Invalid("`features` or `feature_service` is required".into())),
    };
    let plan = catalog.plan_shared(&features, None)?;
    let entity_types: Vec<&str> = catalog.stored_views().iter().map(|v| v.spec.entity.as_str()).collect();
    let mut columns: Vec<(String, Vec<Json>)> = req.entities.into_iter().collect();
    columns.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut join_keys, mut keys, mut request_data) = (Vec::new(), HashMap::new(), HashMap::new());
    for (name, values) in columns {
        if entity_types.contains(&name.as_str()) {
            let mut ks = Vec::with_capacity(values.len());
            for (row, v) in values.iter().enumerate() {
                ks.push(match v {
                    Json::String(s) => s.clone(),
                    Json::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                    other => {
                        return Err(ServeError::Invalid(format!(
                            "entity `{name}` row {row}: keys must be strings or integers, got {other}"
                        )));
                    }
                });
            }
            keys.insert(name.clone(), ks);
            join_keys.push((name, values));
        } else {
            request_data.insert(name, values);
        }
    }
    Ok(Parsed { plan, join_keys, keys, request_data })
}

/// Serve a parsed Feast request.
pub async fn serve(
    catalog: &Catalog,
    store: &dyn crate::store::OnlineStore,
    p: &Parsed,
    t: i64,
) -> Result<Table, ServeError> {
    catalog.get(store, &p.plan, &Entities::ByType(&p.keys), &p.request_data, t).await
}

/// Feast's response body.
pub fn response(p: &Parsed, table: &Table, full_feature_names: bool) -> Json {
    let n = table.rows.len();
    let mut names: Vec<String> = p.join_keys.iter().map(|(k, _)| k.clone()).collect();
    names.extend(p.plan.names.iter().map(|f| {
        if full_feature_names {
            f.replacen(':', "__", 1)
        } else {
            f.split_once(':').map_or(f.clone(), |(_, x)| x.to_owned())
        }
    }));
    let epoch = format_rfc3339(0);
    let mut results: Vec<Json> = p
        .join_keys
        .iter()
        .map(|(_, vals)| json!({"values": vals, "statuses": vec!["PRESENT"; n], "event_timestamps": vec![epoch.as_str(); n]}))
        .collect();
    for col in 0..p.plan.names.len() {
        let (mut values, mut statuses, mut ts) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for row in &table.rows {
            let s = &row[col];
            values.push(value_to_json(&s.value));
            statuses.push(Json::from(s.status.feast()));
            ts.push(Json::from(s.event_time_ms.map_or_else(|| epoch.clone(), format_rfc3339)));
        }
        results.push(json!({"values": values, "statuses": statuses, "event_timestamps": ts}));
    }
    json!({"metadata": {"feature_names": names}, "results": results})
}
