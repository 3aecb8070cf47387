//! The one way the emulators' tests start an emulator: on 127.0.0.1:0, with a client, and a
//! [`Running::stop`] that checks the emulator stopped cleanly.

use std::future::Future;
use std::pin::Pin;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What an emulator's `serve` is given to stop on.
pub(crate) type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct Running {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// reqwest is built with `rustls-no-provider` (the crate's main dependency unifies features
/// with the dev one): it panics on building a client unless a provider is installed, even for
/// plain http. Installing twice is fine: the second attempt is refused and ignored.
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// Serves an emulator with `serve` (e.g. `|listener, stop| emulator.clone().serve(listener,
/// stop)`) on a free port, and builds `client` to talk to it.
pub(crate) async fn start<F, Fut>(client: reqwest::ClientBuilder, serve: F) -> Running
where
    F: FnOnce(TcpListener, Stop) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        Box::pin(async {
            let _ = rx.await;
        }),
    ));
    Running {
        base: format!("http://{addr}"),
        http: client.build().unwrap(),
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl Running {
    /// Stops the emulator and waits until `serve` returned `Ok`.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}
