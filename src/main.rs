use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use loyalty_bridge::mapping::golden::{self, CannedUpstream};
use loyalty_bridge::mapping::plan::{Canned, Mapping, op_named};
use loyalty_bridge::{Config, telemetry};

// See Cargo.toml: the request path is allocation-heavy, and glibc's allocator was a third of it.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (`_RJEM_MALLOC_CONF` in the environment overrides
/// them). One arena for every thread: with an arena per thread, each connection thread
/// (`server::lanes`) kept its own share of a burst's memory, and the two together peaked
/// 6–8 MiB higher (2,000 requests at once: 61.6–64.4 MiB against 55.5–57.2); no CPU cost per
/// recalc measured at saturation (rounds alternated with the default, 2 runs).
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 10] = b"narenas:1\0";

/// Transparent huge pages put every arena the allocator touches in 2 MiB pages although the
/// bridge's heap is small and short-lived. mimalloc, the allocator before jemalloc, asked for
/// them; with 4 KiB pages the bridge's resident memory was about half (idle 31 -> 21 MiB;
/// 2,000 requests at once 131 -> 89 MiB peak in a probe), at no CPU cost measured (`benches/`,
/// issue #7). jemalloc does not ask, but a kernel set to `always` would give them all the same.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integers only and changes only this process' page policy.
    // A kernel without it refuses the call, which changes nothing: the result is not needed.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// MoySklad LoyaltyAPI server bridging to an existing loyalty vendor.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config.toml",
        env = "LOYALTY_BRIDGE_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the LoyaltyAPI (the default).
    Serve,
    /// Validate the configuration and mapping files and run the mappings' golden examples.
    Check {
        /// Check only these mapping files (no configuration needed).
        #[arg(long)]
        mapping: Vec<PathBuf>,
    },
    /// Run a vendor emulator with demo data (the shipped config.toml points at MAXMA's).
    Sandbox {
        /// Which vendor: maxma, uds, premiumbonus, or moysklad (its Vendor API).
        vendor: String,
        #[arg(long, default_value = "127.0.0.1:9081")]
        listen: std::net::SocketAddr,
        /// The key the emulator accepts (MAXMA processing key, UDS api key, Premium Bonus token).
        #[arg(
            long,
            env = "SANDBOX_KEY",
            default_value = "sandbox-key",
            hide_env_values = true
        )]
        key: String,
        /// UDS only: the company id of the Basic credentials.
        #[arg(long, default_value = "549755813888")]
        company_id: String,
        /// MAXMA only: answer every request this many milliseconds late (a slow vendor, for
        /// load tests; see benches/load/run.sh).
        #[arg(long)]
        delay_ms: Option<u64>,
        /// moysklad only: the app's id (as `moysklad_app.app_id`); the key is its secret key.
        #[arg(long, default_value = "4c5b1a2e-7d3f-4a9b-8c1d-2e3f4a5b6c7d")]
        app_id: String,
        /// moysklad only: the app's appUid (as `moysklad_app.app_uid`).
        #[arg(long, default_value = "loyalty-bridge.sandbox")]
        app_uid: String,
        /// moysklad only: a running bridge's `moysklad_app.public_base_url`. The sandbox then
        /// installs the app for `--account` on it (as MoySklad would) and prints the settings
        /// page's URLs (the bridge's `frame_ancestors` must list this sandbox's origin).
        #[arg(long)]
        bridge: Option<String>,
        /// moysklad only: the bridge's `moysklad_app.settings_path`.
        #[arg(long, default_value = "/moysklad/settings")]
        settings_path: String,
        /// moysklad only: the demo account's id.
        #[arg(long, default_value = "1f2e3d4c-0000-4000-8000-00000000d3e0")]
        account: String,
    },
    /// Look at and act on the outbox (sales accepted while a vendor was down).
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Dry run: print the vendor request(s) a MoySklad request (JSON on stdin) would cause.
    Map {
        /// Operation, e.g. retaildemand.recalc (or just recalc).
        #[arg(long)]
        op: String,
        #[arg(long)]
        mapping: PathBuf,
    },
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Items waiting for delivery and items the vendor refused (oldest first).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Also delivered items (until they are pruned).
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put a refused (or waiting) item back in the queue, due now; a running bridge delivers it
    /// within a second.
    Retry { seq: i64 },
    /// Remove an undelivered item; MoySklad's next repeat of that sale starts afresh.
    Drop { seq: i64 },
}

fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(load_config(&cli.config)),
        Command::Check { mapping } => check(&cli.config, mapping),
        Command::Map { op, mapping } => map(&op, &mapping),
        Command::Outbox { action } => outbox(&load_config(&cli.config), action),
        Command::Sandbox {
            vendor,
            listen,
            key,
            company_id,
            delay_ms,
            app_id,
            app_uid,
            bridge,
            settings_path,
            account,
        } => sandbox(
            &vendor,
            listen,
            key,
            company_id,
            delay_ms,
            MoyskladDemo {
                app_id,
                app_uid,
                bridge,
                settings_path,
                account,
            },
        ),
    }
}

/// What `sandbox moysklad` needs beyond the common options.
struct MoyskladDemo {
    app_id: String,
    app_uid: String,
    bridge: Option<String>,
    settings_path: String,
    account: String,
}

fn sandbox(
    vendor: &str,
    listen: std::net::SocketAddr,
    key: String,
    company_id: String,
    delay_ms: Option<u64>,
    demo: MoyskladDemo,
) -> anyhow::Result<()> {
    use loyalty_bridge::sandbox;
    if delay_ms.is_some() && vendor != "maxma" {
        bail!("--delay-ms is supported by the maxma sandbox only");
    }
    telemetry::init(&Default::default());
    runtime()?.block_on(async {
        let listener = loyalty_bridge::server::listen::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("{vendor} sandbox with demo data on http://{listen} (Ctrl-C to stop)");
        match vendor {
            "maxma" => {
                let emulator = sandbox::maxma::MaxmaSandbox::with_demo_data(key);
                if let Some(ms) = delay_ms {
                    emulator.set_fault(Some(sandbox::maxma::Fault::Delay(
                        std::time::Duration::from_millis(ms),
                    )));
                }
                emulator.serve(listener, shutdown_signal()).await?
            }
            "uds" => {
                sandbox::uds::UdsSandbox::with_demo_data(company_id, key)
                    .serve(listener, shutdown_signal())
                    .await?
            }
            "premiumbonus" => {
                sandbox::premiumbonus::PremiumBonusSandbox::with_demo_data(key)
                    .serve(listener, shutdown_signal())
                    .await?
            }
            "moysklad" => {
                let MoyskladDemo {
                    app_id,
                    app_uid,
                    bridge,
                    settings_path,
                    account,
                } = demo;
                eprintln!(
                    "MoySklad Vendor API at http://{listen}/api/vendor/1.0 (app {app_id}, appUid {app_uid})"
                );
                let mut emulator = sandbox::moysklad::MoyskladSandbox::new(app_id, app_uid, key);
                if let Some(bridge) = bridge {
                    let bridge = bridge.trim_end_matches('/').to_owned();
                    emulator =
                        emulator.with_settings_page(format!("{bridge}{settings_path}"));
                    tokio::spawn(install_demo_account(
                        emulator.clone(),
                        bridge,
                        account,
                        listen,
                    ));
                }
                emulator.serve(listener, shutdown_signal()).await?
            }
            other => {
                bail!("no sandbox for {other:?}; available: maxma, uds, premiumbonus, moysklad")
            }
        }
        Ok(())
    })
}

/// `sandbox moysklad --bridge`: installs the app for the demo account, as MoySklad would, and
/// prints where to open the settings page.
async fn install_demo_account(
    emulator: loyalty_bridge::sandbox::moysklad::MoyskladSandbox,
    bridge: String,
    account: String,
    listen: std::net::SocketAddr,
) {
    let (status, answer) = emulator
        .install(&bridge, &account, "sandbox-access-token")
        .await;
    if status != 200 {
        eprintln!("installing the demo account on {bridge} failed: HTTP {status} {answer}");
        return;
    }
    eprintln!("installed on {bridge} for account {account}: {answer}");
    let frame = |admin: bool, locale: &str| {
        format!(
            "http://{listen}/sandbox/frame?accountId={account}&admin={admin}&userLocale={locale}"
        )
    };
    eprintln!(
        "settings page in a MoySklad-like frame (admin):     {}",
        frame(true, "ru_RU")
    );
    eprintln!(
        "                                     (admin, English): {}",
        frame(true, "en_US")
    );
    eprintln!(
        "                                     (not an admin):   {}",
        frame(false, "ru_RU")
    );
    let key = emulator.issue_context(&account, true);
    if let Some(url) = emulator.settings_url(&key, "ru_RU") {
        eprintln!("or open it directly (this context key works once, for 5 minutes): {url}");
    }
}

fn outbox(config: &Config, action: OutboxAction) -> anyhow::Result<()> {
    use loyalty_bridge::store::{self, now_ms};
    runtime()?.block_on(async {
        let store = store::open(&config.store)
            .await
            .context("cannot open the store")?;
        match action {
            OutboxAction::List { tenant, all, json } => {
                let items = store.outbox_items(tenant.as_deref(), all).await?;
                if !json {
                    println!(
                        "{:>6}  {:<16} {:<6} {:<38} {:<9} {:>8}  {:<20} last error",
                        "seq", "tenant", "kind", "meta.id", "state", "attempts", "queued at"
                    );
                }
                for item in &items {
                    let queued = chrono::DateTime::from_timestamp_millis(item.created_ms)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    if json {
                        let line = serde_json::json!({
                            "seq": item.seq, "tenant": item.tenant, "kind": item.kind.as_str(),
                            "id": item.id, "state": item.state.as_str(), "attempts": item.attempts,
                            "created_ms": item.created_ms, "next_attempt_ms": item.next_attempt_ms,
                            "last_error": item.last_error,
                        });
                        println!("{line}");
                    } else {
                        println!(
                            "{:>6}  {:<16} {:<6} {:<38} {:<9} {:>8}  {:<20} {}",
                            item.seq,
                            item.tenant,
                            item.kind.as_str(),
                            item.id,
                            item.state.as_str(),
                            item.attempts,
                            queued,
                            item.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
                if !json {
                    eprintln!("{} item(s)", items.len());
                }
            }
            OutboxAction::Retry { seq } => {
                if !store.outbox_retry(seq, now_ms()).await? {
                    bail!("no undelivered outbox item {seq}");
                }
                println!("item {seq} is due now");
            }
            OutboxAction::Drop { seq } => {
                if !store.outbox_drop(seq, now_ms()).await? {
                    bail!("no undelivered outbox item {seq}");
                }
                println!("item {seq} dropped");
            }
        }
        Ok(())
    })
}

fn load_config(path: &std::path::Path) -> Config {
    match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            // The message names the file and the field; a backtrace would only bury it.
            eprintln!("loyalty-bridge: {e}");
            std::process::exit(2);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    runtime()?.block_on(async {
        if let Some(sandbox) = &config.maxma_sandbox {
            let listener = loyalty_bridge::server::listen::bind(sandbox.listen)
                .with_context(|| format!("cannot listen on {} (sandbox.maxma.listen)", sandbox.listen))?;
            tracing::info!(addr = %sandbox.listen, "MAXMA sandbox with demo data (remove [sandbox.maxma] for production)");
            let emulator = loyalty_bridge::sandbox::maxma::MaxmaSandbox::with_demo_data(sandbox.key.expose());
            tokio::spawn(emulator.serve(listener, shutdown_signal()));
        }
        let addr = config.server.listen;
        let listener = loyalty_bridge::server::listen::bind(addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
        if let Err(e) = loyalty_bridge::run(listener, config, shutdown_signal()).await {
            // A broken mapping file names itself and the field; a backtrace would bury that.
            eprintln!("loyalty-bridge: {e}");
            std::process::exit(2);
        }
        Ok(())
    })
}

fn check(config_path: &std::path::Path, only: Vec<PathBuf>) -> anyhow::Result<()> {
    let paths = if only.is_empty() {
        let config = load_config(config_path);
        println!(
            "{}: ok, {} tenant(s)",
            config_path.display(),
            config.tenants.len()
        );
        for t in &config.tenants {
            println!("  {} → {} ({})", t.name, t.base_url, t.mapping.display());
        }
        let mut paths: Vec<PathBuf> = config.tenants.iter().map(|t| t.mapping.clone()).collect();
        paths.sort();
        paths.dedup();
        paths
    } else {
        only
    };
    let runtime = runtime()?;
    let mut failed = 0;
    for path in paths {
        let mapping = match Mapping::load(&path) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                println!("FAIL {e}");
                failed += 1;
                continue;
            }
        };
        println!(
            "{}: compiles ({} examples)",
            path.display(),
            mapping.examples.len()
        );
        for report in runtime.block_on(golden::run_examples(&mapping)) {
            if report.problems.is_empty() {
                println!("  ok   {}", report.name);
            } else {
                failed += 1;
                println!("  FAIL {}", report.name);
                for p in &report.problems {
                    println!("       {p}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("loyalty-bridge check: {failed} problem(s)");
        std::process::exit(1);
    }
    Ok(())
}

fn map(op: &str, mapping_path: &std::path::Path) -> anyhow::Result<()> {
    let op = op_named(op)
        .or_else(|| {
            loyalty_bridge::loyalty::ops::Op::ALL
                .into_iter()
                .find(|o| o.name().ends_with(&format!(".{op}")))
        })
        .with_context(|| format!("unknown operation {op:?}"))?;
    let mapping = Arc::new(Mapping::load(mapping_path)?);
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the request from stdin")?;
    let request: serde_json::Value =
        serde_json::from_str(&text).context("the request on stdin is not JSON")?;
    // Every vendor call is answered `{}` with 200: later steps see stand-in answers.
    let upstream = Arc::new(CannedUpstream::new(
        Default::default(),
        Some(Canned::Answer {
            status: 200,
            body: "{}".into(),
        }),
    ));
    let answer = runtime()?.block_on(golden::answer(mapping, op, &request, upstream.clone()));
    let calls = upstream.take_calls();
    if calls.is_empty() {
        println!(
            "(no vendor call; the bridge would answer {} {})",
            answer.status, answer.body
        );
    }
    for call in calls {
        println!("# step {}", call.step);
        println!("{} {}", call.method, call.url);
        for (name, value) in &call.headers {
            let shown = if is_secret_header(name.as_str()) {
                "****"
            } else {
                value.to_str().unwrap_or("<binary>")
            };
            println!("{name}: {shown}");
        }
        if let Some(body) = &call.body {
            let pretty = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            println!("\n{pretty}");
        }
        println!();
    }
    Ok(())
}

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "auth", "token", "secret", "password"]
        .iter()
        .any(|s| name.contains(s))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
