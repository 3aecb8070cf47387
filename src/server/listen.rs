//! The bridge's accept loop: hyper-util's auto builder
//! (HTTP/1.1 and h2c), graceful shutdown bounded by a grace period, and the connection
//! policy that keeps a stranger from holding the server shut:
//!
//! - a connection that has not completed a request head within `header_read_timeout` of
//!   being accepted is closed, whatever its protocol (a silent one is still being sniffed for
//!   HTTP/1 or h2 and hyper's own HTTP/1 timeout does not cover it; an h2c one that sent its
//!   preface but no request neither);
//! - a connection with no request in progress for `idle_timeout` is closed (h2: GOAWAY, then
//!   close);
//! - when `max_connections` are open, the one idle the longest is closed to admit the new one,
//!   as nginx does under `worker_connections` pressure (answered kept-alive ones first, never
//!   one whose request waits unread), and HTTP/1 answers say `Connection: close` while one
//!   waits; only when every connection has a request in progress do new ones wait in the
//!   kernel's accept queue.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

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

/// The client's address, in every request's extensions (rate limits by address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The whole raw HTTP/1.1 answer the server gives instead of hyper's own body-less one when
/// hyper refuses a request head (400, 414, 431, …), by status code; `None` keeps hyper's.
pub type HeadErrorAnswer = fn(u16) -> Option<Bytes>;

pub struct ListenOptions {
    /// Names the server in logs.
    pub name: &'static str,
    /// Time from accepting a connection to its first complete request head; for HTTP/1.1
    /// also hyper's limit on reading each later head.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Most connections served at once; beyond it, the one idle the longest is closed, or,
    /// when all are busy, new ones wait in the accept queue.
    pub max_connections: usize,
    /// See [`HeadErrorAnswer`].
    pub head_error_answer: Option<HeadErrorAnswer>,
}

/// How often, at most, reaching `max_connections` is logged.
const FULL_LOG_EVERY: Duration = Duration::from_secs(60);

/// How long a connection must have been without a request in progress before it may be
/// closed to admit a new one: one just accepted in a burst has its request on the way.
const EVICT_MIN_IDLE: Duration = Duration::from_millis(100);

/// [`EVICT_MIN_IDLE`] while other connections have requests in progress: their answers make
/// room (see `crowded` in [`accept_loop`]), and closing an idle connection races its client,
/// which may be writing its (first or next) request just then. With no request in progress
/// anywhere (a stranger's flood of silent connections) [`EVICT_MIN_IDLE`] applies.
const EVICT_MIN_WHILE_BUSY: Duration = Duration::from_secs(1);

/// How long a connection asked to close (idle, or to admit a new one) may take to say
/// goodbye (h2's GOAWAY, a response still being written) before it is dropped. A request in
/// progress is never cut: its own deadline bounds it.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

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
    tokio::pin!(shutdown);
    // A connection holds its permit until it closes. While none is free the loop holds the one
    // connection it accepted and accepts no more: the kernel keeps the rest queued (no memory
    // of ours), instead of hyper's buffers for every one of a burst of thousands.
    let open = Arc::new(Semaphore::new(
        options.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let conns = Arc::new(Conns::new());
    let timeouts = Timeouts {
        first_head: options.header_read_timeout,
        idle: options.idle_timeout,
    };
    let mut full_logged: Option<Instant> = None;
    // Set when a connection had to wait for room, until one finds room at once: answers then
    // end their HTTP/1 connection (`Connection: close`), which frees a place without the race
    // of closing an idle kept-alive connection under a client that is just sending its next
    // request on it. Between two waits of a burst it stays set (a keep-alive answer there was
    // such a race's start).
    let crowded = Arc::new(AtomicBool::new(false));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A connection waits for its permit here, holding only its socket, while the rest
        // queue in the kernel.
        let permit = match open.clone().try_acquire_owned() {
            Ok(permit) => {
                crowded.store(false, Ordering::Relaxed);
                permit
            }
            Err(_) => {
                if full_logged.is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY) {
                    full_logged = Some(Instant::now());
                    tracing::warn!(
                        server = name,
                        max_connections = options.max_connections,
                        "connection limit reached: the connection idle the longest is closed to admit a new one; while all are busy, new ones wait"
                    );
                }
                crowded.store(true, Ordering::Relaxed);
                let waited = tokio::select! {
                    permit = wait_for_room(&open, &conns) => permit,
                    () = &mut shutdown => None,
                };
                match waited {
                    Some(permit) => permit,
                    None => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let crowded = crowded.clone();
        let builder = builder.clone();
        #[cfg(unix)]
        let registered = conns.register(std::os::fd::AsRawFd::as_raw_fd(&stream));
        #[cfg(not(unix))]
        let registered = conns.register();
        let head_error_answer = options.head_error_answer;
        tokio::spawn(async move {
            let _permit = permit;
            let state = registered.state.clone();
            let service = {
                let state = state.clone();
                service_fn(move |mut req: Request<Incoming>| {
                    let turn = state.request_started();
                    req.extensions_mut().insert(ClientAddr(peer));
                    // HTTP/2 has no `Connection` header (and shares one connection anyway).
                    let http1 = req.version() < http::Version::HTTP_2;
                    let answer = handler(req);
                    let crowded = crowded.clone();
                    async move {
                        let mut answer = answer.await;
                        if let Ok(response) = &mut answer {
                            if http1 && crowded.load(Ordering::Relaxed) {
                                response.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                        }
                        drop(turn);
                        answer
                    }
                })
            };
            let io = HeadErrors::new(stream, head_error_answer);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            if let Err(e) = supervise(conn, &state, timeouts).await {
                tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
            }
            drop(registered);
        });
    }
    drop(listener);
    tracing::info!(
        server = name,
        "shutting down: no new connections, waiting for in-flight requests"
    );
    if tokio::time::timeout(options.shutdown_grace, conns.shut_down())
        .await
        .is_err()
    {
        tracing::warn!(
            server = name,
            grace_ms = options.shutdown_grace.as_millis() as u64,
            "in-flight requests still running at the end of the grace period"
        );
    }
    Ok(())
}

/// A permit for one more connection once there is room: closes the connection idle the
/// longest (at least [`EVICT_MIN_IDLE`]) to make it, or waits for one to close.
async fn wait_for_room(
    open: &Arc<Semaphore>,
    conns: &Conns,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let mut asked = conns.close_longest_idle();
    loop {
        tokio::select! {
            permit = open.clone().acquire_owned() => return permit.ok(),
            // None was idle long enough yet: look again.
            () = tokio::time::sleep(EVICT_MIN_IDLE), if !asked => {
                asked = conns.close_longest_idle();
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Timeouts {
    first_head: Duration,
    idle: Duration,
}

/// Serves one connection until it ends, closing it when it idles too long or is asked to.
async fn supervise<C>(conn: C, state: &ConnState, timeouts: Timeouts) -> Result<(), String>
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let mut timer = pin!(tokio::time::sleep(timeouts.first_head));
    let mut asked = pin!(state.asked.notified());
    // Whether the connection is saying goodbye (graceful shutdown started).
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            ended = conn.as_mut() => return ended.map_err(|e| e.to_string()),
            () = &mut asked => {
                asked.set(state.asked.notified());
                if !closing {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                // At shutdown, the accept loop's grace period bounds the goodbye.
                let limit = if state.shutting_down.load(Ordering::Relaxed) {
                    Duration::from_secs(24 * 3600)
                } else {
                    CLOSE_GRACE
                };
                timer.as_mut().reset(tokio::time::Instant::now() + limit);
            }
            () = &mut timer => {
                let now = tokio::time::Instant::now();
                if state.active.load(Ordering::Acquire) > 0 {
                    // Busy: look again later (a request is bounded by its own deadline).
                    let again = if closing { CLOSE_GRACE } else { timeouts.idle };
                    timer.as_mut().reset(now + again);
                    continue;
                }
                if closing {
                    return Ok(()); // the goodbye took too long: drop it
                }
                let idle_for = state.idle_for();
                let limit = if state.served.load(Ordering::Relaxed) {
                    timeouts.idle
                } else {
                    timeouts.first_head
                };
                if idle_for >= limit {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    timer.as_mut().reset(now + CLOSE_GRACE);
                } else {
                    timer.as_mut().reset(now + (limit - idle_for));
                }
            }
        }
    }
}

/// What the accept loop knows of one open connection.
struct ConnState {
    /// Requests being handled now.
    active: AtomicU32,
    /// Whether a request head has ever arrived.
    served: AtomicBool,
    /// When the connection last had no request in progress (accepted, or its last answer):
    /// microseconds since [`Conns::epoch`].
    idle_since: AtomicU64,
    /// Set by the accept loop to ask the connection to close.
    asked: Notify,
    shutting_down: AtomicBool,
    /// Asked to close to admit a new connection (not to be chosen again).
    evicted: AtomicBool,
    /// tokio's clock, as the timers that read these times use (tests may pause it).
    epoch: tokio::time::Instant,
    /// The connection's socket, to ask the kernel whether bytes wait in it
    /// ([`waiting_to_be_read`]). Read-only use: once the connection has closed, the number may
    /// name another socket until this state is dropped, which at worst spares one connection
    /// from eviction once.
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
}

impl ConnState {
    fn now_micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn idle_for(&self) -> Duration {
        let since = self.idle_since.load(Ordering::Relaxed);
        Duration::from_micros(self.now_micros().saturating_sub(since))
    }

    fn request_started(self: &Arc<Self>) -> RequestTurn {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Relaxed);
        RequestTurn(self.clone())
    }
}

/// A request in progress on a connection; its end makes the connection idle again.
struct RequestTurn(Arc<ConnState>);

impl Drop for RequestTurn {
    fn drop(&mut self) {
        let state = &self.0;
        state
            .idle_since
            .store(state.now_micros(), Ordering::Relaxed);
        state.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections.
struct Conns {
    epoch: tokio::time::Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Told when the last connection closes.
    emptied: Notify,
}

/// Whether bytes the client sent wait in the connection's socket, unread.
fn waiting_to_be_read(conn: &ConnState) -> bool {
    #[cfg(unix)]
    {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which points at one; on a
        // descriptor that is not a socket (any more) it fails and writes nothing.
        let ok =
            unsafe { libc::ioctl(conn.fd, libc::FIONREAD, &mut waiting as *mut libc::c_int) } == 0;
        ok && waiting > 0
    }
    #[cfg(not(unix))]
    {
        let _ = conn;
        false
    }
}

/// A connection's place in [`Conns`], given up when dropped.
struct Registered {
    conns: Arc<Conns>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.conns.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&self.id);
        if open.is_empty() {
            self.conns.emptied.notify_waiters();
        }
    }
}

impl Conns {
    fn new() -> Conns {
        Conns {
            epoch: tokio::time::Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            emptied: Notify::new(),
        }
    }

    fn register(self: &Arc<Self>, #[cfg(unix)] fd: std::os::fd::RawFd) -> Registered {
        let state = Arc::new(ConnState {
            #[cfg(unix)]
            fd,
            active: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.epoch.elapsed().as_micros() as u64),
            asked: Notify::new(),
            shutting_down: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            epoch: self.epoch,
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, state.clone());
        Registered {
            conns: self.clone(),
            id,
            state,
        }
    }

    /// Asks the connection idle the longest, if for at least [`EVICT_MIN_IDLE`], to close;
    /// false when there is none.
    fn close_longest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // While some connection has a request in progress, its answer makes room (it says
        // `Connection: close`, see `crowded` in `accept_loop`): an idle one is closed only after
        // a longer wait, since closing it races a client about to use it.
        let some_busy = open.values().any(|c| c.active.load(Ordering::Acquire) > 0);
        let min_idle = if some_busy {
            EVICT_MIN_WHILE_BUSY
        } else {
            EVICT_MIN_IDLE
        };
        let idle_before = (self.epoch.elapsed().saturating_sub(min_idle)).as_micros() as u64;
        let victim = open
            .values()
            .filter(|c| c.active.load(Ordering::Acquire) == 0 && !c.evicted.load(Ordering::Relaxed))
            .map(|c| (c.idle_since.load(Ordering::Relaxed), c))
            .filter(|(since, _)| *since <= idle_before)
            // A request the client has sent and this server has not read yet is not idleness:
            // under a burst, a connection can wait longer than EVICT_MIN_IDLE for its first
            // read, and closing it lost the request (oha: "connection closed before message
            // completed"). A silent stranger sends nothing; a trickling one is bounded by
            // header_read_timeout.
            .filter(|(_, c)| !waiting_to_be_read(c))
            // Kept-alive connections that have been answered go first, as nginx closes its
            // keep-alive ones first: a fresh connection may simply not have written its
            // request yet (a client starting thousands at once).
            .min_by_key(|(since, c)| (!c.served.load(Ordering::Relaxed), *since))
            .map(|(_, c)| c);
        match victim {
            Some(conn) => {
                conn.evicted.store(true, Ordering::Relaxed);
                // notify_one keeps the wake-up if the connection is not waiting right now.
                conn.asked.notify_one();
                true
            }
            None => false,
        }
    }

    /// Asks every connection to finish what it is doing and close; resolves once all have.
    async fn shut_down(&self) {
        loop {
            let emptied = self.emptied.notified();
            let mut emptied = pin!(emptied);
            emptied.as_mut().enable();
            {
                let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                if open.is_empty() {
                    return;
                }
                for conn in open.values() {
                    conn.shutting_down.store(true, Ordering::Relaxed);
                    conn.asked.notify_one();
                }
            }
            emptied.await;
        }
    }
}

/// The connection's socket, which gives hyper's own body-less HTTP/1 error answers (a request
/// head it cannot parse or that is too large) the server's body instead, so that every answer
/// is the server's kind (for the bridge: a LoyaltyAPI error envelope). hyper writes such an
/// answer only before it has handed any request of that exchange to the service, as the
/// connection's last words: the answer is recognised by its status line and `content-length:
/// 0` with no header of the server's own, which every answer of the service carries (the
/// bridge's `x-request-id`).
struct HeadErrors {
    stream: tokio::net::TcpStream,
    answer: Option<HeadErrorAnswer>,
    /// Our replacement still being written, and the length of hyper's answer it stands for.
    replacing: Option<(Bytes, usize)>,
}

impl HeadErrors {
    fn new(stream: tokio::net::TcpStream, answer: Option<HeadErrorAnswer>) -> HeadErrors {
        HeadErrors {
            stream,
            answer,
            replacing: None,
        }
    }

    /// The replacement for `buf` when it is one of hyper's own error answers.
    fn replacement(&self, buf: &[u8]) -> Option<Bytes> {
        let answer = self.answer?;
        let status = hyper_error_status(buf)?;
        answer(status)
    }

    fn poll_replacing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((rest, stands_for)) = &mut self.replacing {
            if rest.is_empty() {
                let n = *stands_for;
                self.replacing = None;
                return Poll::Ready(Ok(n));
            }
            let n = std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = rest.split_to(n);
        }
        Poll::Ready(Ok(0))
    }
}

/// The status of `buf` if it is a whole body-less HTTP/1 answer that the service did not
/// write: a 4xx/5xx status line, `content-length: 0`, and no `x-request-id`.
fn hyper_error_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let code = std::str::from_utf8(rest.get(..3)?)
        .ok()?
        .parse::<u16>()
        .ok()?;
    if !(400..600).contains(&code) || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    (head.contains("\r\ncontent-length: 0\r\n") && !head.contains("\r\nx-request-id:"))
        .then_some(code)
}

impl AsyncRead for HeadErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HeadErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none()
            && let Some(ours) = this.replacement(buf)
        {
            this.replacing = Some((ours, buf.len()));
        }
        if this.replacing.is_some() {
            return this.poll_replacing(cx);
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none()
            && let [only] = bufs
            && let Some(ours) = this.replacement(only)
        {
            this.replacing = Some((ours, only.len()));
        }
        if this.replacing.is_some() {
            return this.poll_replacing(cx);
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two connections accepted on a fresh loopback listener: (their clients, the server
    /// sides, in the order they connected).
    #[cfg(unix)]
    fn two_connections() -> (Vec<std::net::TcpStream>, [std::net::TcpStream; 2]) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let accept = || listener.accept().unwrap().0;
        let first = accept();
        (clients, [first, accept()])
    }

    /// Under a burst a connection's first read can come later than [`EVICT_MIN_IDLE`]: one
    /// whose request waits unread in its socket is not idle, a silent one is.
    #[cfg(unix)]
    #[test]
    fn a_connection_whose_request_waits_unread_is_not_evicted() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (mut clients, [sent_to, silent]) = two_connections();
        clients[0]
            .write_all(b"POST /retaildemand/recalc HTTP/1.1\r\nhost: bridge\r\n\r\n")
            .unwrap();
        let conns = Arc::new(Conns::new());
        // The one with the request is registered first: idle the longest, were it idle.
        let with_request = conns.register(sent_to.as_raw_fd());
        let without = conns.register(silent.as_raw_fd());
        let until = Instant::now() + Duration::from_secs(5);
        while !waiting_to_be_read(&with_request.state) {
            assert!(Instant::now() < until, "the request reached the socket");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(EVICT_MIN_IDLE + Duration::from_millis(20));
        assert!(conns.close_longest_idle());
        assert!(without.state.evicted.load(Ordering::Relaxed));
        assert!(!with_request.state.evicted.load(Ordering::Relaxed));
        assert!(
            !conns.close_longest_idle(),
            "a request waiting to be read is never closed to admit another connection"
        );
        assert!(!with_request.state.evicted.load(Ordering::Relaxed));
    }

    /// While another connection has a request in progress (its answer will make room), a
    /// fresh connection that has sent nothing yet gets [`EVICT_MIN_WHILE_BUSY`] to write it.
    #[cfg(unix)]
    #[test]
    fn a_fresh_connection_has_longer_to_write_while_others_are_busy() {
        use std::os::fd::AsRawFd;
        let (_clients, [fresh, busy]) = two_connections();
        let conns = Arc::new(Conns::new());
        let fresh = conns.register(fresh.as_raw_fd());
        let busy = conns.register(busy.as_raw_fd());
        let turn = busy.state.request_started();
        std::thread::sleep(EVICT_MIN_IDLE + Duration::from_millis(20));
        assert!(!conns.close_longest_idle(), "the fresh one still has time");
        assert!(!fresh.state.evicted.load(Ordering::Relaxed));
        // No request in progress any more: a connection silent this long is a stranger's.
        drop(turn);
        assert!(conns.close_longest_idle());
        assert!(fresh.state.evicted.load(Ordering::Relaxed));
    }

    /// An answered connection kept alive goes before a fresh one that has sent nothing yet,
    /// even when the fresh one has waited longer.
    #[cfg(unix)]
    #[test]
    fn answered_connections_are_evicted_before_fresh_ones() {
        use std::os::fd::AsRawFd;
        let (_clients, [fresh, answered]) = two_connections();
        let conns = Arc::new(Conns::new());
        let fresh = conns.register(fresh.as_raw_fd());
        let answered = conns.register(answered.as_raw_fd());
        drop(answered.state.request_started());
        std::thread::sleep(EVICT_MIN_IDLE + Duration::from_millis(20));
        assert!(conns.close_longest_idle());
        assert!(answered.state.evicted.load(Ordering::Relaxed));
        assert!(!fresh.state.evicted.load(Ordering::Relaxed));
        // With no answered one left, the fresh one that sent nothing goes (a silent stranger).
        assert!(conns.close_longest_idle());
        assert!(fresh.state.evicted.load(Ordering::Relaxed));
    }

    #[test]
    fn hyper_error_answers_are_recognised_and_the_services_are_not() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 20:00:00 GMT\r\n\r\n";
        assert_eq!(hyper_error_status(hyper_431), Some(431));
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(hyper_error_status(hyper_400), Some(400));
        let ours = b"HTTP/1.1 404 Not Found\r\nx-request-id: abc\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error_status(ours), None);
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error_status(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(hyper_error_status(with_body), None);
    }
}
