//! Serving any vendor emulator on 127.0.0.1:0 for a test: every emulator of `crates/emulators`
//! serves the same way (`serve(self, listener, shutdown)` on the shared harness), so one
//! handle starts and stops them all.

use std::future::Future;
use std::pin::Pin;

use emulators::maxma::MaxmaSandbox;
use emulators::moysklad::MoyskladSandbox;
use emulators::premiumbonus::PremiumBonusSandbox;
use emulators::uds::UdsSandbox;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The future an emulator serves until: it resolves when the test stops the emulator.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the emulators have in common: serving on a bound listener until a shutdown future
/// resolves. (Each sandbox's `serve` is an inherent method; this names it once for the tests.)
pub trait Emulator: Send + 'static {
    fn serve_on(
        self,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'static;
}

macro_rules! emulators {
    ($($sandbox:ty),* $(,)?) => {$(
        impl Emulator for $sandbox {
            fn serve_on(
                self,
                listener: TcpListener,
                shutdown: Shutdown,
            ) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
                self.serve(listener, shutdown)
            }
        }
    )*};
}

emulators!(
    MaxmaSandbox,
    UdsSandbox,
    PremiumBonusSandbox,
    MoyskladSandbox
);

/// An emulator served on 127.0.0.1:0; dropping it stops the emulator (without waiting).
pub struct ServedEmulator {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ServedEmulator {
    /// Serves `emulator` (a clone of the sandbox the test keeps, usually) on a fresh port.
    pub async fn start(emulator: impl Emulator) -> ServedEmulator {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async {
            // A dropped sender stops the emulator too.
            let _ = rx.await;
        });
        let task = tokio::spawn(emulator.serve_on(listener, shutdown));
        ServedEmulator {
            url,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops it and waits until it has: it must end without an error.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("the emulator's task did not panic")
                .expect("the emulator stopped cleanly");
        }
    }
}

impl Drop for ServedEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
