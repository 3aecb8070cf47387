//! loyalty-bridge: a MoySklad LoyaltyAPI 1.0 server that forwards each call to a merchant's
//! existing loyalty vendor. Library first: [`run`] serves on a listener you bind (tests bind
//! port 0); `main.rs` is a thin CLI around it.

pub mod app;
pub mod cache;
pub mod config;
pub mod error;
pub mod loyalty;
pub mod mapping;
pub mod metrics;
pub mod secret;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;

use std::future::Future;

use tokio::net::TcpListener;

pub use config::Config;
/// Money types are the mapping language's; the LoyaltyAPI models use them too.
pub use engine::amount;

/// Serves the LoyaltyAPI on `listener` until `shutdown` resolves, then drains in-flight requests.
/// Fails at start if a tenant's mapping file does not load.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), server::ServeError> {
    server::serve(listener, config, shutdown).await
}
