//! Calls to the vendor's REST API: one pooled HTTP client (hyper-util on rustls/ring, gzip),
//! a per-call timeout, the request id propagated. Failures are typed ([`UpstreamError`]) so the
//! mapping's rules and the error module can tell a timeout from a refused connection.

pub mod breaker;
pub mod cluster;
pub mod limit;
pub mod proxy;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use proxy::{Proxies, ProxyConnector};
use thread_local::ThreadLocal;

type VendorClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

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
///
/// hyper-util's client under hyper-rustls, not reqwest: per call it parses the URL as an
/// `http::Uri` (no WHATWG URL and IDNA processing) and skips reqwest's middleware layers; at
/// saturation that was ~6 % of the bridge's CPU per recalc (`benches/results.md`). What reqwest
/// did for us is done here: the user agent, `Accept-Encoding: gzip` and inflating gzip answers,
/// the per-call timeout. Redirects are not followed: a vendor's 3xx is its answer, and a
/// request carrying credentials goes to no other host than the mapping's.
#[derive(Clone)]
pub struct HttpUpstream {
    connector: HttpsConnector<ProxyConnector>,
    /// One client, and so one connection pool, per worker thread: a pooled connection's task is
    /// spawned on the worker that opened it, so a call from the same worker usually finds its
    /// connection driven where it runs. (Kept from the connection threads, where it was needed;
    /// on the work-stealing runtime it was measured as built, not against one shared pool.)
    clients: Arc<ThreadLocal<VendorClient>>,
    proxies: Proxies,
}

/// Largest vendor answer read, after gzip decoding: a runaway answer fails the call instead of
/// the process's memory.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// reqwest (MoySklad's API client) is built without a default TLS crypto provider (ring
/// builds far faster than aws-lc): install ring before any client is built. Repeated calls are
/// harmless.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpUpstream {
    /// The client, through the proxy the environment names, if any ([`proxy`]).
    pub fn new() -> Result<HttpUpstream, String> {
        HttpUpstream::with_proxies(Proxies::from_env()?)
    }

    pub fn with_proxies(proxies: Proxies) -> Result<HttpUpstream, String> {
        install_crypto();
        let mut http = HttpConnector::new();
        http.enforce_http(false); // https:// goes through the TLS layer around it
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("cannot set up TLS for vendor calls: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::new(http, proxies.clone()));
        Ok(HttpUpstream {
            connector: https,
            clients: Arc::new(ThreadLocal::new()),
            proxies,
        })
    }

    /// Where vendor calls go when a proxy is set (for the start-up log).
    pub fn proxy_description(&self) -> Option<String> {
        self.proxies.describe()
    }

    async fn call(&self, request: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let uri: Uri = request
            .url
            .parse()
            .map_err(|_| UpstreamError::Transport("the vendor URL is not a valid URI".into()))?;
        let body = request.body.map(Bytes::from).unwrap_or_default();
        let proxy_auth = self.proxies.forward_auth(&uri);
        let mut outgoing = http::Request::new(Full::new(body));
        *outgoing.method_mut() = request.method;
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = request.headers;
        let headers = outgoing.headers_mut();
        for (name, value) in [
            (header::USER_AGENT, USER_AGENT),
            (header::ACCEPT, "*/*"),
            (header::ACCEPT_ENCODING, "gzip"),
        ] {
            headers
                .entry(name)
                .or_insert(HeaderValue::from_static(value));
        }
        if let Some(auth) = proxy_auth {
            headers.insert(header::PROXY_AUTHORIZATION, auth);
        }
        let client = self.clients.get_or(|| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(self.connector.clone())
        });
        let response = client.request(outgoing).await.map_err(classify)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| limit::retry_after(v, std::time::SystemTime::now()));
        let gzipped = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| UpstreamError::Transport(format!("reading the answer: {e}")))?
            .to_bytes();
        let body = if gzipped { inflate(&body)? } else { body };
        Ok(UpstreamResponse {
            status,
            body,
            retry_after,
        })
    }
}

const USER_AGENT: &str = concat!("loyalty-bridge/", env!("CARGO_PKG_VERSION"));

/// A gzip answer inflated, at most [`MAX_ANSWER_BYTES`].
fn inflate(body: &[u8]) -> Result<Bytes, UpstreamError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_ANSWER_BYTES));
    flate2::read::GzDecoder::new(body)
        .take(MAX_ANSWER_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| UpstreamError::Transport(format!("the answer's gzip is broken: {e}")))?;
    if out.len() > MAX_ANSWER_BYTES {
        return Err(UpstreamError::Transport(format!(
            "the answer is larger than {MAX_ANSWER_BYTES} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

impl Upstream for HttpUpstream {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        Box::pin(async move {
            let timeout = request.timeout;
            tokio::time::timeout(timeout, self.call(request))
                .await
                .unwrap_or(Err(UpstreamError::Timeout))
        })
    }
}

/// hyper's errors name no URL (a URL may carry a secret in its query); the causes are kept.
fn classify(err: hyper_util::client::legacy::Error) -> UpstreamError {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if err.is_connect() {
        UpstreamError::Connect(text)
    } else {
        UpstreamError::Transport(text)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A one-shot HTTP server: answers `head` + `body` to the first request and hands back
    /// what it received.
    async fn serve_once(head: String, body: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers and a small body arrive together on loopback; read until both are in.
            while !String::from_utf8_lossy(&got).contains("\r\n\r\n{}") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(&body).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, task)
    }

    fn post(url: &str, timeout: Duration) -> UpstreamRequest {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        UpstreamRequest {
            step: "s".into(),
            method: Method::POST,
            url: format!("{url}/v1/calc?x=1"),
            headers,
            body: Some(b"{}".to_vec()),
            timeout,
        }
    }

    #[tokio::test]
    async fn gzip_answers_are_inflated_and_the_request_says_who_and_what_it_accepts() {
        let answer = br#"{"bonuses": 12.50}"#;
        let packed = gzip(answer);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
            packed.len()
        );
        let (url, server) = serve_once(head, packed).await;
        let up = HttpUpstream::new().unwrap();
        let got = up.send(post(&url, Duration::from_secs(5))).await.unwrap();
        assert_eq!((got.status, &got.body[..]), (200, &answer[..]));
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("post /v1/calc?x=1 http/1.1\r\n"),
            "{request}"
        );
        for line in [
            "user-agent: loyalty-bridge/",
            "accept-encoding: gzip",
            "content-type: application/json",
            "content-length: 2",
        ] {
            assert!(request.contains(line), "{line} missing from {request}");
        }
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_cap_fails_the_call() {
        let packed = gzip(&vec![b' '; MAX_ANSWER_BYTES + 1]);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
            packed.len()
        );
        let (url, _server) = serve_once(head, packed).await;
        let up = HttpUpstream::new().unwrap();
        match up.send(post(&url, Duration::from_secs(5))).await {
            Err(UpstreamError::Transport(text)) => assert!(text.contains("larger"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn refused_connections_and_silent_vendors_are_told_apart() {
        let up = HttpUpstream::new().unwrap();
        // A port just freed: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = up
            .send(post(
                &format!("http://127.0.0.1:{port}"),
                Duration::from_secs(5),
            ))
            .await;
        assert!(
            matches!(refused, Err(UpstreamError::Connect(_))),
            "{refused:?}"
        );

        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let started = std::time::Instant::now();
        let timed_out = up.send(post(&url, Duration::from_millis(300))).await;
        assert_eq!(timed_out, Err(UpstreamError::Timeout));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(silent);
    }
}
