//! Feast's feature-server routes (protocol in [`crate::serving::feast`]): `POST
//! /get-online-features`, `POST /write-to-online-store`, `POST /push`; `GET /health` is answered
//! in [`super::route`] without credentials, as Feast answers it.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::error::ApiError;
use super::respond::{Resp, body_bytes, bytes_resp, json_resp};
use crate::node::Node;
use crate::serving::feast::{self, FeastError, FeastRequest, PushRequest, WriteRequest};
use crate::tenant::TenantApp;

/// A Feast error (counted by Wafer's code).
fn feast_error(app: &Node, tenant: &TenantApp, e: FeastError) -> ApiError {
    app.metrics.serve_errors.add(&tenant.name, e.code, 1);
    ApiError::Feast(e)
}

/// Parse a Feast request body; a body that is not JSON or not the model is 422 with FastAPI's
/// `{"detail": [...]}`, as Feast answers it.
async fn feast_body<T: serde::de::DeserializeOwned>(
    app: &Node,
    tenant: &TenantApp,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let bytes = body_bytes(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let (kind, code) =
            if e.is_data() { ("value_error", "invalid_request") } else { ("json_invalid", "invalid_json") };
        app.metrics.serve_errors.add(&tenant.name, code, 1);
        ApiError::FeastBody { kind, code, message: e.to_string() }
    })
}

/// `POST /get-online-features`.
pub async fn get_online_features(app: &Node, tenant: &TenantApp, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: FeastRequest = feast_body(app, tenant, req).await?;
    let t = r.as_of.unwrap_or_else(crate::time::now_ms);
    let full = r.full_feature_names;
    let result = async {
        let parsed = feast::parse(&tenant.catalog, r)?;
        let table = feast::serve(&tenant.catalog, app.store.as_ref(), &parsed, t).await?;
        Ok::<_, crate::serving::ServeError>(feast::response(&parsed, &table, full))
    }
    .await;
    match result {
        Ok(body) => Ok(bytes_resp(StatusCode::OK, "application/json", body)),
        Err(e) => Err(feast_error(app, tenant, FeastError::from(&e))),
    }
}

/// `POST /write-to-online-store`: a batch view's rows, or a stream view's events.
pub async fn write_to_online_store(app: &Node, tenant: &TenantApp, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: WriteRequest = feast_body(app, tenant, req).await?;
    write_view(app, tenant, &r.feature_view_name, &r.df, || FeastError::view_not_found(&r.feature_view_name)).await
}

/// `POST /push`: the push source names the view (`to` must include the online store).
pub async fn push(app: &Node, tenant: &TenantApp, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: PushRequest = feast_body(app, tenant, req).await?;
    match r.to.as_str() {
        "online" => {}
        "offline" | "online_and_offline" => {
            let e = FeastError::invalid(
                "unsupported_push_mode",
                format!("push to `{}`: Wafer has no offline store for pushes; push with to=\"online\"", r.to),
            );
            return Err(feast_error(app, tenant, e));
        }
        other => {
            let e = FeastError::invalid(
                "invalid_request",
                format!(
                    "{other} is not a supported push format. Please specify one of these ['online', 'offline', 'online_and_offline']."
                ),
            );
            return Err(feast_error(app, tenant, e));
        }
    }
    write_view(app, tenant, &r.push_source_name, &r.df, || FeastError::push_source_not_found(&r.push_source_name)).await
}

async fn write_view(
    app: &Node,
    tenant: &TenantApp,
    name: &str,
    df: &feast::Df,
    not_found: impl FnOnce() -> FeastError,
) -> Result<Resp, ApiError> {
    let now = crate::time::now_ms();
    if let Some(v) = tenant.views.get(name) {
        let events = feast::df_events(df, name, now).map_err(|e| feast_error(app, tenant, e))?;
        let index: Vec<usize> = (0..events.len()).collect();
        return super::push::ingest(app, &tenant.name, v, name, &events, &index, Vec::new(), None).await;
    }
    if let Some(v) = tenant.catalog.stored_view(name) {
        let rows = feast::df_rows(df, &v.spec.entity, &v.spec.latest, now).map_err(|e| feast_error(app, tenant, e))?;
        let quota = tenant.store_quota.as_ref();
        return match crate::materialize::write_rows(app.store.as_ref(), &v.id, &v.spec, &rows, quota).await {
            Ok((outcome, ops)) => {
                let mut body = json!({"rows": rows.len()});
                if !outcome.refused.is_empty() {
                    count_refused(app, &tenant.name, &v.id, outcome.refused.len());
                    let keys = outcome.refused.iter().map(|i| ops[*i].entity.as_str());
                    body["refused"] = super::push::refused_body(quota.map(|q| q.max()), outcome.refused.len(), keys);
                }
                Ok(json_resp(StatusCode::OK, &body))
            }
            Err(e) => {
                // Batch rows are latest values (the newest event time wins), so a retry never
                // double-applies: only whether part was written differs.
                let (code, what) = if e.outcome_unknown() {
                    ("store_outcome_unknown", "the rows may have been written in part; retrying is safe")
                } else {
                    ("store_unavailable", "nothing was written, retry")
                };
                let e = FeastError {
                    status: 503,
                    class: "FeastError",
                    message: format!("online store: {e}; {what}"),
                    code,
                };
                Err(feast_error(app, tenant, e))
            }
        };
    }
    if tenant.catalog.is_request_view(name) {
        let e = FeastError::invalid(
            "not_writable",
            format!("`{name}` is a request view: it is computed at request time and stores nothing"),
        );
        return Err(feast_error(app, tenant, e));
    }
    Err(feast_error(app, tenant, not_found()))
}

/// Count a batch write's entities refused by the tenant's store quota (as stream views do).
fn count_refused(app: &Node, tenant: &str, view_id: &str, n: usize) {
    app.metrics.quota_exceeded.add(tenant, "max_stored_entities", 1);
    app.metrics.quota_refused_entities.add(view_id, "max_stored_entities", n as u64);
}
