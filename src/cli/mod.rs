//! The subcommands, one file each, dispatched from [`Command`]. `main.rs` only parses.

mod check;
mod map;
mod new_mapping;
mod outbox;
mod sandbox;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use loyalty_bridge::Config;

/// MoySklad LoyaltyAPI server bridging to an existing loyalty vendor.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config.toml",
        env = "LOYALTY_BRIDGE_CONFIG"
    )]
    config: PathBuf,
    /// `serve` listens here instead of at `server.listen`: several instances on one machine
    /// can share one configuration file.
    #[arg(long, global = true, env = "LOYALTY_BRIDGE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
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
    Sandbox(sandbox::SandboxArgs),
    /// Look at and act on the outbox (sales accepted while a vendor was down).
    Outbox {
        #[command(subcommand)]
        action: outbox::OutboxAction,
    },
    /// Dry run: print the vendor request(s) a MoySklad request (JSON on stdin) would cause.
    Map {
        /// Operation, e.g. retaildemand.recalc (or just recalc).
        #[arg(long)]
        op: String,
        #[arg(long)]
        mapping: PathBuf,
        /// The tenant's settings, a JSON object (`.settings`; default `{}`).
        #[arg(long, value_name = "FILE")]
        settings: Option<PathBuf>,
        /// For a return: what the returned sale's journal record kept, `{"kept": …}` (`.sale`).
        #[arg(long, value_name = "FILE")]
        sale: Option<PathBuf>,
        /// The tenant's credentials, a JSON object of strings (`.credentials`); still masked
        /// in the output.
        #[arg(long, value_name = "FILE")]
        credentials: Option<PathBuf>,
        /// Values earlier calls remembered, a JSON object `{"<key>": value}` (what `recall`
        /// finds).
        #[arg(long, value_name = "FILE")]
        remembered: Option<PathBuf>,
    },
    /// Write a commented skeleton of a new vendor's mapping file (NAME.toml): the nine
    /// operations, each refusing until filled in, so that `check` passes on it as written.
    NewMapping(new_mapping::NewMappingArgs),
}

impl Cli {
    /// The command serves the network until stopped (as opposed to printing for a user).
    pub fn serves(&self) -> bool {
        matches!(
            self.command,
            None | Some(Command::Serve) | Some(Command::Sandbox(_))
        )
    }

    pub fn run(self) -> anyhow::Result<()> {
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let mut config = load_config(&self.config);
                if let Some(addr) = self.listen {
                    config.server.listen = addr;
                }
                serve::serve(config)
            }
            Command::Check { mapping } => check::check(&self.config, mapping),
            Command::Map {
                op,
                mapping,
                settings,
                sale,
                credentials,
                remembered,
            } => map::map(map::MapArgs {
                op,
                mapping,
                settings,
                sale,
                credentials,
                remembered,
            }),
            Command::NewMapping(args) => new_mapping::new_mapping(args),
            Command::Outbox { action } => outbox::outbox(&load_config(&self.config), action),
            Command::Sandbox(args) => sandbox::sandbox(args),
        }
    }
}

fn load_config(path: &Path) -> Config {
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
