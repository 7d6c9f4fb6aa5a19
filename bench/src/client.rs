//! A minimal keep-alive HTTP/1.1 client connection (hyper), one request at a time.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

pub struct Conn {
    tx: SendRequest<Full<Bytes>>,
    authority: String,
    auth: Option<String>,
}

impl Conn {
    pub async fn open(port: u16) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.context("connecting to wafer")?;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { tx, authority: format!("127.0.0.1:{port}"), auth: None })
    }

    /// Send `Authorization: Bearer <key>` with every request.
    pub fn auth(&mut self, key: &str) {
        self.auth = Some(format!("Bearer {key}"));
    }

    /// POST a JSON body; returns the response body (errors on a non-200).
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<Bytes> {
        let req = hyper::Request::post(path).header("content-type", "application/json");
        self.send(req, body).await
    }

    /// GET a path; returns the response body (errors on a non-200).
    pub async fn get(&mut self, path: &str) -> Result<Bytes> {
        self.send(hyper::Request::get(path), Bytes::new()).await
    }

    async fn send(&mut self, req: hyper::http::request::Builder, body: Bytes) -> Result<Bytes> {
        let mut req = req.header("host", &self.authority);
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(body))?;
        self.tx.ready().await?;
        let resp = self.tx.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(bytes)
    }
}
