//! Vendor calls through the proxy the environment names, as curl and reqwest read it:
//! `HTTPS_PROXY` for https:// vendors, `HTTP_PROXY` for http:// ones, `ALL_PROXY` for both,
//! `NO_PROXY` for hosts to reach directly (lower-case names too). An https:// vendor is reached
//! through an HTTP `CONNECT` tunnel, so TLS still runs end to end with the vendor and the proxy
//! sees only its host name; an http:// vendor gets its request in absolute form from the proxy.
//! Credentials in the proxy URL (`http://user:password@proxy:3128`) go as `Proxy-Authorization`.
//! Without these variables every call goes direct.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Scheme;
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which proxy, if any, each vendor URL goes through.
#[derive(Clone)]
pub struct Proxies {
    matcher: Arc<Matcher>,
    /// The proxy per vendor scheme, as `"https:// vendors through host:port"`, for the log (no
    /// credentials: the matcher keeps them apart from the address).
    configured: Vec<String>,
}

impl Proxies {
    /// From `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`. A proxy this client cannot
    /// speak to (SOCKS, or TLS to the proxy itself) is an error naming the variable, rather
    /// than calls that silently go direct or fail one by one.
    pub fn from_env() -> Result<Proxies, String> {
        Proxies::new(Matcher::from_env())
    }

    /// Proxies as a matcher built elsewhere (tests) says.
    pub fn new(matcher: Matcher) -> Result<Proxies, String> {
        let mut configured = Vec::new();
        for (scheme, variable) in [("https", "HTTPS_PROXY"), ("http", "HTTP_PROXY")] {
            // A host no NO_PROXY names (`.invalid` is reserved): the scheme's proxy, if any.
            let probe =
                Uri::from_maybe_shared(format!("{scheme}://vendor.invalid/")).expect("a valid URI");
            let Some(proxy) = matcher.intercept(&probe) else {
                continue;
            };
            if proxy.uri().scheme() != Some(&Scheme::HTTP) {
                return Err(format!(
                    "{variable} (or ALL_PROXY) names a {} proxy: vendor calls can go through an \
                     http:// proxy only",
                    proxy.uri().scheme_str().unwrap_or("non-HTTP")
                ));
            }
            let host = proxy.uri().authority().map_or("", |a| a.as_str());
            configured.push(format!("{scheme}:// vendors through {host}"));
        }
        Ok(Proxies {
            matcher: Arc::new(matcher),
            configured,
        })
    }

    /// Where vendor calls go when a proxy is set, for the start-up log.
    pub fn describe(&self) -> Option<String> {
        (!self.configured.is_empty()).then(|| self.configured.join(", "))
    }

    /// The proxy for `uri`, if one is set and `NO_PROXY` does not exempt the host. A vendor on
    /// this machine (`localhost`, a loopback address: an emulator, a sidecar) is always reached
    /// directly, as Go's HTTP client does; curl would need it in `NO_PROXY`.
    fn intercept(&self, uri: &Uri) -> Option<Intercept> {
        // The matcher first: with no proxy set it answers at once.
        let proxy = self.matcher.intercept(uri)?;
        let host = uri.host()?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        (!loopback).then_some(proxy)
    }

    /// The `Proxy-Authorization` a request to `uri` carries itself: only a plain-HTTP request
    /// sent to a forwarding proxy (a tunnel authenticates in its `CONNECT`).
    pub fn forward_auth(&self, uri: &Uri) -> Option<HeaderValue> {
        if uri.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        self.intercept(uri)?.basic_auth().cloned()
    }
}

/// Connects to a vendor directly, through a `CONNECT` tunnel, or to a forwarding proxy, as
/// [`Proxies`] says for its URL. TLS is layered on top by the HTTPS connector around it.
#[derive(Clone)]
pub struct ProxyConnector {
    direct: HttpConnector,
    proxies: Proxies,
}

impl ProxyConnector {
    pub fn new(direct: HttpConnector, proxies: Proxies) -> ProxyConnector {
        ProxyConnector { direct, proxies }
    }
}

/// A connection from [`ProxyConnector`]: a TCP stream that tells the client whether requests
/// on it must name their whole URL (a forwarding proxy's connection).
pub struct ProxyStream {
    io: TokioIo<TcpStream>,
    forwarding: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarding)
    }
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut direct = self.direct.clone();
        match self.proxies.intercept(&dst) {
            None => Box::pin(async move {
                Ok(ProxyStream {
                    io: direct.call(dst).await?,
                    forwarding: false,
                })
            }),
            Some(proxy) if dst.scheme() == Some(&Scheme::HTTPS) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    let io = tunnel.call(dst).await.map_err(|e| -> BoxError {
                        format!(
                            "proxy {}: {e}",
                            proxy.uri().authority().map_or("", |a| a.as_str())
                        )
                        .into()
                    })?;
                    Ok(ProxyStream {
                        io,
                        forwarding: false,
                    })
                })
            }
            Some(proxy) => {
                let at = proxy.uri().clone();
                Box::pin(async move {
                    Ok(ProxyStream {
                        io: direct.call(at).await?,
                        forwarding: true,
                    })
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{HttpUpstream, Upstream, UpstreamError, UpstreamRequest};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn through(proxy: &str) -> Proxies {
        Proxies::new(Matcher::builder().all(proxy).no("direct.example").build()).unwrap()
    }

    fn request(url: &str) -> UpstreamRequest {
        UpstreamRequest {
            step: "balance".into(),
            method: http::Method::POST,
            url: url.into(),
            headers: http::HeaderMap::new(),
            body: Some(b"{}".to_vec()),
            timeout: Duration::from_secs(5),
        }
    }

    /// Reads until the end of a request head (and the small body after it, if `body`).
    async fn read_head(conn: &mut TcpStream, body: &str) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got);
            if let Some(end) = text.find("\r\n\r\n")
                && text[end + 4..].len() >= body.len()
            {
                return text.into_owned();
            }
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                return text.into_owned();
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn an_http_vendor_is_asked_through_a_forwarding_proxy_with_its_credentials() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = format!("http://bridge:s%40cret@{}", listener.local_addr().unwrap());
        let seen = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let head = read_head(&mut conn, "{}").await;
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
            conn.write_all(answer.as_bytes()).await.unwrap();
            head
        });
        let upstream = HttpUpstream::with_proxies(through(&proxy)).unwrap();
        let answer = upstream
            .send(request("http://vendor.example:8080/get-balance?x=1"))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(&answer.body[..], br#"{"ok":true}"#);
        let head = seen.await.unwrap().to_ascii_lowercase();
        // The whole URL in the request line: the proxy needs to know where to forward it.
        assert!(
            head.starts_with("post http://vendor.example:8080/get-balance?x=1 http/1.1\r\n"),
            "{head}"
        );
        // "bridge:s@cret", percent-decoded from the URL, in base64 (lower-cased with the head).
        assert!(
            head.contains("proxy-authorization: basic ynjpzgdlonnay3jlda=="),
            "{head}"
        );
    }

    #[tokio::test]
    async fn an_https_vendor_is_reached_through_a_connect_tunnel_with_tls_inside() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = format!("http://bridge:secret@{}", listener.local_addr().unwrap());
        let seen = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let head = read_head(&mut conn, "").await;
            conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            // What comes through the tunnel: the client's TLS hello for the vendor.
            let mut hello = vec![0u8; 4096];
            let n = conn.read(&mut hello).await.unwrap();
            hello.truncate(n);
            (head, hello)
        });
        let upstream = HttpUpstream::with_proxies(through(&proxy)).unwrap();
        // The "vendor" behind this tunnel never answers the hello: the call fails, in time.
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            upstream.send(request("https://vendor.example/get-balance")),
        )
        .await
        .expect("the call ends within its own timeout")
        .unwrap_err();
        assert!(
            matches!(
                err,
                UpstreamError::Connect(_) | UpstreamError::Transport(_) | UpstreamError::Timeout
            ),
            "{err:?}"
        );
        let (head, hello) = seen.await.unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("connect vendor.example:443 http/1.1\r\n"),
            "{head}"
        );
        assert!(
            // "bridge:secret" in base64 (lower-cased with the rest of the head).
            head.contains("proxy-authorization: basic ynjpzgdlonnly3jlda=="),
            "{head}"
        );
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        let sni = b"vendor.example";
        assert!(
            hello.windows(sni.len()).any(|w| w == sni),
            "the hello names the vendor (SNI)"
        );
    }

    #[test]
    fn no_proxy_hosts_and_this_machine_are_reached_directly() {
        let proxies = through("http://user:pw@proxy.example:3128");
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let via = |s: &str| {
            proxies
                .intercept(&uri(s))
                .map(|p| p.uri().authority().unwrap().to_string())
        };
        assert_eq!(
            via("https://api.maxma.com/get-balance").as_deref(),
            Some("proxy.example:3128")
        );
        assert_eq!(via("https://direct.example/x"), None);
        assert_eq!(via("http://127.0.0.1:19321/x"), None);
        assert_eq!(via("http://localhost:8080/x"), None);
        assert_eq!(via("http://[::1]:8080/x"), None);
        // Credentials ride along only on plain-HTTP requests; a tunnel carries them itself.
        assert!(
            proxies
                .forward_auth(&uri("http://vendor.example/x"))
                .is_some()
        );
        assert!(
            proxies
                .forward_auth(&uri("https://vendor.example/x"))
                .is_none()
        );
        assert!(
            proxies
                .forward_auth(&uri("http://direct.example/x"))
                .is_none()
        );
        assert_eq!(
            proxies.describe().as_deref(),
            Some(
                "https:// vendors through proxy.example:3128, http:// vendors through proxy.example:3128"
            )
        );
        assert_eq!(
            Proxies::new(Matcher::builder().build()).unwrap().describe(),
            None
        );
    }

    #[test]
    fn a_proxy_this_client_cannot_speak_to_is_refused_at_start() {
        let err = Proxies::new(
            Matcher::builder()
                .https("socks5://proxy.example:1080")
                .build(),
        )
        .err()
        .expect("refused");
        assert!(
            err.contains("HTTPS_PROXY") && err.contains("socks5"),
            "{err}"
        );
        let err = Proxies::new(
            Matcher::builder()
                .http("https://proxy.example:3129")
                .build(),
        )
        .err()
        .expect("refused");
        assert!(err.contains("HTTP_PROXY") && err.contains("https"), "{err}");
    }
}
