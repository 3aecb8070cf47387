//! Connection threads ("lanes"): each a single-threaded tokio runtime. A connection lives on
//! one lane; its requests run there too unless that lane is busy, when the operation moves to
//! an idle lane.
//!
//! Why not tokio's work-stealing runtime: at a light load (1,000 recalc/s on 2 cores) its two
//! workers take turns with every request, each waking from sleep for it, and the request
//! pays for the wake-ups and for caches the other core left cold: the added latency was
//! 0.35 ms at the median, against 0.23 with one worker (`benches/results.md`). One worker
//! cannot use the second core under a heavy load, though. Lanes give both: everything runs
//! on the first lane while it keeps up; once it has been running without a pause for
//! [`BUSY_AFTER`], new connections and operations go to a lane that is not busy.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

/// How long a lane may run without a pause before it counts as busy: about one recalc's
/// work. A lane that has run longer has requests waiting behind the current one.
pub const BUSY_AFTER: Duration = Duration::from_micros(250);

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// The lane this thread runs (none off the lanes).
    static CURRENT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

struct Lane {
    /// Connections handed to this lane (`None` once stopped).
    jobs: Mutex<Option<UnboundedSender<Job>>>,
    handle: Handle,
    /// Connections open on this lane.
    open: Arc<AtomicUsize>,
    /// Microseconds since [`Lanes::epoch`] at which the lane last woke up, plus one; 0 while
    /// it sleeps.
    awake_since: Arc<AtomicU64>,
    /// Operations moved here from a busy lane (`/metrics`).
    moved_in: Counter,
}

pub use crate::metrics::LaneState;

/// The connection threads of one server.
pub struct Lanes {
    lanes: Vec<Lane>,
    epoch: Instant,
    /// Lane threads still running.
    running: Arc<AtomicUsize>,
}

impl Lanes {
    /// Starts `count` lanes (at least one), counting moved operations on unregistered counters.
    pub fn start(count: usize) -> std::io::Result<Arc<Lanes>> {
        Lanes::start_with(count, |_| Counter::default())
    }

    /// Starts `count` lanes (at least one); lane `i` counts the operations moved to it on
    /// `moved_in(i)`.
    pub fn start_with(
        count: usize,
        moved_in: impl Fn(usize) -> Counter,
    ) -> std::io::Result<Arc<Lanes>> {
        let epoch = Instant::now();
        let running = Arc::new(AtomicUsize::new(0));
        let mut lanes = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let awake_since = Arc::new(AtomicU64::new(0));
            let woke = awake_since.clone();
            let slept = awake_since.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_unpark(move || {
                    let micros = epoch.elapsed().as_micros() as u64;
                    woke.store(micros + 1, Ordering::Relaxed);
                })
                .on_thread_park(move || slept.store(0, Ordering::Relaxed))
                .build()?;
            let handle = runtime.handle().clone();
            let (jobs, mut queue) = unbounded_channel::<Job>();
            let running = Counted::new(running.clone());
            std::thread::Builder::new()
                .name(format!("lane-{index}"))
                .spawn(move || {
                    let _running = running;
                    CURRENT.with(|lane| lane.set(Some(index)));
                    // Until the server stops: then the runtime and what still runs on it go.
                    runtime.block_on(async move {
                        while let Some(job) = queue.recv().await {
                            job();
                        }
                    });
                })?;
            lanes.push(Lane {
                jobs: Mutex::new(Some(jobs)),
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                awake_since,
                moved_in: moved_in(index),
            });
        }
        Ok(Arc::new(Lanes {
            lanes,
            epoch,
            running,
        }))
    }

    /// How long `lane` has been running without a pause (zero while it sleeps).
    fn awake_for(&self, lane: &Lane) -> Duration {
        match lane.awake_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => {
                let now = self.epoch.elapsed().as_micros() as u64;
                Duration::from_micros(now.saturating_sub(since - 1))
            }
        }
    }

    fn busy(&self, lane: &Lane) -> bool {
        self.awake_for(lane) >= BUSY_AFTER
    }

    /// The lane for a new connection: the first that is not busy, else the one with the
    /// fewest connections.
    fn place(&self) -> usize {
        (0..self.lanes.len())
            .find(|&i| !self.busy(&self.lanes[i]))
            .or_else(|| {
                (0..self.lanes.len()).min_by_key(|&i| self.lanes[i].open.load(Ordering::Relaxed))
            })
            .unwrap_or(0)
    }

    /// Serves `stream` on a lane: `serve` runs there, on the stream registered with that
    /// lane's runtime.
    pub fn hand<F, Fut>(&self, stream: tokio::net::TcpStream, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let lane = &self.lanes[self.place()];
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot move a connection to a connection thread");
                return;
            }
        };
        let counter = Counted::new(lane.open.clone());
        let jobs = lane.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(jobs) = jobs.as_ref() else { return };
        let _ = jobs.send(Box::new(move || {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register a connection");
                    return;
                }
            };
            tokio::spawn(async move {
                let _counted = counter;
                serve(stream).await
            });
        }));
    }

    /// Runs `work` on another lane when the calling lane is busy and another is not; gives
    /// it back to run here otherwise (and off the lanes).
    pub fn offload<F>(&self, work: F) -> Result<JoinHandle<F::Output>, F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(here) = CURRENT.with(|lane| lane.get()) else {
            return Err(work);
        };
        let Some(current) = self.lanes.get(here) else {
            return Err(work);
        };
        if !self.busy(current) {
            return Err(work);
        }
        match self
            .lanes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != here)
            .map(|(_, lane)| (self.awake_for(lane), lane))
            .min_by_key(|(awake, _)| *awake)
        {
            Some((awake, lane)) if awake < BUSY_AFTER => {
                lane.moved_in.inc();
                Ok(lane.handle.spawn(work))
            }
            _ => Err(work),
        }
    }

    /// Stops the lanes: each ends once the connections handed to it are started, and what
    /// still runs on it is dropped (the server calls this after its grace period).
    pub fn stop(&self) {
        for lane in &self.lanes {
            lane.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Each lane's state, in lane order.
    pub fn states(&self) -> Vec<LaneState> {
        self.lanes
            .iter()
            .map(|lane| LaneState {
                connections: lane.open.load(Ordering::Relaxed),
                tasks: lane.handle.metrics().num_alive_tasks(),
            })
            .collect()
    }

    /// Lane threads that have not ended yet.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
}

/// A server that did not get as far as serving still ends its lanes. (A serving one stops them
/// itself: its connections' tasks, on the lanes, hold the server and so its lanes.)
impl Drop for Lanes {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One open connection of a lane, counted while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::Relaxed);
        Counted(open)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks `lane` as running without a pause for `for_how_long`, as its runtime's hooks
    /// would (they run only when it parks and wakes, so this holds until it next sleeps).
    fn awake(lanes: &Lanes, lane: usize, for_how_long: Duration) {
        // The lanes' clock starts with them: "since" cannot be before it.
        while lanes.epoch.elapsed() <= for_how_long {
            std::thread::sleep(for_how_long);
        }
        let since = lanes
            .epoch
            .elapsed()
            .saturating_sub(for_how_long)
            .as_micros() as u64;
        lanes.lanes[lane]
            .awake_since
            .store(since + 1, Ordering::Relaxed);
    }

    /// Runs `f` on `lane`'s thread and returns what it gives.
    async fn on_lane<T: Send + 'static>(
        lanes: &Arc<Lanes>,
        lane: usize,
        f: impl FnOnce(Arc<Lanes>) -> T + Send + 'static,
    ) -> T {
        let lanes2 = lanes.clone();
        lanes.lanes[lane]
            .handle
            .spawn(async move { f(lanes2) })
            .await
            .unwrap()
    }

    fn which_lane() -> Option<usize> {
        CURRENT.with(|lane| lane.get())
    }

    /// From lane 0, with lanes 0 and 1 running without a pause for the given times, offers an
    /// operation: the lane it ran on when handed over, `None` when it was given back.
    async fn offered_from_lane_0(awake_0: Duration, awake_1: Duration) -> Option<usize> {
        let lanes = Lanes::start(2).unwrap();
        let handed = on_lane(&lanes, 0, move |lanes| {
            awake(&lanes, 0, awake_0);
            awake(&lanes, 1, awake_1);
            lanes.offload(async { which_lane() }).ok()
        })
        .await;
        let ran_on = match handed {
            Some(task) => Some(task.await.unwrap().expect("ran on a lane")),
            None => None,
        };
        lanes.stop();
        ran_on
    }

    #[tokio::test]
    async fn a_lane_that_keeps_up_runs_the_operation_itself() {
        assert_eq!(
            offered_from_lane_0(Duration::ZERO, Duration::ZERO).await,
            None
        );
    }

    #[tokio::test]
    async fn a_busy_lane_hands_the_operation_to_an_idle_one() {
        assert_eq!(
            offered_from_lane_0(BUSY_AFTER * 4, Duration::ZERO).await,
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_moved_operation_is_counted_on_the_lane_it_moved_to() {
        let lanes = Lanes::start(2).unwrap();
        let moved = on_lane(&lanes, 0, |lanes| {
            awake(&lanes, 0, BUSY_AFTER * 4);
            lanes.offload(async {}).ok()
        })
        .await;
        moved.expect("moved").await.unwrap();
        assert_eq!(lanes.lanes[0].moved_in.get(), 0);
        assert_eq!(lanes.lanes[1].moved_in.get(), 1);
        lanes.stop();
    }

    #[tokio::test]
    async fn when_every_lane_is_busy_the_operation_stays() {
        assert_eq!(
            offered_from_lane_0(BUSY_AFTER * 4, BUSY_AFTER * 2).await,
            None
        );
    }

    #[tokio::test]
    async fn off_the_lanes_nothing_moves() {
        let lanes = Lanes::start(2).unwrap();
        awake(&lanes, 1, Duration::ZERO);
        assert!(lanes.offload(async {}).is_err());
        lanes.stop();
    }

    #[test]
    fn new_connections_go_to_the_first_lane_that_keeps_up() {
        let lanes = Lanes::start(3).unwrap();
        assert_eq!(lanes.place(), 0);
        awake(&lanes, 0, BUSY_AFTER * 4);
        assert_eq!(lanes.place(), 1);
        // All busy: the fewest connections.
        awake(&lanes, 1, BUSY_AFTER * 4);
        awake(&lanes, 2, BUSY_AFTER * 4);
        lanes.lanes[0].open.store(5, Ordering::Relaxed);
        lanes.lanes[1].open.store(2, Ordering::Relaxed);
        lanes.lanes[2].open.store(3, Ordering::Relaxed);
        assert_eq!(lanes.place(), 1);
        lanes.stop();
    }

    #[tokio::test]
    async fn a_connection_is_served_on_its_lane_and_counted_while_open() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let lanes = Lanes::start(2).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        lanes.hand(server, |mut stream| async move {
            let lane = which_lane().map_or(b'-', |i| b'0' + i as u8);
            let _ = stream.write_all(&[lane]).await;
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        });
        let mut lane = [0u8];
        client.read_exact(&mut lane).await.unwrap();
        assert_eq!(&lane, b"0");
        assert_eq!(lanes.lanes[0].open.load(Ordering::Relaxed), 1);
        assert_eq!(lanes.states()[0].connections, 1);
        assert_eq!(lanes.states()[0].tasks, 1, "the connection's task");
        assert_eq!(lanes.states()[1].connections, 0);
        assert_eq!(lanes.states()[1].tasks, 0);
        drop(client);
        for _ in 0..200 {
            if lanes.lanes[0].open.load(Ordering::Relaxed) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(lanes.lanes[0].open.load(Ordering::Relaxed), 0);
        lanes.stop();
    }

    #[tokio::test]
    async fn stopped_lanes_end_their_threads() {
        let lanes = Lanes::start(2).unwrap();
        assert_eq!(lanes.running(), 2);
        lanes.stop();
        for _ in 0..200 {
            if lanes.running() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(lanes.running(), 0);
    }
}
