//! Serving an emulator: hyper-util's auto builder (HTTP/1.1 and h2c) on a listener the caller
//! bound, until a shutdown future resolves, then a bounded graceful stop. No connection
//! hardening (limits, idle eviction): an emulator serves whatever a test or a demo opens.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::http::DroppedConnection;

/// How long in-flight requests may run after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// An HTTP/1.1 connection must complete each request head within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `handler` on `listener` until `shutdown` resolves; then stops accepting and gives
/// in-flight requests up to 5 s to finish. A handler's [`DroppedConnection`] closes the
/// connection without an answer. `name` names the emulator in logs.
pub(crate) async fn serve<H, Fut>(
    listener: TcpListener,
    name: &'static str,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, DroppedConnection>> + Send + 'static,
{
    tracing::debug!(addr = %listener.local_addr()?, emulator = name, "listening");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(emulator = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let conn = builder
            .serve_connection(TokioIo::new(stream), service_fn(handler))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(emulator = name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        emulator = name,
        "shutting down: no new connections, waiting for in-flight requests"
    );
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            emulator = name,
            "in-flight requests still running at the end of the grace period"
        );
    }
    Ok(())
}
