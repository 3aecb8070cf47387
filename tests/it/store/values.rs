//! The store suite (`super`): Kept values, confirmation codes and one-time claims.

use super::*;

pub async fn kv_put_get_expiry_overwrite_and_isolation(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), None);
    s.kv_put("a", "k", &json!({"v": 1}), T0 + MIN)
        .await
        .unwrap();
    assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), Some(json!({"v": 1})));
    assert_eq!(
        s.kv_get("a", "k", T0 + MIN - 1).await.unwrap(),
        Some(json!({"v": 1}))
    );
    assert_eq!(s.kv_get("a", "k", T0 + MIN).await.unwrap(), None, "expired");
    assert_eq!(
        s.kv_get("b", "k", T0).await.unwrap(),
        None,
        "another tenant's"
    );
    s.kv_put("a", "k", &json!("two"), T0 + 2 * MIN)
        .await
        .unwrap();
    assert_eq!(
        s.kv_get("a", "k", T0 + MIN).await.unwrap(),
        Some(json!("two"))
    );
    s.kv_put("b", "k", &json!(3), T0 + MIN).await.unwrap();
    assert_eq!(s.kv_get("a", "k", T0).await.unwrap(), Some(json!("two")));
    assert_eq!(s.kv_get("b", "k", T0).await.unwrap(), Some(json!(3)));
    s.kv_put("a", "null", &json!(null), T0 + MIN).await.unwrap();
    assert_eq!(s.kv_get("a", "null", T0).await.unwrap(), Some(json!(null)));
}

pub async fn codes_consumed_counted_burnt_and_expiring(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(
        s.code_check("a", "+7999", "1234", T0).await.unwrap(),
        CodeCheck::Missing
    );
    s.code_put("a", "+7999", "1234", T0 + MIN, 3).await.unwrap();
    assert_eq!(
        s.code_check("b", "+7999", "1234", T0).await.unwrap(),
        CodeCheck::Missing,
        "tenant b has none"
    );
    assert_eq!(
        s.code_check("a", "+7999", "0000", T0).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        s.code_check("a", "+7999", "1234", T0).await.unwrap(),
        CodeCheck::Accepted
    );
    assert_eq!(
        s.code_check("a", "+7999", "1234", T0).await.unwrap(),
        CodeCheck::Missing,
        "consumed"
    );

    s.code_put("a", "+7999", "5678", T0 + MIN, 3).await.unwrap();
    assert_eq!(
        s.code_check("a", "+7999", "1", T0).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 2 }
    );
    assert_eq!(
        s.code_check("a", "+7999", "2", T0).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 1 }
    );
    assert_eq!(
        s.code_check("a", "+7999", "3", T0).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 0 }
    );
    assert_eq!(
        s.code_check("a", "+7999", "5678", T0).await.unwrap(),
        CodeCheck::Missing,
        "burnt"
    );

    // A new code replaces the old one, attempts afresh.
    s.code_put("a", "+7999", "1111", T0 + MIN, 2).await.unwrap();
    assert_eq!(
        s.code_check("a", "+7999", "9", T0).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 1 }
    );
    s.code_put("a", "+7999", "2222", T0 + MIN, 2).await.unwrap();
    assert_eq!(
        s.code_check("a", "+7999", "1111", T0).await.unwrap(),
        CodeCheck::Wrong { attempts_left: 1 }
    );
    assert_eq!(
        s.code_check("a", "+7999", "2222", T0 + MIN).await.unwrap(),
        CodeCheck::Missing,
        "expired"
    );

    // Concurrent checks of the right code: one is accepted.
    s.code_put("a", "k2", "4242", T0 + MIN, 5).await.unwrap();
    let other = db.store().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let h = Arc::clone(if i % 2 == 0 { &s } else { &other });
        tasks.push(tokio::spawn(async move {
            h.code_check("a", "k2", "4242", T0).await.unwrap()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        if t.await.unwrap() == CodeCheck::Accepted {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
}

pub async fn claim_once_is_exclusive_until_it_runs_out(db: &TestDb) {
    let (s1, s2) = (db.store().await, db.store().await);
    // Many claims at once on two handles: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { s1.clone() } else { s2.clone() };
        tasks.push(tokio::spawn(async move {
            s.claim_once("jti", "abc", T0, T0 + MIN).await.unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert!(
        !s1.claim_once("jti", "abc", T0 + MIN - 1, T0 + 2 * MIN)
            .await
            .unwrap()
    );
    // Scopes and keys are separate.
    assert!(s1.claim_once("other", "abc", T0, T0 + MIN).await.unwrap());
    assert!(s1.claim_once("jti", "abd", T0, T0 + MIN).await.unwrap());
    // Once it ran out, it can be claimed again (and pruned before that).
    assert!(
        s2.claim_once("jti", "abc", T0 + MIN, T0 + 2 * MIN)
            .await
            .unwrap()
    );
    assert!(s1.prune(settled_before(T0 + 3 * MIN)).await.unwrap() >= 3);
    assert!(s1.claim_once("jti", "abc", T0, T0 + MIN).await.unwrap());
}
