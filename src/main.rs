use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loyalty_bridge::{Config, telemetry};

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
    /// Load and validate the configuration, print a summary, and exit.
    Check,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            // The message names the file and the field; a backtrace would only bury it.
            eprintln!("loyalty-bridge: {e}");
            std::process::exit(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check => {
            println!(
                "{}: ok, {} tenant(s)",
                cli.config.display(),
                config.tenants.len()
            );
            for t in &config.tenants {
                println!("  {} → {} ({})", t.name, t.base_url, t.mapping.display());
            }
            Ok(())
        }
        Command::Serve => serve(config),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let addr = config.server.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        loyalty_bridge::run(listener, config, shutdown_signal()).await?;
        Ok(())
    })
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
