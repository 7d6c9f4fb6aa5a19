//! `wafer materialize --server URL --key KEY --view V --from FILE`: load a batch view through a
//! running server, so a registry tenant (whose views live in the registry, not in a manifest)
//! loads its data with nothing but its key.
//!
//! The view's entity and feature types come from `GET /v1/views`; the file is read here with
//! the same readers as a local load (Parquet, CSV, JSONL; bad rows reported with their row
//! number and skipped), and each chunk of rows is one `POST /write-to-online-store`. A chunk the
//! server could not write for now (503, 429, a timed-out write) is sent again after a pause:
//! writes keep the newest event time per entity and feature, so a chunk applied twice changes
//! nothing. Unlike a local load it does not resume from a row number: a rerun sends every row
//! again (and changes nothing already loaded).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Map, Value as Json, json};
use wafer_runtime::bindings::types::{FeatureRow, ValueType};
use wafer_runtime::materialize::Columns;
use wafer_runtime::transform::json_out::value_to_json;
use wafer_runtime::view::{SourceFormat, batch};

use crate::client::{Client, Credential, Server};

/// Attempts per chunk while the server answers "not now".
const ATTEMPTS: u32 = 8;

/// Bad rows printed (all are counted).
const SHOWN_ERRORS: usize = 10;

/// One remote load.
pub struct Remote {
    pub server: String,
    pub key: Option<String>,
    pub view: String,
    pub file: PathBuf,
    pub entity_column: Option<String>,
    pub timestamp_column: String,
    pub rows_per_request: usize,
    pub quiet: bool,
}

/// The batch view as the server describes it.
struct ViewInfo {
    entity: String,
    features: Vec<(String, ValueType)>,
}

impl Remote {
    pub fn run(self) -> Result<ExitCode> {
        let client = Client::new(&Server::new(&self.server), self.key.clone(), Credential::ApiKey)?;
        let view = self.view_info(&client)?;
        let format = SourceFormat::of_path(&self.file).with_context(|| {
            format!("{}: the format comes from the extension (.parquet, .csv, .jsonl)", self.file.display())
        })?;
        let columns = Columns {
            entity: self.entity_column.clone().unwrap_or_else(|| view.entity.clone()),
            timestamp: self.timestamp_column.clone(),
            features: view.features.clone(),
        };
        let mut rows = wafer_runtime::materialize::source::open(&self.file, format, columns)
            .with_context(|| format!("opening {}", self.file.display()))?;
        let started = Instant::now();
        let (mut loaded, mut bad, mut requests) = (0u64, 0u64, 0u64);
        while let Some(chunk) = rows.next_chunk(self.rows_per_request)? {
            for e in &chunk.errors {
                if (bad as usize) < SHOWN_ERRORS {
                    eprintln!("  row {}: {}", e.row, e.message);
                }
                bad += 1;
            }
            if chunk.rows.is_empty() {
                continue;
            }
            self.send(&client, &view, &chunk.rows)?;
            loaded += chunk.rows.len() as u64;
            requests += 1;
            if !self.quiet {
                eprint!("\r{loaded} rows sent");
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if !self.quiet {
            eprintln!();
        }
        eprintln!(
            "materialized `{}` from {} through {}: {loaded} rows loaded in {requests} requests, {bad} bad, in {secs:.2}s ({:.0} rows/s)",
            self.view,
            self.file.display(),
            self.server,
            loaded as f64 / secs.max(1e-9)
        );
        Ok(if bad > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    }

    /// The view's entity and features, from `GET /v1/views`.
    fn view_info(&self, client: &Client) -> Result<ViewInfo> {
        let resp = client.call("GET", "/v1/views", "application/json", Bytes::new())?;
        if !resp.status.is_success() {
            bail!("listing the views of {}: {}", self.server, resp.refusal(client.credential()));
        }
        let listed = resp.json().context("GET /v1/views did not answer JSON")?;
        let views = listed["views"].as_array().cloned().unwrap_or_default();
        let Some(v) = views.iter().find(|v| v["name"] == self.view.as_str()) else {
            let names: Vec<&str> = views.iter().filter_map(|v| v["name"].as_str()).collect();
            bail!("{} has no view `{}` (views: {})", self.server, self.view, names.join(", "));
        };
        if v["kind"] != "batch" {
            bail!(
                "view `{}` is a {} view: only batch views are materialized (push a stream view's events with `wafer push`)",
                self.view,
                v["kind"].as_str().unwrap_or("?")
            );
        }
        let entity = v["entity"].as_str().context("the view has no entity")?.to_owned();
        let mut features = Vec::new();
        for f in v["features"].as_array().into_iter().flatten() {
            let name = f["name"].as_str().context("a feature without a name")?;
            let ty = batch::feature_type(f["type"].as_str().unwrap_or(""))
                .with_context(|| format!("feature `{name}` has type {}, not a batch type", f["type"]))?;
            features.push((name.to_owned(), ty));
        }
        Ok(ViewInfo { entity, features })
    }

    /// Write one chunk, again after a pause while the server answers "not now".
    fn send(&self, client: &Client, view: &ViewInfo, rows: &[FeatureRow]) -> Result<()> {
        let body = Bytes::from(write_request(&self.view, view, rows).to_string());
        let mut pause = Duration::from_millis(250);
        for attempt in 1..=ATTEMPTS {
            let resp = client.call("POST", "/write-to-online-store", "application/json", body.clone());
            let retry = match &resp {
                Ok(r) if r.status.is_success() => return Ok(()),
                Ok(r) => matches!(
                    r.status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS | StatusCode::GATEWAY_TIMEOUT
                ),
                // Not reached (connection refused or reset): the server may be restarting.
                Err(_) => true,
            };
            if !retry || attempt == ATTEMPTS {
                return match resp {
                    Ok(r) => Err(anyhow::anyhow!(
                        "writing rows of `{}`: {} (rows before this chunk were written)",
                        self.view,
                        feast_refusal(&r.text).unwrap_or_else(|| r.refusal(client.credential()))
                    )),
                    Err(e) => Err(e.context(format!("writing rows of `{}` to {}", self.view, self.server))),
                };
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(8));
        }
        unreachable!("the last attempt returns")
    }
}

/// Feast's write body for `rows`: `{"feature_view_name", "df": {column: [...]}}` with the join
/// key column named as the view's entity and the event time as integer ms.
fn write_request(name: &str, view: &ViewInfo, rows: &[FeatureRow]) -> Json {
    let mut df = Map::new();
    df.insert(view.entity.clone(), rows.iter().map(|r| Json::String(r.entity_key.clone())).collect());
    df.insert("event_timestamp".into(), rows.iter().map(|r| json!(r.event_time_ms)).collect());
    for (i, (feature, _)) in view.features.iter().enumerate() {
        let column: Vec<Json> =
            rows.iter().map(|r| r.features.get(i).map_or(Json::Null, |f| value_to_json(&f.value))).collect();
        df.insert(feature.clone(), Json::Array(column));
    }
    json!({"feature_view_name": name, "df": df})
}

/// The message of a Feast-shaped error body (a JSON string holding `{"message", …}`).
fn feast_refusal(text: &str) -> Option<String> {
    let inner: String = serde_json::from_str(text).ok()?;
    let detail: Json = serde_json::from_str(&inner).ok()?;
    Some(format!("{}: {}", detail["class"].as_str()?, detail["message"].as_str()?))
}
