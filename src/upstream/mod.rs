//! Calls to the vendor's REST API: one pooled HTTP client (reqwest on rustls/ring, gzip),
//! a per-call timeout, the request id propagated. Failures are typed ([`UpstreamError`]) so the
//! mapping's rules and the error module can tell a timeout from a refused connection.

pub mod breaker;
pub mod limit;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

/// One upstream HTTP call, fully built (URL encoded, headers set).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    /// The mapping step that makes the call (for logs, rules and canned answers).
    pub step: String,
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamResponse {
    pub status: u16,
    pub body: Bytes,
    /// The vendor's `Retry-After`, read when the answer arrived (`None`: absent or unreadable).
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("timed out")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("transport error: {0}")]
    Transport(String),
    /// The tenant's circuit breaker is open: the vendor failed repeatedly just now.
    #[error("circuit open for {retry_ms} ms more")]
    CircuitOpen { retry_ms: u64 },
    /// Our own rate limit for the tenant would have made the call wait too long.
    #[error("tenant rate limit: a permit was {wait_ms} ms away")]
    Throttled { wait_ms: u64 },
}

impl UpstreamError {
    /// Short name exposed to mapping rules as `.step.error`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Timeout => "timeout",
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Transport(_) => "transport",
            UpstreamError::Throttled { .. } => "throttled",
            UpstreamError::CircuitOpen { .. } => "circuit_open",
        }
    }
}

pub type UpstreamFuture<'a> =
    Pin<Box<dyn Future<Output = Result<UpstreamResponse, UpstreamError>> + Send + 'a>>;

/// Whatever sends upstream calls: the real HTTP client, or canned answers in golden examples.
pub trait Upstream: Send + Sync {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_>;
}

/// The real client, shared by all tenants (connections are pooled per host).
#[derive(Clone)]
pub struct HttpUpstream {
    client: reqwest::Client,
}

/// reqwest is built without a default TLS crypto provider (ring builds far faster than
/// aws-lc): install ring before any client is built. Repeated calls are harmless.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpUpstream {
    pub fn new() -> Result<HttpUpstream, String> {
        install_crypto();
        let client = reqwest::Client::builder()
            .user_agent(concat!("loyalty-bridge/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpUpstream { client })
    }
}

impl Upstream for HttpUpstream {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        Box::pin(async move {
            let mut builder = self
                .client
                .request(request.method, &request.url)
                .headers(request.headers)
                .timeout(request.timeout);
            if let Some(body) = request.body {
                builder = builder.body(body);
            }
            let response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| limit::retry_after(v, std::time::SystemTime::now()));
            let body = response.bytes().await.map_err(classify)?;
            Ok(UpstreamResponse {
                status,
                body,
                retry_after,
            })
        })
    }
}

fn classify(err: reqwest::Error) -> UpstreamError {
    if err.is_timeout() {
        UpstreamError::Timeout
    } else if err.is_connect() {
        UpstreamError::Connect(without_url(&err))
    } else {
        UpstreamError::Transport(without_url(&err))
    }
}

/// reqwest's messages include the URL; a URL may carry a secret in its query, so drop it.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<vendor>");
    }
    text
}

/// Counts the calls made through it (the access log reports them per request).
pub struct Counted<'a> {
    pub inner: &'a dyn Upstream,
    pub calls: &'a std::sync::atomic::AtomicU32,
}

impl Upstream for Counted<'_> {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.send(request)
    }
}
