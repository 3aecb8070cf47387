//! The store suite (`super`): What several instances share: heartbeats, the vendor rate, vendor signals.

use super::*;

pub async fn heartbeats_count_instances_until_they_run_out_or_leave(db: &TestDb) {
    let (s1, s2) = (db.store().await, db.store().await);
    let names = |members: Vec<loyalty_bridge::store::Member>| {
        members.into_iter().map(|m| m.instance).collect::<Vec<_>>()
    };
    assert_eq!(
        names(s1.heartbeat("a", T0, T0 + 3_000).await.unwrap()),
        ["a"]
    );
    let seen = s2.heartbeat("b", T0 + 500, T0 + 3_500).await.unwrap();
    assert_eq!(names(seen.clone()), ["a", "b"]);
    assert_eq!(
        (seen[0].joined_ms, seen[0].beat_ms, seen[1].joined_ms),
        (T0, T0, T0 + 500)
    );
    // A later beat keeps the first one's join time.
    let seen = s1.heartbeat("a", T0 + 1_000, T0 + 4_000).await.unwrap();
    assert_eq!((seen[0].joined_ms, seen[0].beat_ms), (T0, T0 + 1_000));
    // "b" stops beating: it runs out.
    assert_eq!(
        names(s1.heartbeat("a", T0 + 3_600, T0 + 6_600).await.unwrap()),
        ["a"]
    );
    // One that leaves stops counting at once.
    s2.heartbeat("b", T0 + 3_700, T0 + 6_700).await.unwrap();
    s2.leave("b").await.unwrap();
    assert_eq!(
        names(s1.heartbeat("a", T0 + 3_800, T0 + 6_800).await.unwrap()),
        ["a"]
    );
    assert!(s1.prune(settled_before(T0 + 10 * MIN)).await.unwrap() >= 1);
    assert!(
        s1.heartbeat("c", T0 + 10 * MIN, T0 + 10 * MIN + 1)
            .await
            .unwrap()
            .len()
            == 1
    );
}

pub async fn rate_take_counts_each_call_once_across_handles(db: &TestDb) {
    use loyalty_bridge::store::RateTake;
    let (s1, s2) = (db.store().await, db.store().await);
    // One call every 100 s, a burst of 5: nothing comes back while the test runs (the
    // rate's clock is the database's own).
    const INTERVAL: i64 = 100_000_000;
    const TOLERANCE: i64 = 4 * INTERVAL;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
        tasks.push(tokio::spawn(async move {
            s.rate_take("t1", INTERVAL, TOLERANCE, 0, 0).await.unwrap()
        }));
    }
    let mut went = 0;
    for t in tasks {
        match t.await.unwrap() {
            RateTake::Go { wait_us } => {
                assert_eq!(wait_us, 0);
                went += 1;
            }
            RateTake::Refused { wait_us } => {
                assert!(
                    wait_us > INTERVAL - 60_000_000 && wait_us <= INTERVAL,
                    "{wait_us}"
                );
            }
        }
    }
    assert_eq!(went, 5, "the burst, and not one call more");
    // Callers that may wait are counted with their turn: one interval apart.
    let go = |t| match t {
        RateTake::Go { wait_us } => wait_us,
        RateTake::Refused { wait_us } => panic!("refused, wait {wait_us}"),
    };
    let first = go(s1
        .rate_take("t1", INTERVAL, TOLERANCE, 250_000_000, 0)
        .await
        .unwrap());
    let second = go(s2
        .rate_take("t1", INTERVAL, TOLERANCE, 250_000_000, 0)
        .await
        .unwrap());
    assert!(
        first > INTERVAL - 60_000_000 && first <= INTERVAL,
        "{first}"
    );
    assert!(
        (second - first - INTERVAL).abs() < 60_000_000,
        "{first} {second}"
    );
    assert!(matches!(
        s1.rate_take("t1", INTERVAL, TOLERANCE, 250_000_000, 0).await.unwrap(),
        RateTake::Refused { wait_us } if wait_us > 250_000_000
    ));
    // Tenants are separate; a charged burst is spent but for one call.
    assert_eq!(
        s1.rate_take("t2", INTERVAL, TOLERANCE, 0, TOLERANCE)
            .await
            .unwrap(),
        RateTake::Go { wait_us: 0 }
    );
    assert!(matches!(
        s2.rate_take("t2", INTERVAL, TOLERANCE, 0, 0).await.unwrap(),
        RateTake::Refused { .. }
    ));
    // Old rows are pruned (the rate's times are microseconds; prune takes milliseconds).
    let far = chrono::Utc::now().timestamp_millis() + 1_000 * 24 * 3600 * 1000;
    assert!(s1.prune(settled_before(far)).await.unwrap() >= 2);
    assert_eq!(
        s1.rate_take("t1", INTERVAL, TOLERANCE, 0, 0).await.unwrap(),
        RateTake::Go { wait_us: 0 }
    );
}

pub async fn vendor_signals_only_rise_and_run_out(db: &TestDb) {
    let (s1, s2) = (db.store().await, db.store().await);
    s1.vendor_signal("t1", T0 + 5_000, 0).await.unwrap();
    s2.vendor_signal("t1", T0 + 2_000, T0 + 8_000)
        .await
        .unwrap();
    s2.vendor_signal("t2", 0, T0 + 1_000).await.unwrap();
    let mut seen = s2.vendor_signals(T0).await.unwrap();
    seen.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let view: Vec<_> = seen
        .iter()
        .map(|s| (s.tenant.as_str(), s.paused_until_ms, s.open_until_ms))
        .collect();
    assert_eq!(
        view,
        [("t1", T0 + 5_000, T0 + 8_000), ("t2", 0, T0 + 1_000)]
    );
    // Only running ones come back.
    let later = s1.vendor_signals(T0 + 6_000).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(
        (later[0].tenant.as_str(), later[0].open_until_ms),
        ("t1", T0 + 8_000)
    );
    assert!(s1.vendor_signals(T0 + 8_000).await.unwrap().is_empty());
    assert!(s1.prune(settled_before(T0 + 9_000)).await.unwrap() >= 2);
}
