//! `serve` (the default): the LoyaltyAPI, and the bundled MAXMA emulator when the config asks.

use anyhow::Context;
use loyalty_bridge::{Config, telemetry};

use super::shutdown_signal;

pub fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    // tokio's work-stealing runtime with `server.threads` workers. (Connection threads, each a
    // single-threaded runtime, served connections before: they did not pay against this one
    // once hyper stopped waking a connection's own task — benches/results.md, issue #25.)
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.thread_count())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        if let Some(sandbox) = &config.maxma_sandbox {
            let listener = loyalty_bridge::server::listen::bind(sandbox.listen)
                .with_context(|| format!("cannot listen on {} (sandbox.maxma.listen)", sandbox.listen))?;
            tracing::info!(addr = %sandbox.listen, "MAXMA sandbox with demo data (remove [sandbox.maxma] for production)");
            let emulator = emulators::maxma::MaxmaSandbox::with_demo_data(sandbox.key.expose());
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
