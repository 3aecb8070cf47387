//! The store suite (`super`): Journal records and the outbox: exactly-once begins, leases, delivery order.

use super::*;

pub async fn begin_started_then_in_flight_then_settled(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(
        s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
        Begin::Started
    );
    let Begin::InFlight(r) = s
        .begin("a", Kind::Sale, "s1", T0 + 1, T0 + 1 + MIN)
        .await
        .unwrap()
    else {
        panic!("the same id again is in flight")
    };
    assert_eq!(r.state, RecordState::InFlight);
    assert_eq!(r.lease_until_ms, T0 + MIN);
    assert_eq!(
        (r.tenant.as_str(), r.kind, r.id.as_str()),
        ("a", Kind::Sale, "s1")
    );
    // Sale and return journals are apart.
    assert_eq!(
        s.begin("a", Kind::Return, "s1", T0, T0 + MIN)
            .await
            .unwrap(),
        Begin::Started
    );
    s.finish("a", Kind::Sale, "s1", &json!({"op": 7}), T0 + 2)
        .await
        .unwrap();
    let Begin::Settled(r) = s
        .begin("a", Kind::Sale, "s1", T0 + 3, T0 + MIN)
        .await
        .unwrap()
    else {
        panic!("a finished sale is settled")
    };
    assert_eq!(r.state, RecordState::Done);
    assert_eq!(r.kept, json!({"op": 7}));
    // Even long after: done is done.
    assert!(matches!(
        s.begin("a", Kind::Sale, "s1", T0 + 100 * MIN, T0 + 101 * MIN)
            .await
            .unwrap(),
        Begin::Settled(_)
    ));
}

pub async fn failed_record_can_be_begun_again(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(
        s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
        Begin::Started
    );
    s.abandon("a", Kind::Sale, "s1", T0 + 1).await.unwrap();
    let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Failed);
    assert_eq!(
        s.begin("a", Kind::Sale, "s1", T0 + 2, T0 + 2 + MIN)
            .await
            .unwrap(),
        Begin::Started
    );
    let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::InFlight);
    assert_eq!(r.lease_until_ms, T0 + 2 + MIN);
    assert_eq!(r.created_ms, T0);
    assert_eq!(r.updated_ms, T0 + 2);
}

pub async fn expired_lease_is_taken_over(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(
        s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
        Begin::Started
    );
    assert!(matches!(
        s.begin("a", Kind::Sale, "s1", T0 + MIN - 1, T0 + 2 * MIN)
            .await
            .unwrap(),
        Begin::InFlight(_)
    ));
    assert_eq!(
        s.begin("a", Kind::Sale, "s1", T0 + MIN, T0 + 3 * MIN)
            .await
            .unwrap(),
        Begin::Started
    );
    let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
    assert_eq!(r.lease_until_ms, T0 + 3 * MIN);
}

pub async fn fifty_concurrent_begins_on_two_handles_start_once(db: &TestDb) {
    let handles = [db.store().await, db.store().await];
    for round in 0..3 {
        let id = format!("sale-{round}");
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = Arc::clone(&handles[i % 2]);
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                s.begin("a", Kind::Sale, &id, T0, T0 + MIN).await.unwrap()
            }));
        }
        let mut started = 0;
        for t in tasks {
            match t.await.unwrap() {
                Begin::Started => started += 1,
                Begin::InFlight(r) => assert_eq!(r.state, RecordState::InFlight),
                Begin::Settled(r) => panic!("nothing settled it: {r:?}"),
            }
        }
        assert_eq!(started, 1, "round {round}");
    }
    // Taking over a failed record concurrently: exactly one too.
    handles[0]
        .abandon("a", Kind::Sale, "sale-0", T0 + 1)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = Arc::clone(&handles[i % 2]);
        tasks.push(tokio::spawn(async move {
            s.begin("a", Kind::Sale, "sale-0", T0 + 2, T0 + MIN)
                .await
                .unwrap()
        }));
    }
    let mut started = 0;
    for t in tasks {
        if t.await.unwrap() == Begin::Started {
            started += 1;
        }
    }
    assert_eq!(started, 1, "take-over of a failed record");
}

pub async fn tenants_are_isolated(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(
        s.begin("a", Kind::Sale, "x", T0, T0 + MIN).await.unwrap(),
        Begin::Started
    );
    assert_eq!(
        s.begin("b", Kind::Sale, "x", T0, T0 + MIN).await.unwrap(),
        Begin::Started
    );
    s.finish("a", Kind::Sale, "x", &json!("a's"), T0)
        .await
        .unwrap();
    assert!(matches!(
        s.begin("b", Kind::Sale, "x", T0 + 1, T0 + MIN)
            .await
            .unwrap(),
        Begin::InFlight(_)
    ));
    s.abandon("b", Kind::Sale, "x", T0 + 2).await.unwrap();
    assert_eq!(
        s.record("a", Kind::Sale, "x").await.unwrap().unwrap().state,
        RecordState::Done
    );
    assert_eq!(
        s.record("b", Kind::Sale, "x").await.unwrap().unwrap().state,
        RecordState::Failed
    );
    assert_eq!(s.record("c", Kind::Sale, "x").await.unwrap(), None);
}

pub async fn finish_keeps_what_the_mapping_keeps(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(s.record("a", Kind::Return, "r1").await.unwrap(), None);
    assert_eq!(
        s.begin("a", Kind::Return, "r1", T0, T0 + MIN)
            .await
            .unwrap(),
        Begin::Started
    );
    let r = s.record("a", Kind::Return, "r1").await.unwrap().unwrap();
    assert_eq!(r.kept, serde_json::Value::Null);
    let kept: serde_json::Value = serde_json::from_str(
        r#"{"purchase_id": "p-1", "amount": 1107.50, "rows": [1, 2.25, "x"], "big": 123456789012345678901234}"#,
    )
    .unwrap();
    s.finish("a", Kind::Return, "r1", &kept, T0 + 5)
        .await
        .unwrap();
    let r = s.record("a", Kind::Return, "r1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Done);
    assert_eq!(r.kept, kept);
    assert_eq!(
        r.kept["amount"].to_string(),
        "1107.50",
        "numbers are kept as written"
    );
    assert_eq!((r.created_ms, r.updated_ms), (T0, T0 + 5));
}

pub async fn enqueue_queues_the_record_and_begin_settles(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(
        s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap(),
        Begin::Started
    );
    let request = json!({"meta": {"id": "s1"}, "sum": 10.5});
    let seq = s
        .enqueue("a", Kind::Sale, "s1", &request, T0 + 1)
        .await
        .unwrap();
    let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Queued);
    let Begin::Settled(r) = s
        .begin("a", Kind::Sale, "s1", T0 + 10 * MIN, T0 + 11 * MIN)
        .await
        .unwrap()
    else {
        panic!("a queued sale is settled")
    };
    assert_eq!(r.state, RecordState::Queued);
    let item = s.next_pending("a").await.unwrap().unwrap();
    assert_eq!(item.seq, seq);
    assert_eq!(item.request, request);
    assert_eq!((item.kind, item.id.as_str()), (Kind::Sale, "s1"));
    assert_eq!(item.state, OutboxState::Pending);
    assert_eq!(item.attempts, 0);
    assert_eq!(item.next_attempt_ms, T0 + 1);
    assert_eq!(item.created_ms, T0 + 1);
    assert_eq!(item.last_error, None);
}

pub async fn next_pending_follows_seq_per_tenant(db: &TestDb) {
    let s = db.store().await;
    let mut seqs = Vec::new();
    for (i, tenant) in ["a", "b", "a", "b", "a"].into_iter().enumerate() {
        let id = format!("s{i}");
        s.begin(tenant, Kind::Sale, &id, T0, T0 + MIN)
            .await
            .unwrap();
        seqs.push(
            s.enqueue(tenant, Kind::Sale, &id, &json!(i), T0 + i as i64)
                .await
                .unwrap(),
        );
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq increases: {seqs:?}"
    );
    assert_eq!(s.next_pending("a").await.unwrap().unwrap().id, "s0");
    assert_eq!(s.next_pending("b").await.unwrap().unwrap().id, "s1");
    // A postponed head is still next: a later item never overtakes it.
    s.postpone(seqs[0], "timeout", T0 + 60 * MIN).await.unwrap();
    assert_eq!(s.next_pending("a").await.unwrap().unwrap().id, "s0");
    s.delivered(seqs[0], &json!(null), T0 + 1).await.unwrap();
    assert_eq!(s.next_pending("a").await.unwrap().unwrap().id, "s2");
    s.delivered(seqs[2], &json!(null), T0 + 1).await.unwrap();
    s.delivered(seqs[4], &json!(null), T0 + 1).await.unwrap();
    assert_eq!(s.next_pending("a").await.unwrap(), None);
    assert_eq!(s.next_pending("b").await.unwrap().unwrap().id, "s1");
    assert_eq!(s.next_pending("nobody").await.unwrap(), None);
    let all: Vec<_> = s
        .outbox_items(None, false)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(all, ["s1", "s3"]);
    let all: Vec<_> = s
        .outbox_items(None, true)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(all, seqs, "newest last");
    let a: Vec<_> = s
        .outbox_items(Some("a"), true)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(a, ["s0", "s2", "s4"]);
}

pub async fn postpone_refused_delivered_count_attempts(db: &TestDb) {
    let s = db.store().await;
    s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap();
    let seq = s
        .enqueue("a", Kind::Sale, "s1", &json!({}), T0)
        .await
        .unwrap();
    s.postpone(seq, "vendor timeout", T0 + MIN).await.unwrap();
    s.postpone(seq, "vendor 503", T0 + 3 * MIN).await.unwrap();
    let item = s.next_pending("a").await.unwrap().unwrap();
    assert_eq!(item.attempts, 2);
    assert_eq!(item.last_error.as_deref(), Some("vendor 503"));
    assert_eq!(item.next_attempt_ms, T0 + 3 * MIN);
    assert_eq!(item.state, OutboxState::Pending);

    s.refused(seq, "card blocked", T0 + 4 * MIN).await.unwrap();
    assert_eq!(s.next_pending("a").await.unwrap(), None);
    let items = s.outbox_items(Some("a"), false).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].state, OutboxState::Failed);
    assert_eq!(items[0].attempts, 3);
    assert_eq!(items[0].last_error.as_deref(), Some("card blocked"));
    let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Failed);
    // Postponing a refused item changes nothing.
    s.postpone(seq, "late", T0).await.unwrap();
    assert_eq!(
        s.outbox_items(Some("a"), false).await.unwrap()[0].attempts,
        3
    );
}

pub async fn delivered_marks_the_record_done(db: &TestDb) {
    let s = db.store().await;
    s.begin("a", Kind::Return, "r1", T0, T0 + MIN)
        .await
        .unwrap();
    let seq = s
        .enqueue("a", Kind::Return, "r1", &json!({"r": 1}), T0)
        .await
        .unwrap();
    s.delivered(seq, &json!({"vendor_id": 42}), T0 + 7)
        .await
        .unwrap();
    let r = s.record("a", Kind::Return, "r1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Done);
    assert_eq!(r.kept, json!({"vendor_id": 42}));
    assert_eq!(r.updated_ms, T0 + 7);
    assert_eq!(s.next_pending("a").await.unwrap(), None);
    assert!(s.outbox_items(None, false).await.unwrap().is_empty());
    let all = s.outbox_items(None, true).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, OutboxState::Delivered);
    // Delivered is final for the operator too.
    assert!(!s.outbox_retry(seq, T0).await.unwrap());
    assert!(!s.outbox_drop(seq, T0).await.unwrap());
}

pub async fn outbox_retry_and_drop(db: &TestDb) {
    let s = db.store().await;
    for id in ["s1", "s2", "s3"] {
        s.begin("a", Kind::Sale, id, T0, T0 + MIN).await.unwrap();
    }
    let one = s
        .enqueue("a", Kind::Sale, "s1", &json!(1), T0)
        .await
        .unwrap();
    let two = s
        .enqueue("a", Kind::Sale, "s2", &json!(2), T0)
        .await
        .unwrap();
    let three = s
        .enqueue("a", Kind::Sale, "s3", &json!(3), T0)
        .await
        .unwrap();

    // Retry a refused item: pending again, due now, its record queued again.
    s.refused(one, "no such card", T0 + 1).await.unwrap();
    assert!(s.outbox_retry(one, T0 + 2).await.unwrap());
    let item = s.next_pending("a").await.unwrap().unwrap();
    assert_eq!(
        (item.seq, item.state, item.next_attempt_ms),
        (one, OutboxState::Pending, T0 + 2)
    );
    assert_eq!(
        s.record("a", Kind::Sale, "s1")
            .await
            .unwrap()
            .unwrap()
            .state,
        RecordState::Queued
    );
    // Retry a postponed pending item: due now.
    s.postpone(two, "timeout", T0 + 60 * MIN).await.unwrap();
    assert!(s.outbox_retry(two, T0 + 3).await.unwrap());
    let items = s.outbox_items(Some("a"), false).await.unwrap();
    assert_eq!(items[1].next_attempt_ms, T0 + 3);
    assert!(!s.outbox_retry(999_999, T0).await.unwrap(), "unknown");

    // Drop: the item goes, the record fails, so MoySklad's repeat may try again.
    assert!(s.outbox_drop(two, T0 + 4).await.unwrap());
    assert!(!s.outbox_drop(two, T0 + 4).await.unwrap(), "already gone");
    assert_eq!(
        s.record("a", Kind::Sale, "s2")
            .await
            .unwrap()
            .unwrap()
            .state,
        RecordState::Failed
    );
    assert_eq!(
        s.begin("a", Kind::Sale, "s2", T0 + 5, T0 + MIN)
            .await
            .unwrap(),
        Begin::Started
    );
    let left: Vec<_> = s
        .outbox_items(None, true)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(left, [one, three]);

    // A refused item whose sale a repeat has meanwhile done another way is not retried:
    // delivering it too would do the sale twice.
    s.refused(three, "refused", T0 + 6).await.unwrap();
    assert_eq!(
        s.begin("a", Kind::Sale, "s3", T0 + 7, T0 + MIN)
            .await
            .unwrap(),
        Begin::Started
    );
    s.finish("a", Kind::Sale, "s3", &json!("direct"), T0 + 8)
        .await
        .unwrap();
    assert!(!s.outbox_retry(three, T0 + 9).await.unwrap());
    // Dropping it leaves the done record alone.
    assert!(s.outbox_drop(three, T0 + 10).await.unwrap());
    let r = s.record("a", Kind::Sale, "s3").await.unwrap().unwrap();
    assert_eq!((r.state, r.kept), (RecordState::Done, json!("direct")));
}

pub async fn lease_outbox_is_exclusive_and_expires(db: &TestDb) {
    let (x, y) = (db.store().await, db.store().await);
    assert!(x.lease_outbox("a", "inst-x", T0, T0 + MIN).await.unwrap());
    assert!(
        !y.lease_outbox("a", "inst-y", T0 + 1, T0 + MIN)
            .await
            .unwrap()
    );
    // Another tenant's right is separate.
    assert!(
        y.lease_outbox("b", "inst-y", T0 + 1, T0 + MIN)
            .await
            .unwrap()
    );
    // The holder renews.
    assert!(
        x.lease_outbox("a", "inst-x", T0 + 2, T0 + 2 * MIN)
            .await
            .unwrap()
    );
    assert!(
        !y.lease_outbox("a", "inst-y", T0 + MIN + 1, T0 + 3 * MIN)
            .await
            .unwrap()
    );
    // Ran out: the other takes it, and the first one no longer has it.
    assert!(
        y.lease_outbox("a", "inst-y", T0 + 2 * MIN, T0 + 3 * MIN)
            .await
            .unwrap()
    );
    assert!(
        !x.lease_outbox("a", "inst-x", T0 + 2 * MIN + 1, T0 + 4 * MIN)
            .await
            .unwrap()
    );
    // Released (by its holder only): free at once.
    x.release_outbox_leases("inst-x").await.unwrap();
    assert!(
        !x.lease_outbox("a", "inst-x", T0 + 2 * MIN + 2, T0 + 4 * MIN)
            .await
            .unwrap()
    );
    // A holder gives back all its leases at once (at shutdown), and only its own.
    assert!(
        y.lease_outbox("b", "inst-y", T0 + 2 * MIN, T0 + 3 * MIN)
            .await
            .unwrap()
    );
    assert!(
        x.lease_outbox("d", "inst-x", T0 + 2 * MIN, T0 + 3 * MIN)
            .await
            .unwrap()
    );
    y.release_outbox_leases("inst-y").await.unwrap();
    assert!(
        x.lease_outbox("a", "inst-x", T0 + 2 * MIN + 3, T0 + 4 * MIN)
            .await
            .unwrap()
    );
    assert!(
        x.lease_outbox("b", "inst-x", T0 + 2 * MIN + 3, T0 + 4 * MIN)
            .await
            .unwrap()
    );
    assert!(
        !y.lease_outbox("d", "inst-y", T0 + 2 * MIN + 3, T0 + 4 * MIN)
            .await
            .unwrap(),
        "inst-x's lease on d stays"
    );

    // Many at once across the two handles: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = Arc::clone(if i % 2 == 0 { &x } else { &y });
        tasks.push(tokio::spawn(async move {
            s.lease_outbox("c", &format!("h{i}"), T0, T0 + MIN)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

pub async fn tenants_with_pending_and_stats(db: &TestDb) {
    let s = db.store().await;
    assert!(s.tenants_with_pending().await.unwrap().is_empty());
    assert!(s.outbox_stats().await.unwrap().is_empty());
    let mut seqs = Vec::new();
    for (tenant, id, at) in [
        ("b", "1", T0 + 5),
        ("a", "1", T0 + 3),
        ("a", "2", T0 + 1),
        ("c", "1", T0),
    ] {
        s.begin(tenant, Kind::Sale, id, T0, T0 + MIN).await.unwrap();
        seqs.push(
            s.enqueue(tenant, Kind::Sale, id, &json!({}), at)
                .await
                .unwrap(),
        );
    }
    s.refused(seqs[1], "no", T0 + 9).await.unwrap(); // a/1
    s.delivered(seqs[3], &json!(null), T0 + 9).await.unwrap(); // c/1
    assert_eq!(s.tenants_with_pending().await.unwrap(), ["a", "b"]);
    let stats = s.outbox_stats().await.unwrap();
    assert_eq!(stats.len(), 2, "{stats:?}");
    assert_eq!(stats[0].tenant, "a");
    assert_eq!((stats[0].pending, stats[0].failed), (1, 1));
    assert_eq!(stats[0].oldest_pending_ms, Some(T0 + 1));
    assert_eq!(stats[1].tenant, "b");
    assert_eq!((stats[1].pending, stats[1].failed), (1, 0));
    assert_eq!(stats[1].oldest_pending_ms, Some(T0 + 5));
    s.delivered(seqs[2], &json!(null), T0 + 9).await.unwrap(); // a/2
    let stats = s.outbox_stats().await.unwrap();
    assert_eq!(
        (stats[0].tenant.as_str(), stats[0].pending, stats[0].failed),
        ("a", 0, 1)
    );
    assert_eq!(stats[0].oldest_pending_ms, None);
    assert_eq!(s.tenants_with_pending().await.unwrap(), ["b"]);
}
