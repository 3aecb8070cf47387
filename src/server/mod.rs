//! The HTTP server: hyper on hyper-util's auto builder (HTTP/1.1 and h2c), graceful shutdown,
//! and the per-request pipeline route → auth → body → parse → operation → render.

mod body;
pub mod listen;
mod outbox;
mod route;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::plan::LoadError;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::app::AppContext;
use crate::app::guards::{AppGuards, TenantGuards};
use crate::app::recent::{FailureSource, RecentFailures};
use crate::app::refresh::AppRefresh;
use crate::app::settings::SettingsPage;
use crate::cache::StepCache;
use crate::config::{Config, Tenant, TokenHash};
use crate::error::{self, Error};
use crate::loyalty::auth::{self, Tenants};
use crate::loyalty::journal::Journal;
use crate::loyalty::ops::{self, OpContext, Reply};
use crate::mapping::memory::Memory;
use crate::mapping::registry::Mappings;
use crate::metrics::Metrics;
use crate::upstream::breaker::Breaker;
use crate::upstream::cluster::Cluster;
use crate::upstream::limit::TenantLimiter;
use crate::upstream::{HttpUpstream, Upstream};
use listen::{ClientAddr, ListenOptions, accept_loop};
use route::Route;

pub use route::route;

/// Everything a request needs, shared by all connections.
struct App {
    config: Config,
    tenants: Tenants,
    /// Shared with the settings page, whose credential check runs a mapping.
    mappings: Arc<Mappings>,
    upstream: Arc<dyn Upstream>,
    memory: Arc<Memory>,
    cache: Arc<StepCache>,
    /// One vendor rate limiter per tenant, by name.
    limiters: HashMap<String, Arc<TenantLimiter>>,
    /// One circuit breaker per tenant, by name.
    breakers: HashMap<String, Arc<Breaker>>,
    /// Exactly-once sales and returns, and the outbox (none without a store).
    journal: Option<Arc<Journal>>,
    metrics: Arc<Metrics>,
    /// SHA-256 of `server.metrics_token`, when `/metrics` requires it.
    metrics_token: Option<TokenHash>,
    /// The MoySklad app lifecycle, when `[moysklad_app]` is configured.
    moysklad: Option<Arc<AppContext>>,
    /// How far `tenants` has read the app tenants' changes; one refresh at a time.
    app_refresh: tokio::sync::Mutex<AppRefresh>,
    /// The MoySklad app's settings page (with `[moysklad_app]`).
    settings: Option<Arc<SettingsPage>>,
    /// Rate limiters and breakers of app tenants, made when first needed (shared with the
    /// settings page's credential checks).
    app_limits: Arc<AppGuards>,
    /// Turns for LoyaltyAPI requests (`server.max_in_flight`).
    in_flight: tokio::sync::Semaphore,
    /// Each tenant's share of those turns (`server.tenant_max_in_flight`), by name, made when
    /// first needed.
    tenant_turns: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl App {
    /// What an operation of `tenant` runs with.
    fn context(&self, tenant: Arc<Tenant>, request_id: String, deadline: Instant) -> OpContext {
        let (limiter, breaker) = match self.limiters.get(&tenant.name) {
            Some(limiter) => (
                Some(limiter.clone()),
                self.breakers.get(&tenant.name).cloned(),
            ),
            None => {
                let (l, b) = self.app_limits(&tenant);
                (Some(l), Some(b))
            }
        };
        OpContext {
            limiter,
            breaker,
            mapping: self.mappings.get(&tenant.mapping),
            tenant,
            request_id,
            upstream: self.upstream.clone(),
            upstream_calls: AtomicU32::new(0),
            deadline,
            memory: self.memory.clone(),
            cache: self.cache.clone(),
            journal: self.journal.clone(),
            metrics: Some(self.metrics.clone()),
        }
    }
}

impl App {
    /// `tenant`'s share of the in-flight turns.
    fn tenant_turns(&self, tenant: &str) -> Arc<tokio::sync::Semaphore> {
        let mut turns = self.tenant_turns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(turns) = turns.get(tenant) {
            return turns.clone();
        }
        let share = Arc::new(tokio::sync::Semaphore::new(
            self.config.server.tenant_turns(),
        ));
        turns.insert(tenant.to_owned(), share.clone());
        share
    }

    fn app_limits(&self, tenant: &Tenant) -> TenantGuards {
        self.app_limits.of(&tenant.name, &tenant.limits)
    }

    /// Brings the app tenants' token map up to date with the store: what changed since the
    /// last refresh (and their mappings).
    async fn refresh_app_tenants(&self) {
        let Some(ctx) = &self.moysklad else { return };
        let mut refresh = self.app_refresh.lock().await;
        if let Err(e) = refresh.refresh(ctx, &self.tenants, &self.mappings).await {
            tracing::warn!(error = %e, "cannot read the MoySklad app tenants' changes; keeping the last ones");
        }
    }
}

/// How often expired cache entries are swept out of memory when no request does it.
const CACHE_SWEEP: Duration = Duration::from_secs(5);

/// How often app tenants' changes are read from the store (other instances' writes).
const APP_REFRESH: Duration = Duration::from_secs(1);

async fn refresh_app_tenants_forever(app: Arc<App>) {
    loop {
        tokio::time::sleep(APP_REFRESH).await;
        app.refresh_app_tenants().await;
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Mapping(#[from] LoadError),
    #[error("{0}")]
    Client(String),
    #[error("cannot open the store ({0})")]
    Store(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
/// (at most `server.shutdown_grace_ms`).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let upstream = HttpUpstream::new().map_err(ServeError::Client)?;
    if let Some(proxies) = upstream.proxy_description() {
        tracing::info!(%proxies, "vendor calls go through the proxy the environment names");
    }
    serve_with(listener, config, Arc::new(upstream), shutdown).await
}

/// [`serve`] with a chosen upstream (tests and dry runs pass their own).
pub async fn serve_with(
    listener: TcpListener,
    config: Config,
    upstream: Arc<dyn Upstream>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let header_timeout = Duration::from_millis(config.server.header_read_timeout_ms);
    let mappings = Arc::new(Mappings::load(
        config.tenants.iter().map(|t| t.mapping.as_path()),
    )?);
    let store = crate::store::open(&config.store)
        .await
        .map_err(|e| ServeError::Store(format!("{}: {e}", config.store.describe())))?;
    tracing::info!(store = %config.store.describe(), "store open");
    let journal = Arc::new(Journal {
        store: store.clone(),
        queued: Arc::new(tokio::sync::Notify::new()),
    });
    let metrics = Arc::new(Metrics::new().per_app_tenant(config.server.metrics_per_app_tenant));
    let moysklad = match &config.moysklad_app {
        Some(app_config) => Some(Arc::new(
            AppContext::new(app_config.clone(), &config.server.base_path, store.clone())
                .map_err(ServeError::Client)?,
        )),
        None => None,
    };
    // Names this instance in the store: its heartbeat, its outbox delivery leases.
    let instance = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let cluster = if store.shared() {
        Some(Cluster::join(store.clone(), instance.clone(), metrics.instances()).await)
    } else {
        None
    };
    let app_limits = Arc::new(AppGuards::new(metrics.clone(), cluster.clone()));
    let recent = Arc::new(RecentFailures::new(store.clone()));
    let settings = match &moysklad {
        Some(ctx) => Some(Arc::new(
            SettingsPage::new(
                ctx.clone(),
                mappings.clone(),
                upstream.clone(),
                recent.clone(),
                app_limits.clone(),
            )
            .map_err(ServeError::Client)?,
        )),
        None => None,
    };
    let app = Arc::new(App {
        moysklad,
        app_refresh: tokio::sync::Mutex::new(AppRefresh::new()),
        settings,
        app_limits,
        in_flight: tokio::sync::Semaphore::new(config.server.max_in_flight),
        tenant_turns: Mutex::new(HashMap::new()),
        tenants: Tenants::new(config.tenants.iter().cloned()),
        mappings,
        upstream,
        memory: Arc::new(Memory::durable(store)),
        cache: Arc::new(StepCache::with_metrics(
            config.server.cache_entries,
            config.server.cache_bytes,
            metrics.clone(),
        )),
        limiters: config
            .tenants
            .iter()
            .map(|t| {
                let limiter = TenantLimiter::new(&t.limits, metrics.limiter(&t.name)).shared(
                    cluster.clone(),
                    &t.name,
                    &t.limits,
                );
                (t.name.clone(), Arc::new(limiter))
            })
            .collect(),
        breakers: config
            .tenants
            .iter()
            .map(|t| {
                let open_for = Duration::from_millis(t.limits.breaker_open_ms);
                let breaker = Breaker::new(
                    t.limits.breaker_failures,
                    open_for,
                    metrics.breaker(&t.name),
                )
                .shared(cluster.clone(), &t.name);
                (t.name.clone(), Arc::new(breaker))
            })
            .collect(),
        journal: Some(journal.clone()),
        metrics_token: config
            .server
            .metrics_token
            .as_ref()
            .map(|t| TokenHash::of(t.expose())),
        metrics,
        config,
    });
    app.refresh_app_tenants().await;
    let app_refresher = tokio::spawn(refresh_app_tenants_forever(app.clone()));
    let reloader = tokio::spawn(watch_mappings(app.clone()));
    let cache_sweeper = tokio::spawn(app.cache.clone().sweep_forever(CACHE_SWEEP));
    let failure_writer = tokio::spawn(recent.clone().write_forever());
    let heart = cluster.clone().map(|c| tokio::spawn(c.run()));
    // Set when shutdown begins: the deliverer stops between two store calls, never in one.
    let (stop_delivering, delivering_stopped) = tokio::sync::watch::channel(false);
    let mut deliverer = tokio::spawn(outbox::deliver_forever(
        app.clone(),
        journal.clone(),
        instance.clone(),
        delivering_stopped,
    ));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tenants = app.tenants.len(), "loyalty-bridge listening");
    if app.metrics_token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "GET /metrics is open to anyone who can reach this address: set server.metrics_token"
        );
    }
    let options = ListenOptions {
        name: "loyalty-bridge",
        header_read_timeout: header_timeout,
        idle_timeout: Duration::from_millis(app.config.server.idle_timeout_ms),
        shutdown_grace: grace,
        max_connections: app.config.server.max_connections,
        head_error_answer: Some(error::head_refused_answer),
    };
    let handler = {
        let app = app.clone();
        move |req| {
            let app = app.clone();
            // Boxed: hyper keeps a connection's request future inline in the connection, so
            // an unboxed one would hold the whole request state machine for every open
            // connection, idle ones included; boxed, it exists only while a request is served.
            Box::pin(async move { Ok::<_, Infallible>(handle(&app, req).await) })
        }
    };
    let shutdown = async move {
        shutdown.await;
        let _ = stop_delivering.send(true);
    };
    let served = accept_loop(listener, options, handler, shutdown).await;
    reloader.abort();
    cache_sweeper.abort();
    app_refresher.abort();
    // The deliverer finishes the item in hand (its vendor call has a deadline), so that no
    // lease of its is written after the release below; one that takes longer than the
    // grace is cut off, and its lease runs out instead.
    if tokio::time::timeout(grace, &mut deliverer).await.is_err() {
        deliverer.abort();
        let _ = deliverer.await;
    }
    // Let another instance take over the queues at once instead of after the lease: every
    // queue this one held, app-installed tenants' included.
    if let Err(e) = journal.store.release_outbox_leases(&instance).await {
        tracing::warn!(error = %e, "outbox: cannot give the delivery leases back; other instances take over when they run out");
    }
    // Failures noted in the last seconds, still waiting for their turn to be written.
    if tokio::time::timeout(grace, recent.write_all())
        .await
        .is_err()
    {
        tracing::warn!("recent failures: not all were written before shutdown");
    }
    failure_writer.abort();
    if let Some(cluster) = &cluster {
        if let Some(heart) = heart {
            heart.abort();
        }
        cluster.leave().await;
    }
    Ok(served?)
}

/// Reloads changed mapping files (polled) and all of them on SIGHUP.
async fn watch_mappings(app: Arc<App>) {
    let every = Duration::from_millis(app.config.server.mapping_reload_ms);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let force = match hangup.as_mut() {
            Some(signal) => tokio::select! {
                _ = signal.recv() => true,
                () = tokio::time::sleep(every) => false,
            },
            None => {
                tokio::time::sleep(every).await;
                false
            }
        };
        #[cfg(not(unix))]
        let force = {
            tokio::time::sleep(every).await;
            false
        };
        // Compiling a mapping is CPU work; keep it off the request threads.
        let app = app.clone();
        let _ = tokio::task::spawn_blocking(move || app.mappings.reload(force)).await;
    }
}

/// What the access log says about a request beyond method, path and status.
#[derive(Default)]
struct Outcome {
    tenant: Option<String>,
    op: Option<&'static str>,
    upstream_calls: u32,
}

async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = request_id(req.headers());
    let gzip_ok = body::accepts_gzip(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let deadline_ms = app.config.server.request_timeout_ms;
    // The operation's own deadline is a little earlier than the hard one below, so that a
    // sale whose vendor call timed out can still settle its journal record and answer.
    let margin = Duration::from_millis((deadline_ms / 10).min(250));
    let deadline = Instant::now() + Duration::from_millis(deadline_ms) - margin;
    let mut outcome = Outcome::default();

    let result = tokio::time::timeout(
        Duration::from_millis(deadline_ms),
        dispatch(app, req, &request_id, deadline, &mut outcome),
    )
    .await
    .unwrap_or(Err(Error::DeadlineExceeded { ms: deadline_ms }));

    let mut response = result.unwrap_or_else(|err| {
        if let Error::Internal(detail) = &err {
            tracing::error!(request_id = %request_id, detail = %detail, "internal error");
        }
        error::respond(&err)
    });
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    if gzip_ok {
        body::gzip(&mut response);
    }
    let took = started.elapsed();
    let op = outcome.op.unwrap_or("-");
    let status = response.status().as_u16();
    app.metrics.request(op, status, took);
    tracing::info!(
        target: "access",
        request_id = %request_id,
        method = %method,
        path = %path,
        tenant = outcome.tenant.as_deref().unwrap_or("-"),
        op,
        status,
        upstream_calls = outcome.upstream_calls,
        latency_ms = took.as_secs_f64() * 1000.0,
    );
    response.map(Full::new)
}

async fn dispatch(
    app: &Arc<App>,
    req: Request<Incoming>,
    request_id: &str,
    deadline: Instant,
    outcome: &mut Outcome,
) -> Result<Response<Bytes>, Error> {
    let server = &app.config.server;
    if let Some(settings) = &app.settings
        && settings.serves(req.uri().path())
    {
        outcome.op = Some("moysklad.settings");
        // The server reads the body (in time, within the page's form limit) and hands the page
        // bytes and the client's address; the page knows nothing of connections.
        let client = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
        let (parts, incoming) = req.into_parts();
        let body = read_body_in_time(
            server,
            incoming,
            &parts.headers,
            SettingsPage::MAX_FORM_BYTES,
        );
        // Rare paths are boxed so that their (large) state machines do not size every
        // LoyaltyAPI request's future (hyper allocates that much per request).
        let body = Box::pin(body).await;
        let answer = Box::pin(settings.handle(parts, body, client)).await;
        if answer.connected {
            Box::pin(app.refresh_app_tenants()).await;
        }
        return Ok(answer.response);
    }
    if let Some(ctx) = &app.moysklad
        && let Some((app_id, account_id)) = ctx.lifecycle_target(req.uri().path())
    {
        outcome.op = Some("moysklad.app");
        outcome.tenant = Some(format!("{}{account_id}", crate::app::TENANT_PREFIX));
        return Box::pin(lifecycle(app, ctx, req, &app_id, &account_id)).await;
    }
    let op = match route(&server.base_path, req.method(), req.uri().path())? {
        Route::Healthz => {
            return Ok(json(
                StatusCode::OK,
                Bytes::from_static(br#"{"status":"ok"}"#),
            ));
        }
        Route::Readyz => {
            // Ready means sales can be recorded: the store answers.
            if let Some(journal) = &app.journal {
                let probe = journal.store.kv_get("", "readyz", crate::store::now_ms());
                match tokio::time::timeout(Duration::from_secs(2), probe).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => {
                        return Err(Error::StoreUnavailable {
                            detail: "no answer within 2 s".into(),
                        });
                    }
                }
            }
            let body = format!(r#"{{"status":"ready","tenants":{}}}"#, app.tenants.len());
            return Ok(json(StatusCode::OK, Bytes::from(body)));
        }
        Route::Metrics => return metrics(app, req.headers()),
        Route::Op(op) => op,
    };
    outcome.op = Some(op.name());
    let tenant = app.tenants.authenticate(req.headers()).inspect_err(|_| {
        if let Some(fp) = auth::fingerprint(req.headers()) {
            tracing::warn!(request_id, token_fingerprint = %fp, "unknown access key");
        }
    })?;
    outcome.tenant = Some(tenant.name.clone());
    // The body first, within its own deadline: a request whose body has not arrived holds
    // only its connection (or h2 stream), not a turn another request could use.
    let (parts, incoming) = req.into_parts();
    let bytes = if op.has_body() {
        read_body_in_time(server, incoming, &parts.headers, server.max_body_bytes).await?
    } else {
        Bytes::new()
    };
    // Then a turn: first within the tenant's share, so that one tenant's flood or slow vendor
    // cannot take every turn, then one of all. The waits count against the request's
    // deadline (`handle` answers 504 when it runs out).
    let closed = |_| Error::Internal("the request limiter is closed".into());
    let tenant_turns = app.tenant_turns(&tenant.name);
    let _tenant_turn = tenant_turns.acquire().await.map_err(closed)?;
    let _turn = app.in_flight.acquire().await.map_err(closed)?;
    let request = ops::Request::parse(op, parts.uri.query(), &bytes)?;
    let ctx = app.context(tenant.clone(), request_id.to_owned(), deadline);
    let (result, upstream_calls) = run_op(request, ctx).await;
    outcome.upstream_calls = upstream_calls;
    let reply = result.inspect_err(|e| {
        log_failure(e, request_id);
        note_app_failure(app, &tenant.name, op, e);
    })?;
    render(&reply)
}

/// The request's body, within `server.body_read_timeout_ms` and `limit` bytes.
async fn read_body_in_time(
    server: &crate::config::ServerConfig,
    incoming: Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, Error> {
    let ms = server.body_read_timeout_ms;
    let read = body::read(incoming, headers, limit);
    tokio::time::timeout(Duration::from_millis(ms), read)
        .await
        .map_err(|_| Error::BodyTimeout { ms })?
}

/// Runs the operation; also says how many vendor calls it made.
async fn run_op(request: ops::Request, ctx: OpContext) -> (Result<Reply, Error>, u32) {
    // Boxed: the operation's state machine (plan, vendor calls, JSON trees) is by far the
    // largest part of a request's future; unboxed, every request waiting for its turn
    // would hold that much memory too.
    Box::pin(async move {
        let result = request.apply(&ctx).await;
        (result, ctx.upstream_calls.load(Ordering::Relaxed))
    })
    .await
}

/// MoySklad's `PUT`/`DELETE …/apps/{appId}/{accountId}`.
async fn lifecycle(
    app: &Arc<App>,
    ctx: &AppContext,
    req: Request<Incoming>,
    app_id: &str,
    account_id: &str,
) -> Result<Response<Bytes>, Error> {
    const ALLOWED: &[http::Method] = &[http::Method::PUT, http::Method::DELETE];
    let method = req.method().clone();
    if !ALLOWED.contains(&method) {
        return Err(Error::MethodNotAllowed { allowed: ALLOWED });
    }
    let (parts, incoming) = req.into_parts();
    let bytes = read_body_in_time(
        &app.config.server,
        incoming,
        &parts.headers,
        app.config.server.max_body_bytes,
    )
    .await?;
    let response = if method == http::Method::PUT {
        let answer = ctx
            .activate(app_id, account_id, &parts.headers, &bytes)
            .await?;
        json(StatusCode::OK, Bytes::from(answer.to_string()))
    } else {
        let status = ctx
            .deactivate(app_id, account_id, &parts.headers, &bytes)
            .await?;
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = status;
        response
    };
    app.refresh_app_tenants().await;
    Ok(response)
}

/// `GET /metrics`: the exposition, behind `Authorization: Bearer <server.metrics_token>` when
/// one is configured (compared by SHA-256, in constant time).
fn metrics(app: &App, headers: &HeaderMap) -> Result<Response<Bytes>, Error> {
    if let Some(expected) = &app.metrics_token {
        use subtle::ConstantTimeEq;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .unwrap_or("");
        // Hashing first makes the comparison independent of the token's length.
        let presented = TokenHash::of(presented);
        if !bool::from(presented.0.ct_eq(&expected.0)) {
            tracing::warn!("metrics scrape refused: bearer token missing or wrong");
            return Err(Error::MetricsUnauthorized);
        }
    }
    let mut response = Response::new(Bytes::from(app.metrics.encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    Ok(response)
}

/// An app account's failed LoyaltyAPI call, for its settings page's recent errors (only
/// failures its admin can act on: see [`crate::app::recent`]).
fn note_app_failure(app: &App, tenant: &str, op: ops::Op, err: &Error) {
    let (Some(settings), Some(account_id)) = (
        &app.settings,
        tenant.strip_prefix(crate::app::TENANT_PREFIX),
    ) else {
        return;
    };
    if crate::app::recent::worth_showing(err) {
        let (title, message) = error::cashier_texts(err);
        let text = format!(
            "{} → {}: {title}. {message}",
            op.name(),
            err.status().as_u16()
        );
        settings.recent.note(
            account_id,
            FailureSource::LoyaltyApi,
            &text,
            crate::store::now_ms(),
        );
    }
}

/// Failures whose detail the envelope hides are logged in full here.
fn log_failure(err: &Error, request_id: &str) {
    match err {
        Error::MappingFailed { op, at, detail } => {
            tracing::error!(request_id, op = op.name(), at = %at, detail = %detail, "mapping failed");
        }
        Error::Upstream { step, failure } => {
            tracing::warn!(request_id, step = %step, failure = %failure, "vendor call failed");
        }
        Error::StoreUnavailable { detail } => {
            tracing::error!(request_id, detail = %detail, "store unavailable");
        }
        _ => {}
    }
}

fn render(reply: &Reply) -> Result<Response<Bytes>, Error> {
    let body = reply
        .body()
        .map_err(|e| Error::Internal(format!("cannot serialize the answer: {e}")))?;
    Ok(match body {
        Some(bytes) => json(reply.status(), Bytes::from(bytes)),
        None => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = reply.status();
            response
        }
    })
}

fn json(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The caller's `X-Request-Id` if it is a sane token, else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}
