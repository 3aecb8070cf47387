//! loyalty-bridge: a MoySklad LoyaltyAPI 1.0 server that forwards each call to a merchant's
//! existing loyalty vendor. Library first: [`run`] serves on a listener you bind (tests bind
//! port 0); `main.rs` is a thin CLI around it.

pub mod amount;
pub mod config;
pub mod error;
pub mod loyalty;
pub mod secret;
pub mod server;
pub mod telemetry;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::Config;

/// Serves the LoyaltyAPI on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    server::serve(listener, config, shutdown).await
}
