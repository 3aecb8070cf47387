//! Criterion benchmark of the bridge's whole CPU work for one recalc without the sockets (issue
//! #7): the body bytes parsed and validated, the plan run (balance and settings from the step
//! cache, as in production; `calc` answered from memory), the answer checked against the
//! LoyaltyAPI model and serialized — on the mapping engine's reference cart
//! (`crates/engine/benches/maxma_recalc`, whose transforms the engine's own bench times). The
//! load harness (`benches/load/`) measures the same work with HTTP.
//!
//! Run: `cargo bench --bench recalc`.

#[path = "../crates/engine/benches/maxma_recalc/mod.rs"]
mod maxma_recalc;

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use engine::plan::Mapping;
use loyalty_bridge::cache::StepCache;
use loyalty_bridge::loyalty::examples;
use loyalty_bridge::loyalty::ops::{Op, OpContext, Request};
use loyalty_bridge::mapping::memory::Memory;
use loyalty_bridge::upstream::{Upstream, UpstreamFuture, UpstreamRequest, UpstreamResponse};
use maxma_recalc::{calc_answer, cart, hand_response, root_after_calc};
use serde_json::Value;

/// The server's allocator (jemalloc, `src/main.rs`), counting allocations, so the bench can
/// report how many one recalc makes (the hot path is meant to stay allocation-light).
struct CountingAllocator;

#[cfg(not(target_env = "msvc"))]
static BACKING: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(target_env = "msvc")]
static BACKING: std::alloc::System = std::alloc::System;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Bytes asked for (a reallocation counts its new size).
static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the backing allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which the backing one shares.
        unsafe { BACKING.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by the backing allocator with `layout` (see `alloc`).
        unsafe { BACKING.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
        unsafe { BACKING.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Answers each step from memory, like the MAXMA sandbox would (no recording: it runs millions
/// of times).
struct MemoryVendor {
    balance: Bytes,
    settings: Bytes,
    calc: Bytes,
    /// Each answer is "not ready" once before it is given, so that requests driven together
    /// all reach the vendor before any reads its answer (see `recalc_interleaved`).
    pending_once: bool,
}

/// Pending on its first poll (waking its task at once), ready on the next.
struct PendingOnce {
    polled: bool,
}

impl std::future::Future for PendingOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.polled {
            return std::task::Poll::Ready(());
        }
        self.polled = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl Upstream for MemoryVendor {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        let body = match request.step.as_str() {
            "balance" => self.balance.clone(),
            "settings" => self.settings.clone(),
            _ => self.calc.clone(),
        };
        // Without `pending_once`, as if polled already: ready at once.
        let wait = PendingOnce {
            polled: !self.pending_once,
        };
        Box::pin(async move {
            wait.await;
            Ok(UpstreamResponse {
                status: 200,
                body,
                retry_after: None,
            })
        })
    }
}

fn recalc_in_process(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml");
    let mapping = Arc::new(Mapping::load(&path).expect("mappings/maxma.toml loads"));
    let body = serde_json::to_vec(&cart()).expect("cart serializes");
    let vendor = Arc::new(MemoryVendor {
        // As the MAXMA sandbox answers for the cart's customer.
        balance: Bytes::from_static(
            r#"{"bonuses":[{"amount":500,"expireAt":null}],"client":{"birthdate":"1985-03-14","bonuses":500,"card":"DEMO-0001","email":"ivanov@example.com","externalId":"demo-1","fullName":"Иванов Иван Иванович","gender":1,"name":"Иван","patronymicName":"Иванович","pendingBonuses":0,"phoneNumber":"+79990000001","surname":"Иванов"},"level":{"level":1,"levelSpent":0.00,"name":"Базовый","progressPercent":0,"remaining":0.00},"walletsLink":"https://wallet.maxma-sandbox.invalid/c/0"}"#.as_bytes(),
        ),
        settings: Bytes::from_static(
            br#"{"phoneVerification": false, "bonusApplyingConfirmation": false}"#,
        ),
        calc: Bytes::from(serde_json::to_vec(&calc_answer()).expect("calc serializes")),
        pending_once: false,
    });
    let tenant = Arc::new(examples::example_tenant(&mapping));
    let memory = Arc::new(Memory::new());
    // One cache for the whole run: after the first call balance and settings are hits.
    let cache = Arc::new(StepCache::new(1_000));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let context = |vendor: Arc<MemoryVendor>| OpContext {
        tenant: tenant.clone(),
        request_id: "bench-1".into(),
        mapping: Some(mapping.clone()),
        upstream: vendor,
        upstream_calls: Default::default(),
        deadline: Instant::now() + Duration::from_secs(10),
        memory: memory.clone(),
        cache: cache.clone(),
        limiter: None,
        breaker: None,
        journal: None,
        metrics: None,
    };
    /// One recalc as the server runs it: body parsed and validated, plan run, answer written.
    async fn recalc(ctx: &OpContext, body: &[u8]) -> Vec<u8> {
        let request =
            Request::parse(Op::RetaildemandRecalc, None, body).expect("the cart is valid");
        let reply = request.apply(ctx).await.expect("the recalc answers");
        reply.body().expect("serializes").expect("has a body")
    }
    let once = || {
        let ctx = context(vendor.clone());
        runtime.block_on(recalc(&ctx, black_box(&body)))
    };
    let answer: Value = serde_json::from_slice(&once()).expect("JSON answer");
    // Same data as the engine's transform benches: the same answer, through the typed model.
    assert_eq!(
        answer,
        hand_response(&root_after_calc()),
        "in-process answer differs"
    );
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let bytes_before = ALLOCATED_BYTES.load(Ordering::Relaxed);
    once();
    eprintln!(
        "recalc_in_process: {} allocations (incl. reallocations), {} bytes allocated per recalc",
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes_before
    );
    let mut g = c.benchmark_group("recalc_in_process");
    g.bench_function("parse_run_check_serialize", |b| b.iter(once));
    g.finish();

    // The same recalc, INTERLEAVED at a time on one thread, each parsed and sent before any
    // reads its answer, as one worker's connections are under load: per recalc against the
    // above, what interleaving alone costs (its trees may be out of cache when read again).
    const INTERLEAVED: usize = 32;
    let vendor = Arc::new(MemoryVendor {
        pending_once: true,
        balance: vendor.balance.clone(),
        settings: vendor.settings.clone(),
        calc: vendor.calc.clone(),
    });
    let together = || {
        let ctx = context(vendor.clone());
        runtime.block_on(async {
            let mut recalcs: Vec<_> = (0..INTERLEAVED)
                .map(|_| Box::pin(recalc(&ctx, black_box(&body))))
                .collect();
            let mut answers: Vec<Option<Vec<u8>>> = vec![None; INTERLEAVED];
            // Polled in turn, like one worker's connections: all reach the vendor, then all
            // read their answers.
            std::future::poll_fn(|cx| {
                let mut pending = false;
                for (recalc, answer) in recalcs.iter_mut().zip(answers.iter_mut()) {
                    if answer.is_none() {
                        match recalc.as_mut().poll(cx) {
                            std::task::Poll::Ready(body) => *answer = Some(body),
                            std::task::Poll::Pending => pending = true,
                        }
                    }
                }
                if pending {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            })
            .await;
            answers
        })
    };
    for body in together() {
        let answer: Value = serde_json::from_slice(&body.expect("answered")).expect("JSON");
        assert_eq!(
            answer,
            hand_response(&root_after_calc()),
            "interleaved answer differs"
        );
    }
    let mut g = c.benchmark_group("recalc_interleaved");
    g.throughput(criterion::Throughput::Elements(INTERLEAVED as u64));
    g.bench_function("32_at_a_time", |b| b.iter(together));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = recalc_in_process
}
criterion_main!(benches);
