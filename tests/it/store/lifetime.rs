//! The store suite (`super`): What outlives a request: pruning, migrations, a reopened database.

use super::*;

pub async fn prune_removes_only_old_settled_things(db: &TestDb) {
    let s = db.store().await;
    let old = T0;
    let cut = T0 + 100 * MIN;
    let new = T0 + 200 * MIN;
    // Old and settled: go.
    s.begin("a", Kind::Sale, "done-old", old, old + MIN)
        .await
        .unwrap();
    s.finish("a", Kind::Sale, "done-old", &json!(1), old)
        .await
        .unwrap();
    s.begin("a", Kind::Sale, "failed-old", old, old + MIN)
        .await
        .unwrap();
    s.abandon("a", Kind::Sale, "failed-old", old).await.unwrap();
    s.begin("a", Kind::Sale, "delivered-old", old, old + MIN)
        .await
        .unwrap();
    let delivered = s
        .enqueue("a", Kind::Sale, "delivered-old", &json!({}), old)
        .await
        .unwrap();
    s.delivered(delivered, &json!(2), old).await.unwrap();
    s.kv_put("a", "expired", &json!(1), old + MIN)
        .await
        .unwrap();
    s.code_put("a", "expired", "1", old + MIN, 3).await.unwrap();
    // Never: in flight (even with a long-gone lease), queued, pending, refused awaiting an
    // operator, recent, or not expired.
    s.begin("a", Kind::Sale, "in-flight-old", old, old + MIN)
        .await
        .unwrap();
    s.begin("a", Kind::Sale, "queued-old", old, old + MIN)
        .await
        .unwrap();
    s.enqueue("a", Kind::Sale, "queued-old", &json!({}), old)
        .await
        .unwrap();
    s.begin("a", Kind::Sale, "refused-old", old, old + MIN)
        .await
        .unwrap();
    let refused = s
        .enqueue("a", Kind::Sale, "refused-old", &json!({}), old)
        .await
        .unwrap();
    s.refused(refused, "no", old).await.unwrap();
    s.begin("a", Kind::Sale, "done-new", new, new + MIN)
        .await
        .unwrap();
    s.finish("a", Kind::Sale, "done-new", &json!(3), new)
        .await
        .unwrap();
    s.kv_put("a", "alive", &json!(1), new + MIN).await.unwrap();
    s.code_put("a", "alive", "1", new + MIN, 3).await.unwrap();

    let gone = s.prune(settled_before(cut)).await.unwrap();
    assert_eq!(gone, 6, "3 records, 1 delivered item, 1 value, 1 code");
    for id in ["done-old", "failed-old", "delivered-old"] {
        assert_eq!(s.record("a", Kind::Sale, id).await.unwrap(), None, "{id}");
    }
    for id in ["in-flight-old", "queued-old", "refused-old", "done-new"] {
        assert!(
            s.record("a", Kind::Sale, id).await.unwrap().is_some(),
            "{id} stays"
        );
    }
    let items: Vec<_> = s
        .outbox_items(None, true)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(items, ["queued-old", "refused-old"]);
    assert_eq!(s.kv_get("a", "alive", new).await.unwrap(), Some(json!(1)));
    assert_eq!(
        s.code_check("a", "alive", "1", new).await.unwrap(),
        CodeCheck::Accepted
    );
    assert_eq!(
        s.prune(settled_before(cut)).await.unwrap(),
        0,
        "nothing more"
    );
}

pub async fn migrations_run_once_and_refuse_a_newer_schema(db: &TestDb) {
    let first = db.store().await;
    first
        .begin("a", Kind::Sale, "s1", T0, T0 + MIN)
        .await
        .unwrap();
    // Opening again (and twice at once) is a no-op that keeps the data.
    let (second, third) = tokio::join!(db.open(), db.open());
    let (second, _third) = (second.unwrap(), third.unwrap());
    assert!(
        second
            .record("a", Kind::Sale, "s1")
            .await
            .unwrap()
            .is_some()
    );
    drop((first, second, _third));

    db.raw("INSERT INTO schema_version (version, applied_ms) VALUES (999, 0)")
        .await;
    match db.open().await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("999"), "{message}");
            assert!(message.contains("newer"), "{message}");
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

pub async fn data_survives_close_and_reopen(db: &TestDb) {
    let s = db.store().await;
    assert!(!s.backend().is_empty());
    s.begin("a", Kind::Sale, "s1", T0, T0 + MIN).await.unwrap();
    s.finish("a", Kind::Sale, "s1", &json!({"id": "v1"}), T0)
        .await
        .unwrap();
    s.begin("a", Kind::Sale, "s2", T0, T0 + MIN).await.unwrap();
    let seq = s
        .enqueue("a", Kind::Sale, "s2", &json!({"x": 1}), T0)
        .await
        .unwrap();
    s.kv_put("a", "k", &json!("v"), T0 + MIN).await.unwrap();
    s.code_put("a", "c", "77", T0 + MIN, 3).await.unwrap();
    drop(s);

    let s = db.store().await;
    let r = s.record("a", Kind::Sale, "s1").await.unwrap().unwrap();
    assert_eq!((r.state, r.kept), (RecordState::Done, json!({"id": "v1"})));
    assert!(matches!(
        s.begin("a", Kind::Sale, "s2", T0 + 1, T0 + MIN)
            .await
            .unwrap(),
        Begin::Settled(_)
    ));
    assert_eq!(s.next_pending("a").await.unwrap().unwrap().seq, seq);
    assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), Some(json!("v")));
    assert_eq!(
        s.code_check("a", "c", "77", T0).await.unwrap(),
        CodeCheck::Accepted
    );
    // A later enqueue gets a later seq.
    s.begin("a", Kind::Sale, "s3", T0, T0 + MIN).await.unwrap();
    assert!(
        s.enqueue("a", Kind::Sale, "s3", &json!({}), T0)
            .await
            .unwrap()
            > seq
    );
}
