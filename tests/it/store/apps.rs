//! The store suite (`super`): MoySklad app tenants: lifecycle, recent failures, change numbers.

use super::*;

fn connection(hash: &str) -> AppConnection {
    AppConnection {
        token_sha256: hash.into(),
        mapping: "maxma".into(),
        base_url: "http://vendor".into(),
        credentials_sealed: "sealed-creds".into(),
        settings: json!({"x": 1}),
        external_search: true,
    }
}

/// How many app tenants hold a LoyaltyAPI token.
async fn connected(s: &Arc<dyn Store>) -> usize {
    let all = s.app_tenants_changed(0).await.unwrap().tenants;
    all.iter().filter(|t| t.token_sha256.is_some()).count()
}

pub async fn app_tenant_lifecycle(db: &TestDb) {
    let s = db.store().await;
    assert_eq!(s.app_tenant("acc-1").await.unwrap(), None);
    assert_eq!(s.app_deactivate("acc-1", false, T0).await.unwrap(), None);
    assert_eq!(
        s.app_tenant("acc-1").await.unwrap(),
        None,
        "DELETE creates nothing"
    );
    assert!(!s.app_connect("acc-1", &connection("h1"), T0).await.unwrap());

    let t = s
        .app_activate("acc-1", "app", "Shop", Some("sealed-at"), T0)
        .await
        .unwrap();
    assert_eq!(t.state, AppState::SettingsRequired);
    assert_eq!(t.access_token_sealed.as_deref(), Some("sealed-at"));
    assert_eq!((t.created_ms, t.updated_ms), (T0, T0));
    // A repeat (MoySklad's retry) is the same answer; no access token keeps the old one.
    let again = s
        .app_activate("acc-1", "app", "Shop 2", None, T0 + 1)
        .await
        .unwrap();
    assert_eq!(again.state, AppState::SettingsRequired);
    assert_eq!(again.access_token_sealed.as_deref(), Some("sealed-at"));
    assert_eq!(again.account_name, "Shop 2");
    assert_eq!(again.created_ms, T0);
    assert_eq!(connected(&s).await, 0);

    // Connecting stores; activation comes with MoySklad's answer.
    assert!(
        s.app_connect("acc-1", &connection("h1"), T0 + 2)
            .await
            .unwrap()
    );
    let t = s.app_tenant("acc-1").await.unwrap().unwrap();
    assert_eq!(t.state, AppState::SettingsRequired);
    assert_eq!(t.token_sha256.as_deref(), Some("h1"));
    assert_eq!(t.settings, json!({"x": 1}));
    assert!(t.external_search);
    assert!(s.app_mark("acc-1", true, "ok", T0 + 3).await.unwrap());
    let t = s.app_tenant("acc-1").await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.vendor_note.as_deref()),
        (AppState::Activated, Some("ok"))
    );
    assert_eq!(connected(&s).await, 1);

    // Suspend keeps everything; Resume comes back Activated.
    assert_eq!(
        s.app_deactivate("acc-1", false, T0 + 4).await.unwrap(),
        Some(AppState::Activated)
    );
    let t = s.app_tenant("acc-1").await.unwrap().unwrap();
    assert_eq!(t.state, AppState::Suspended);
    assert_eq!(t.token_sha256.as_deref(), Some("h1"));
    assert!(
        !s.app_connect("acc-1", &connection("h2"), T0).await.unwrap(),
        "suspended"
    );
    assert!(s.app_mark("acc-1", true, "late", T0 + 5).await.unwrap());
    assert_eq!(
        s.app_tenant("acc-1").await.unwrap().unwrap().state,
        AppState::Suspended,
        "a late answer does not resume"
    );
    assert_eq!(
        s.app_deactivate("acc-1", false, T0 + 5).await.unwrap(),
        Some(AppState::Suspended)
    );
    let t = s
        .app_activate("acc-1", "app", "Shop", None, T0 + 6)
        .await
        .unwrap();
    assert_eq!(t.state, AppState::Activated);
    assert_eq!(t.credentials_sealed.as_deref(), Some("sealed-creds"));

    // Uninstall forgets the secrets and the token; a new install needs settings again.
    assert_eq!(
        s.app_deactivate("acc-1", true, T0 + 7).await.unwrap(),
        Some(AppState::Activated)
    );
    let t = s.app_tenant("acc-1").await.unwrap().unwrap();
    assert_eq!(t.state, AppState::Uninstalled);
    assert_eq!(t.access_token_sealed, None);
    assert_eq!(t.credentials_sealed, None);
    assert_eq!(t.token_sha256, None);
    assert_eq!(
        t.mapping.as_deref(),
        Some("maxma"),
        "non-secret settings are kept"
    );
    assert_eq!(
        s.app_deactivate("acc-1", false, T0 + 8).await.unwrap(),
        Some(AppState::Uninstalled)
    );
    assert_eq!(
        s.app_tenant("acc-1").await.unwrap().unwrap().state,
        AppState::Uninstalled,
        "a suspend after uninstall stays uninstalled"
    );
    assert_eq!(connected(&s).await, 0);
    let t = s
        .app_activate("acc-1", "app", "Shop", Some("new"), T0 + 9)
        .await
        .unwrap();
    assert_eq!(t.state, AppState::SettingsRequired);

    // Accounts are isolated; a token hash belongs to one account only.
    s.app_activate("acc-2", "app", "Other", None, T0)
        .await
        .unwrap();
    assert!(s.app_connect("acc-2", &connection("h9"), T0).await.unwrap());
    assert_eq!(
        s.app_tenant("acc-1").await.unwrap().unwrap().token_sha256,
        None
    );
    assert!(
        s.app_connect("acc-1", &connection("h9"), T0).await.is_err(),
        "the same LoyaltyAPI token hash for two accounts is refused"
    );
    // Survives a reopen.
    drop(s);
    let s = db.store().await;
    assert_eq!(
        s.app_tenant("acc-2")
            .await
            .unwrap()
            .unwrap()
            .token_sha256
            .as_deref(),
        Some("h9")
    );
}

fn failure(source: FailureSource, text: &str, times: u64, first: i64, last: i64) -> AppFailure {
    AppFailure {
        source,
        text: text.into(),
        times,
        first_ms: first,
        last_ms: last,
    }
}

/// `(source, text, times, first, last)` of each failure listed, in order.
async fn failures_of(
    s: &Arc<dyn Store>,
    account: &str,
) -> Vec<(FailureSource, String, u64, i64, i64)> {
    s.app_failures(account)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.source, f.text, f.times, f.first_ms, f.last_ms))
        .collect()
}

pub async fn app_failures_counted_bounded_pruned_and_forgotten(db: &TestDb) {
    use FailureSource::{LoyaltyApi, Moysklad, VendorCheck};
    // Two handles: two instances writing one account's failures.
    let (s, other) = (db.store().await, db.store().await);
    // Nothing is kept for an account that never installed the app.
    s.app_failures_add("ghost", &[failure(LoyaltyApi, "x", 1, T0, T0)])
        .await
        .unwrap();
    assert!(s.app_failures("ghost").await.unwrap().is_empty());
    for account in ["acc-1", "acc-2"] {
        s.app_activate(account, "app", "Shop", None, T0)
            .await
            .unwrap();
    }
    s.app_failures_add("acc-1", &[]).await.unwrap();
    assert!(s.app_failures("acc-1").await.unwrap().is_empty());

    // One source and text is one failure, counted, whichever instance saw it; the same
    // text from another source is another.
    s.app_failures_add(
        "acc-1",
        &[
            failure(LoyaltyApi, "search → 502", 3, T0, T0 + 2),
            failure(VendorCheck, "bad key", 1, T0 + 1, T0 + 1),
        ],
    )
    .await
    .unwrap();
    other
        .app_failures_add(
            "acc-1",
            &[failure(LoyaltyApi, "search → 502", 2, T0 + 5, T0 + 9)],
        )
        .await
        .unwrap();
    other
        .app_failures_add(
            "acc-1",
            &[failure(Moysklad, "search → 502", 1, T0 + 3, T0 + 3)],
        )
        .await
        .unwrap();
    // A late write of earlier repeats widens the first time, never moves the last back.
    s.app_failures_add(
        "acc-1",
        &[failure(LoyaltyApi, "search → 502", 1, T0 - 5, T0 - 5)],
    )
    .await
    .unwrap();
    assert_eq!(
        failures_of(&other, "acc-1").await,
        [
            (LoyaltyApi, "search → 502".to_owned(), 6, T0 - 5, T0 + 9),
            (Moysklad, "search → 502".to_owned(), 1, T0 + 3, T0 + 3),
            (VendorCheck, "bad key".to_owned(), 1, T0 + 1, T0 + 1),
        ],
        "the last seen first"
    );

    // Bounded: twelve more, from both instances at once; the ten last seen stay.
    let mut tasks = Vec::new();
    for i in 0..12_i64 {
        let s = if i % 2 == 0 { s.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            let at = T0 + 100 + i;
            s.app_failures_add("acc-1", &[failure(LoyaltyApi, &format!("e{i}"), 1, at, at)])
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let texts: Vec<String> = failures_of(&s, "acc-1")
        .await
        .into_iter()
        .map(|f| f.1)
        .collect();
    let newest: Vec<String> = (2..12).rev().map(|i| format!("e{i}")).collect();
    assert_eq!(texts, newest);
    assert_eq!(texts.len(), FAILURES_PER_ACCOUNT);
    s.app_failures_add("acc-2", &[failure(Moysklad, "refused", 1, T0, T0)])
        .await
        .unwrap();
    assert_eq!(
        failures_of(&s, "acc-2").await.len(),
        1,
        "accounts are apart"
    );

    // Pruned by when they were last seen, apart from the settled things' age.
    let gone = s
        .prune(PruneBefore {
            settled_ms: i64::MIN,
            failures_ms: T0 + 105,
        })
        .await
        .unwrap();
    assert_eq!(gone, 4, "e2, e3, e4 and acc-2's");
    assert_eq!(failures_of(&s, "acc-1").await.len(), 7);
    assert!(failures_of(&s, "acc-2").await.is_empty());

    // A suspended account keeps them; an uninstalled one's go, and a write that arrives
    // after the uninstall adds nothing.
    s.app_deactivate("acc-1", false, T0 + 200).await.unwrap();
    assert_eq!(failures_of(&s, "acc-1").await.len(), 7);
    other.app_deactivate("acc-1", true, T0 + 201).await.unwrap();
    assert!(failures_of(&s, "acc-1").await.is_empty());
    s.app_failures_add(
        "acc-1",
        &[failure(LoyaltyApi, "late", 1, T0 + 199, T0 + 199)],
    )
    .await
    .unwrap();
    assert!(failures_of(&s, "acc-1").await.is_empty());
    // Reinstalled, it starts with none and keeps new ones.
    s.app_activate("acc-1", "app", "Shop", None, T0 + 300)
        .await
        .unwrap();
    s.app_failures_add(
        "acc-1",
        &[failure(VendorCheck, "again", 1, T0 + 301, T0 + 301)],
    )
    .await
    .unwrap();
    assert_eq!(failures_of(&s, "acc-1").await.len(), 1);
}

/// `(account, change number)` of each tenant read.
fn numbered(changes: &AppTenantChanges) -> Vec<(&str, i64)> {
    let tenants = changes.tenants.iter();
    tenants
        .map(|t| (t.account_id.as_str(), t.change_number))
        .collect()
}

pub async fn every_app_tenant_write_takes_the_next_change_number(db: &TestDb) {
    let s = db.store().await;
    let nothing = s.app_tenants_changed(0).await.unwrap();
    assert_eq!((nothing.tenants.len(), nothing.newest), (0, 0));

    let a = s.app_activate("a", "app", "A", None, T0).await.unwrap();
    let b = s.app_activate("b", "app", "B", None, T0).await.unwrap();
    assert!(a.change_number > 0 && b.change_number > a.change_number);
    let mut seen = b.change_number;
    let all = s.app_tenants_changed(0).await.unwrap();
    assert_eq!(numbered(&all), [("a", a.change_number), ("b", seen)]);
    assert_eq!(all.newest, seen);
    let none = s.app_tenants_changed(seen).await.unwrap();
    assert_eq!(
        (none.tenants.len(), none.newest),
        (0, seen),
        "nothing after"
    );

    // Each writer stamps the row it changes, with a number above every earlier one.
    let later = |s: Arc<dyn Store>, after: i64| async move {
        let changes = s.app_tenants_changed(after).await.unwrap();
        assert_eq!(changes.tenants.len(), 1, "{changes:?}");
        let t = changes.tenants.into_iter().next().unwrap();
        assert_eq!(
            (t.account_id.as_str(), t.change_number),
            ("a", changes.newest)
        );
        assert!(changes.newest > after);
        t
    };
    assert!(s.app_connect("a", &connection("h1"), T0 + 1).await.unwrap());
    let t = later(s.clone(), seen).await;
    assert_eq!(t.token_sha256.as_deref(), Some("h1"));
    seen = t.change_number;
    assert!(s.app_mark("a", true, "ok", T0 + 2).await.unwrap());
    let t = later(s.clone(), seen).await;
    assert_eq!(t.state, AppState::Activated);
    seen = t.change_number;
    s.app_deactivate("a", false, T0 + 3).await.unwrap();
    let t = later(s.clone(), seen).await;
    assert_eq!(t.state, AppState::Suspended);
    seen = t.change_number;
    let resumed = s.app_activate("a", "app", "A", None, T0 + 4).await.unwrap();
    let t = later(s.clone(), seen).await;
    assert_eq!(
        (t.state, t.change_number),
        (AppState::Activated, resumed.change_number)
    );
    seen = t.change_number;
    // One that stopped being connected is read too, so a reader can drop it.
    s.app_deactivate("a", true, T0 + 5).await.unwrap();
    let t = later(s.clone(), seen).await;
    assert_eq!((t.state, t.token_sha256), (AppState::Uninstalled, None));
    seen = t.change_number;

    // A write that changes nothing is not read.
    assert!(!s.app_connect("a", &connection("h2"), T0 + 6).await.unwrap());
    assert_eq!(
        s.app_deactivate("nobody", true, T0 + 6).await.unwrap(),
        None
    );
    assert!(
        s.app_tenants_changed(seen)
            .await
            .unwrap()
            .tenants
            .is_empty()
    );
    // The numbers go on after a reopen.
    drop(s);
    let s = db.store().await;
    let c = s.app_activate("c", "app", "C", None, T0 + 7).await.unwrap();
    assert!(c.change_number > seen);
    let changes = s.app_tenants_changed(seen).await.unwrap();
    assert_eq!(numbered(&changes), [("c", c.change_number)]);
    assert_eq!(
        numbered(&s.app_tenants_changed(0).await.unwrap()),
        [("b", b.change_number), ("a", seen), ("c", c.change_number)],
        "everything, in the order of the changes"
    );
}

/// Two store handles (two instances' pools) write app tenants at once while a third reads
/// only what changed after the newest number it saw, again and again. If a write could
/// become visible with a number below one the reader had already seen, the reader would
/// never read it, and its copy of that account would differ from the store's in the end.
pub async fn concurrent_app_writers_never_hide_a_change_from_a_reader(db: &TestDb) {
    const ACCOUNTS: usize = 24;
    const TASKS_PER_WRITER: usize = 6;
    const WRITES_PER_TASK: usize = 30;
    let (one, two, reader) = (db.store().await, db.store().await, db.store().await);
    for i in 0..ACCOUNTS {
        one.app_activate(&format!("acc-{i}"), "app", "start", None, T0)
            .await
            .unwrap();
    }
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let read = {
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut copy = std::collections::BTreeMap::new();
            let (mut seen, mut reads) = (0, 0);
            loop {
                // Read once more after the writers are done.
                let last = !writing.load(std::sync::atomic::Ordering::SeqCst);
                let changes = reader.app_tenants_changed(seen).await.unwrap();
                reads += 1;
                for t in changes.tenants {
                    assert!(t.change_number > seen, "{} after {seen}", t.change_number);
                    seen = t.change_number;
                    copy.insert(t.account_id.clone(), t);
                }
                assert_eq!(changes.newest, seen);
                if last {
                    return (copy, reads);
                }
            }
        })
    };
    let mut tasks = Vec::new();
    for (w, store) in [one, two].into_iter().enumerate() {
        for task in 0..TASKS_PER_WRITER {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..WRITES_PER_TASK {
                    let account = format!("acc-{}", (task * 7 + i * 5 + w) % ACCOUNTS);
                    let label = format!("w{w}-t{task}-{i}");
                    let now = T0 + i as i64;
                    match i % 3 {
                        0 => {
                            s.app_activate(&account, "app", &label, None, now)
                                .await
                                .unwrap();
                        }
                        1 => {
                            s.app_connect(&account, &connection(&label), now)
                                .await
                                .unwrap();
                        }
                        _ => {
                            s.app_mark(&account, true, &label, now).await.unwrap();
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (copy, reads) = read.await.unwrap();
    assert!(
        reads > 2,
        "the reader read while they wrote ({reads} reads)"
    );

    let store = db
        .store()
        .await
        .app_tenants_changed(0)
        .await
        .unwrap()
        .tenants;
    let mut numbers: Vec<i64> = store.iter().map(|t| t.change_number).collect();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        ACCOUNTS,
        "one number per write: no two rows share one"
    );
    let store: std::collections::BTreeMap<_, _> = store
        .into_iter()
        .map(|t| (t.account_id.clone(), t))
        .collect();
    assert_eq!(copy, store, "the reader's copy is the store");
}

pub async fn the_migration_numbers_the_app_tenants_already_there(db: &TestDb) {
    db.create_schema_version_2().await;
    db.raw(
        "INSERT INTO app_tenants (account_id, app_id, account_name, state, created_ms,
                                  updated_ms)
         VALUES ('late', 'app', 'L', 'settings_required', 1, 300),
                ('early', 'app', 'E', 'settings_required', 1, 100),
                ('b-same', 'app', 'B', 'settings_required', 1, 200),
                ('a-same', 'app', 'A', 'settings_required', 1, 200)",
    )
    .await;
    let s = db.store().await;
    let all = s.app_tenants_changed(0).await.unwrap();
    assert_eq!(
        numbered(&all),
        [("early", 1), ("a-same", 2), ("b-same", 3), ("late", 4)],
        "in the order they last changed"
    );
    assert_eq!(all.newest, 4);
    let next = s.app_mark("early", false, "note", T0).await;
    assert!(next.unwrap());
    let changes = s.app_tenants_changed(4).await.unwrap();
    assert_eq!(
        numbered(&changes),
        [("early", 5)],
        "the counter goes on from them"
    );
}
