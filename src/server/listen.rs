//! The accept loop shared by the bridge and the vendor emulators: hyper-util's auto builder
//! (HTTP/1.1 and h2c), a header-read timeout, graceful shutdown bounded by a grace period.
//! The bridge serves its connections on its connection threads ([`Lanes`]); the emulators on
//! the runtime that runs the loop.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::lanes::Lanes;

/// Connections the kernel may hold for us before `accept` (capped by `net.core.somaxconn`).
/// tokio's `TcpListener::bind` asks for 1,024: a burst of 2,000 tills connecting at once would
/// then see dropped SYNs and a 1 s retransmit on top of their request.
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Binds `addr` for [`accept_loop`], with [`ACCEPT_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted bridge must not wait out TIME_WAIT of its previous run's connections.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

pub struct ListenOptions {
    /// Names the server in logs.
    pub name: &'static str,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Most connections served at once; beyond it, new ones wait in the accept queue.
    pub max_connections: usize,
    /// Connection threads (see [`Lanes`]); none: connections are served on the calling
    /// runtime.
    pub lanes: Option<Arc<Lanes>>,
}

/// How often, at most, reaching `max_connections` is logged.
const FULL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Serves `handler` on `listener` until `shutdown` resolves; then stops accepting and lets
/// in-flight requests finish for at most the grace period. A handler error drops the connection.
pub async fn accept_loop<H, Fut, E>(
    listener: TcpListener,
    options: ListenOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = options.name;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    // A connection holds its permit until it closes. Without one the loop does not accept: the
    // kernel keeps the connection queued (no memory of ours), instead of hyper's buffers for
    // every one of a burst of thousands.
    let open = Arc::new(Semaphore::new(
        options.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let mut full_logged: Option<Instant> = None;
    let lanes = options.lanes;
    loop {
        let permit = match open.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if full_logged.is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY) {
                    full_logged = Some(Instant::now());
                    tracing::warn!(
                        server = name,
                        max_connections = options.max_connections,
                        "connection limit reached: new connections wait in the accept queue"
                    );
                }
                tokio::select! {
                    permit = open.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(server = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let serve = move |stream: tokio::net::TcpStream| async move {
                    let _permit = permit;
                    let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service_fn(handler)).into_owned());
                    if let Err(e) = conn.await {
                        tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
                    }
                };
                match &lanes {
                    None => { tokio::spawn(serve(stream)); }
                    Some(lanes) => lanes.hand(stream, serve),
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        server = name,
        "shutting down: no new connections, waiting for in-flight requests"
    );
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            server = name,
            grace_ms = options.shutdown_grace.as_millis() as u64,
            "in-flight requests still running at the end of the grace period"
        );
    }
    if let Some(lanes) = &lanes {
        lanes.stop();
    }
    Ok(())
}
