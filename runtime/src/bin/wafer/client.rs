//! The CLI front of the control plane: `wafer deploy`, `wafer tenants …`, `wafer views …`
//! against a running server (HTTP/1.1, JSON).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};

#[derive(Args, Clone)]
pub struct Server {
    /// The Wafer server.
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

#[derive(Args)]
pub struct DeployArgs {
    #[command(flatten)]
    server: Server,
    /// Tenant API key.
    #[arg(long, env = "WAFER_API_KEY", hide_env_values = true)]
    key: String,
    /// Transform name.
    #[arg(long)]
    name: String,
    /// Upload without activating (activate later with `wafer views activate`).
    #[arg(long)]
    no_activate: bool,
    /// The component (.wasm).
    file: PathBuf,
}

#[derive(Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    server: Server,
    /// The admin token.
    #[arg(long, env = "WAFER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// List tenants, their quotas and key ids.
    List,
    /// Create a tenant; quotas as JSON, e.g. '{"requests_per_second": 500}'.
    Create {
        name: String,
        #[arg(long)]
        quotas: Option<String>,
    },
    /// Disable a tenant (its keys stop working on every node within a second).
    Disable { name: String },
    /// Enable a disabled tenant.
    Enable { name: String },
    /// Issue an API key (printed once).
    Key { name: String },
    /// Revoke an API key by id.
    Revoke { name: String, id: String },
}

#[derive(Args)]
pub struct ViewsArgs {
    #[command(flatten)]
    server: Server,
    /// Tenant API key.
    #[arg(long, env = "WAFER_API_KEY", hide_env_values = true)]
    key: String,
    #[command(subcommand)]
    command: ViewsCommand,
}

#[derive(Subcommand)]
enum ViewsCommand {
    /// List views.
    List,
    /// Create or replace a view from a JSON file ({"kind": "stream", ...manifest fields}).
    Put { name: String, file: PathBuf },
    /// Delete a view and its online data.
    Delete { name: String },
    /// List uploaded transforms and their versions.
    Transforms,
    /// Activate a transform version (hot swap; rollback to any earlier version).
    Activate { transform: String, version: String },
}

/// One request; prints the JSON response; exit 0 on 2xx, 1 otherwise.
fn request(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: Bytes,
) -> Result<ExitCode> {
    let rest = server.server.strip_prefix("http://").context("--server must be http://host:port")?;
    let authority = rest.trim_end_matches('/').to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, text) = rt.block_on(async {
        let stream =
            tokio::net::TcpStream::connect(&authority).await.with_context(|| format!("connecting to {authority}"))?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &authority)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Full::new(body))?;
        let resp = tx.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    })?;
    match serde_json::from_str::<Json>(&text) {
        Ok(j) => println!("{}", serde_json::to_string_pretty(&j)?),
        Err(_) => println!("{text}"),
    }
    if !status.is_success() {
        eprintln!("error: HTTP {status}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn json_body(j: &Json) -> Bytes {
    Bytes::from(j.to_string())
}

pub fn deploy(a: DeployArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let q = if a.no_activate { "?activate=false" } else { "" };
    request(&a.server, "PUT", &format!("/v1/transforms/{}{q}", a.name), &a.key, "application/wasm", Bytes::from(bytes))
}

pub fn tenants(a: TenantsArgs) -> Result<ExitCode> {
    let (s, t) = (&a.server, a.admin_token.as_str());
    let j = "application/json";
    match a.command {
        TenantsCommand::List => request(s, "GET", "/v1/admin/tenants", t, j, Bytes::new()),
        TenantsCommand::Create { name, quotas } => {
            let quotas: Json = match quotas {
                Some(q) => serde_json::from_str(&q).context("--quotas must be a JSON object")?,
                None => json!({}),
            };
            request(s, "POST", "/v1/admin/tenants", t, j, json_body(&json!({"name": name, "quotas": quotas})))
        }
        TenantsCommand::Disable { name } => {
            request(s, "PATCH", &format!("/v1/admin/tenants/{name}"), t, j, json_body(&json!({"disabled": true})))
        }
        TenantsCommand::Enable { name } => {
            request(s, "PATCH", &format!("/v1/admin/tenants/{name}"), t, j, json_body(&json!({"disabled": false})))
        }
        TenantsCommand::Key { name } => {
            request(s, "POST", &format!("/v1/admin/tenants/{name}/keys"), t, j, Bytes::new())
        }
        TenantsCommand::Revoke { name, id } => {
            request(s, "DELETE", &format!("/v1/admin/tenants/{name}/keys/{id}"), t, j, Bytes::new())
        }
    }
}

pub fn views(a: ViewsArgs) -> Result<ExitCode> {
    let (s, k) = (&a.server, a.key.as_str());
    let j = "application/json";
    match a.command {
        ViewsCommand::List => request(s, "GET", "/v1/views", k, j, Bytes::new()),
        ViewsCommand::Put { name, file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let v: Json = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            if !v.is_object() {
                bail!("{} must hold a JSON object", file.display());
            }
            request(s, "PUT", &format!("/v1/views/{name}"), k, j, json_body(&v))
        }
        ViewsCommand::Delete { name } => request(s, "DELETE", &format!("/v1/views/{name}"), k, j, Bytes::new()),
        ViewsCommand::Transforms => request(s, "GET", "/v1/transforms", k, j, Bytes::new()),
        ViewsCommand::Activate { transform, version } => request(
            s,
            "POST",
            &format!("/v1/transforms/{transform}/activate"),
            k,
            j,
            json_body(&json!({"version": version})),
        ),
    }
}
