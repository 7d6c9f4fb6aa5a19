//! The CLI front of the control plane: `wafer deploy`, `wafer tenants …`, `wafer views …`
//! against a running server (HTTP/1.1, JSON), and the [`Client`] every command that talks to a
//! server uses (`wafer push` too).
//!
//! Credentials are optional on the command line (a manifest-mode server needs none); when the
//! server refuses one, or asks for one, the error says where it comes from (`--key` /
//! `$WAFER_API_KEY`, `--admin-token` / `$WAFER_ADMIN_TOKEN`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};

/// Which server a command talks to.
#[derive(Args, Clone)]
pub struct Server {
    /// The Wafer server.
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

impl Server {
    /// The server at `url` (`http://host:port`).
    pub fn new(url: impl Into<String>) -> Self {
        Self { server: url.into() }
    }
}

#[derive(Args)]
pub struct DeployArgs {
    #[command(flatten)]
    server: Server,
    /// Tenant API key (registry mode).
    #[arg(long, env = "WAFER_API_KEY", hide_env_values = true)]
    key: Option<String>,
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
    /// The admin token (registry mode).
    #[arg(long, env = "WAFER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
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
    /// Tenant API key (registry mode).
    #[arg(long, env = "WAFER_API_KEY", hide_env_values = true)]
    key: Option<String>,
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

/// Which credential a command sends, named in its errors: where it comes from.
#[derive(Clone, Copy)]
pub enum Credential {
    /// A tenant's API key (`--key`, `$WAFER_API_KEY`).
    ApiKey,
    /// The operator's token (`--admin-token`, `$WAFER_ADMIN_TOKEN`).
    AdminToken,
}

impl Credential {
    /// What to do when the server refused it, or it was not given.
    fn hint(self) -> &'static str {
        match self {
            Credential::ApiKey => {
                "pass the tenant's API key with --key or set WAFER_API_KEY (`wafer tenants key TENANT` issues one)"
            }
            Credential::AdminToken => "pass the operator's token with --admin-token or set WAFER_ADMIN_TOKEN",
        }
    }
}

/// A server's answer: status and body text.
pub struct Response {
    pub status: StatusCode,
    pub text: String,
}

impl Response {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Json> {
        serde_json::from_str(&self.text).ok()
    }

    /// What a non-2xx answer means, in one line: status, Wafer's error code and message, and
    /// for a refused credential where it comes from.
    pub fn refusal(&self, credential: Credential) -> String {
        let error = self.json().map(|j| j["error"].clone()).unwrap_or(Json::Null);
        let mut s = format!("HTTP {}", self.status);
        match (error["code"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => s.push_str(&format!(" {code}: {message}")),
            _ if !self.text.trim().is_empty() => s.push_str(&format!(": {}", self.text.trim())),
            _ => {}
        }
        if matches!(self.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            s.push_str(&format!("; {}", credential.hint()));
        }
        s
    }
}

/// Requests to one Wafer server (HTTP/1.1, a connection per request) with one credential.
pub struct Client {
    rt: tokio::runtime::Runtime,
    authority: String,
    token: Option<String>,
    credential: Credential,
}

impl Client {
    /// A client for `server`, sending `token` (if any) as `Authorization: Bearer`.
    pub fn new(server: &Server, token: Option<String>, credential: Credential) -> Result<Self> {
        let rest = server.server.strip_prefix("http://").context("--server must be http://host:port")?;
        let authority = rest.trim_end_matches('/').to_owned();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Self { rt, authority, token, credential })
    }

    /// The credential this client sends.
    pub fn credential(&self) -> Credential {
        self.credential
    }

    /// One request; any status is an answer (see [`Response::refusal`]), a failure to reach the
    /// server is an error.
    pub fn call(&self, method: &str, path: &str, content_type: &str, body: Bytes) -> Result<Response> {
        let authority = self.authority.as_str();
        self.rt.block_on(async {
            let stream = tokio::net::TcpStream::connect(authority)
                .await
                .with_context(|| format!("connecting to {authority}"))?;
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", authority)
                .header("content-type", content_type);
            if let Some(token) = &self.token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let resp = tx.send_request(req.body(Full::new(body))?).await.with_context(|| format!("{method} {path}"))?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(Response { status, text: String::from_utf8_lossy(&bytes).into_owned() })
        })
    }
}

/// One request; prints the JSON response; exit 0 on 2xx, 1 otherwise.
fn request(client: &Client, method: &str, path: &str, content_type: &str, body: Bytes) -> Result<ExitCode> {
    print_answer(client, client.call(method, path, content_type, body)?)
}

/// Print an answer's JSON (or text) on stdout, and a refusal's meaning on stderr: exit 0 on 2xx,
/// 1 otherwise.
fn print_answer(client: &Client, resp: Response) -> Result<ExitCode> {
    match resp.json() {
        Some(j) => println!("{}", serde_json::to_string_pretty(&j)?),
        None => println!("{}", resp.text),
    }
    if !resp.status.is_success() {
        eprintln!("error: {}", resp.refusal(client.credential()));
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
    let client = Client::new(&a.server, a.key, Credential::ApiKey)?;
    let activity = crate::progress::start(format!(
        "uploading {} ({}) to {}: the server validates and compiles it (a Python component takes 10-20 s)",
        a.file.display(),
        indicatif::HumanBytes(bytes.len() as u64),
        a.server.server
    ));
    let resp = client.call("PUT", &format!("/v1/transforms/{}{q}", a.name), "application/wasm", Bytes::from(bytes));
    drop(activity);
    print_answer(&client, resp?)
}

pub fn tenants(a: TenantsArgs) -> Result<ExitCode> {
    let s = &Client::new(&a.server, a.admin_token, Credential::AdminToken)?;
    let j = "application/json";
    match a.command {
        TenantsCommand::List => request(s, "GET", "/v1/admin/tenants", j, Bytes::new()),
        TenantsCommand::Create { name, quotas } => {
            let quotas: Json = match quotas {
                Some(q) => serde_json::from_str(&q).context("--quotas must be a JSON object")?,
                None => json!({}),
            };
            request(s, "POST", "/v1/admin/tenants", j, json_body(&json!({"name": name, "quotas": quotas})))
        }
        TenantsCommand::Disable { name } => {
            request(s, "PATCH", &format!("/v1/admin/tenants/{name}"), j, json_body(&json!({"disabled": true})))
        }
        TenantsCommand::Enable { name } => {
            request(s, "PATCH", &format!("/v1/admin/tenants/{name}"), j, json_body(&json!({"disabled": false})))
        }
        TenantsCommand::Key { name } => request(s, "POST", &format!("/v1/admin/tenants/{name}/keys"), j, Bytes::new()),
        TenantsCommand::Revoke { name, id } => {
            request(s, "DELETE", &format!("/v1/admin/tenants/{name}/keys/{id}"), j, Bytes::new())
        }
    }
}

pub fn views(a: ViewsArgs) -> Result<ExitCode> {
    let s = &Client::new(&a.server, a.key, Credential::ApiKey)?;
    let j = "application/json";
    match a.command {
        ViewsCommand::List => request(s, "GET", "/v1/views", j, Bytes::new()),
        ViewsCommand::Put { name, file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let v: Json = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            if !v.is_object() {
                bail!("{} must hold a JSON object", file.display());
            }
            request(s, "PUT", &format!("/v1/views/{name}"), j, json_body(&v))
        }
        ViewsCommand::Delete { name } => request(s, "DELETE", &format!("/v1/views/{name}"), j, Bytes::new()),
        ViewsCommand::Transforms => request(s, "GET", "/v1/transforms", j, Bytes::new()),
        ViewsCommand::Activate { transform, version } => {
            let body = json_body(&json!({"version": version}));
            request(s, "POST", &format!("/v1/transforms/{transform}/activate"), j, body)
        }
    }
}
