//! Native feature reads: `POST /v1/features` (Feast's protocol is in [`super::feast`]).

use std::collections::HashMap;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::Value as Json;

use super::error::ApiError;
use super::respond::{Resp, body, bytes_resp};
use crate::node::Node;
use crate::serving::{Entities, ServeError};
use crate::tenant::TenantApp;
use crate::transform::json_out::{write_str, write_value};

/// Native request. `entities` is a list of keys (for every view of the request) or an object of
/// key lists per entity type; `features` are `view:feature` (bare names resolve in `view`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureRequest {
    #[serde(default)]
    view: Option<String>,
    entities: EntityKeys,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    feature_service: Option<String>,
    #[serde(default)]
    request_data: HashMap<String, Vec<Json>>,
    #[serde(default)]
    as_of: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EntityKeys {
    All(Vec<String>),
    ByType(HashMap<String, Vec<String>>),
}

/// `POST /v1/features`.
pub async fn native(app: &Node, t: &TenantApp, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: FeatureRequest = body(req).await?;
    native_inner(app, t, &r).await.map_err(|e| {
        app.metrics.serve_errors.add(&t.name, e.code(), 1);
        ApiError::Serve(e)
    })
}

async fn native_inner(app: &Node, t: &TenantApp, r: &FeatureRequest) -> Result<Resp, ServeError> {
    let service_features;
    let features: &[String] = match (&r.features, &r.feature_service) {
        (Some(f), None) => f,
        (None, Some(s)) => {
            service_features = t.catalog.service(s)?.to_vec();
            &service_features
        }
        _ => return Err(ServeError::Invalid("give exactly one of `features` and `feature_service`".into())),
    };
    let plan = t.catalog.plan_shared(features, r.view.as_deref())?;
    let entities = match &r.entities {
        EntityKeys::All(k) => Entities::All(k),
        EntityKeys::ByType(m) => Entities::ByType(m),
    };
    let now = r.as_of.unwrap_or_else(crate::time::now_ms);
    let table = t.catalog.get(app.store.as_ref(), &plan, &entities, &r.request_data, now).await?;

    // {"as_of": t, "results": [{"entity": k, "features": {name: {value, status, event_time_ms}}}]}
    let mut out = Vec::with_capacity(64 + table.rows.len() * features.len() * 64);
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"as_of\":");
    out.extend_from_slice(digits.format(now).as_bytes());
    out.extend_from_slice(b",\"results\":[");
    for (i, row) in table.rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"entity\":");
        match &r.entities {
            EntityKeys::All(k) => write_str(&mut out, &k[i]),
            EntityKeys::ByType(m) => {
                let obj: serde_json::Map<String, Json> =
                    m.iter().map(|(t, k)| (t.clone(), Json::from(k.get(i).map_or("", String::as_str)))).collect();
                write_json(&mut out, &Json::Object(obj));
            }
        }
        out.extend_from_slice(b",\"features\":{");
        for (j, (name, s)) in features.iter().zip(row).enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_str(&mut out, name);
            out.extend_from_slice(b":{\"value\":");
            write_value(&mut out, &s.value);
            out.extend_from_slice(b",\"status\":\"");
            out.extend_from_slice(s.status.as_str().as_bytes());
            out.extend_from_slice(b"\",\"event_time_ms\":");
            match s.event_time_ms {
                Some(et) => out.extend_from_slice(digits.format(et).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]}");
    Ok(bytes_resp(StatusCode::OK, "application/json", out))
}

fn write_json(out: &mut Vec<u8>, v: &Json) {
    let _ = serde_json::to_writer(&mut *out, v);
}
