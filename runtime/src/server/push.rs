//! `POST /v1/views/{view}/events`: HTTP-pushed events, processed synchronously (read-after-write).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::App;
use super::respond::{Resp, body, error, json_resp};
use crate::events::parse_line;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushRequest {
    events: Vec<Json>,
}

pub async fn push_events(app: &App, view: &str, req: Request<Incoming>) -> Resp {
    let Some(v) = app.views.get(view) else {
        return error(StatusCode::NOT_FOUND, "unknown_view", format!("no stream view `{view}`"));
    };
    let items = match body::<PushRequest>(req).await {
        Ok(b) => b.events,
        Err(r) => return r,
    };
    let mut events = Vec::with_capacity(items.len());
    let mut index = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_line(&item.to_string(), view, i as i64) {
            Ok(e) => {
                events.push(e);
                index.push(i);
            }
            Err(e) => failures.push(json!({"index": i, "code": "invalid_event", "error": e.to_string()})),
        }
    }
    v.metrics.events.add(&v.id, "invalid_event", failures.len() as u64);
    let outcome = match v.process(app.store.as_ref(), &events, None).await {
        Ok(o) => o,
        Err(e) => {
            v.metrics.store_errors.add(&v.id, "push", 1);
            return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("online store: {e}; nothing was written, retry"));
        }
    };
    for f in &outcome.failures {
        failures.push(json!({"index": index[f.index], "code": f.code, "error": f.message}));
    }
    failures.sort_by_key(|f| f["index"].as_u64());
    let accepted = events.len() - outcome.failures.len();
    json_resp(StatusCode::OK, &json!({"accepted": accepted, "rows": outcome.rows, "failed": failures}))
}
