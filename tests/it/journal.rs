//! Exactly-once sales and returns, and the outbox, through a real bridge and the MAXMA sandbox,
//! on both store backends (SQLite always; PostgreSQL when `LB_TEST_POSTGRES_URL` is set, as
//! `.ci/run` does). What the vendor received is counted at the sandbox.

use crate::common;

use std::time::{Duration, Instant};

use emulators::maxma::{Fault, MaxmaSandbox};
use http::StatusCode;
use serde_json::{Value, json};

use common::moysklad::{ACCOUNT_A, AppWorld, connect_maxma, get_page};
use common::{
    API_KEY_A, MaxmaWorld, ServedEmulator, TestBridge, TestBridgeBuilder, TestStore, TestTenant,
    the_error,
};
use loyalty_bridge::store::{Kind, RecordState, now_ms};

const PHONE: &str = "+7 916 123-45-67";
const CUSTOMER: &str = "7d0f4c2e-1b3a-4e5f-9a8b-0c1d2e3f4a5b";

/// `bridge` on `store`, with `shop` (the breaker is kept out of the way: these tests make the
/// vendor fail on purpose).
fn on_store(bridge: TestBridgeBuilder, store: &TestStore, shop: TestTenant) -> TestBridgeBuilder {
    bridge
        .store(store)
        .server("request_timeout_ms = 3000")
        .tenant(shop.keys("limits = { breaker_failures = 1000 }"))
}

/// The MAXMA sandbox for `sandbox`, and a bridge on `store` in front of it.
async fn world(sandbox: &MaxmaSandbox, store: &TestStore) -> MaxmaWorld {
    MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
        on_store(bridge, store, shop)
    })
    .await
}

fn store_ref() -> Value {
    json!({"meta": {"href": "https://api.moysklad.ru/api/remap/1.2/entity/retailstore/s1", "id": "s1"}, "name": "Касса 1"})
}

fn sale(id: &str, spend: i64) -> Value {
    json!({"retailStore": store_ref(), "name": "00042", "moment": "2026-11-29 10:15:00",
           "meta": {"href": format!("https://api.moysklad.ru/api/remap/1.2/entity/retaildemand/{id}"), "id": id},
           "agent": {"meta": {"id": CUSTOMER}, "name": "Смирнова Анна", "phone": PHONE},
           "positions": [{"assortment": {"meta": {"id": "sku-coffee"}}, "quantity": 2, "price": 500.00}],
           "bonusProgram": {"bonusValueToSpend": spend, "bonusValueToEarn": 50}, "cashSum": 1000.00, "noCashSum": 0})
}

fn sale_return(id: &str, sale_id: &str, quantity: i64) -> Value {
    json!({"retailStore": store_ref(), "name": "R-1", "moment": "2026-11-29 11:00:00",
           "meta": {"id": id}, "demand": {"meta": {"id": sale_id}}, "agent": {"meta": {"id": CUSTOMER}},
           "positions": [{"assortment": {"meta": {"id": "sku-coffee"}}, "quantity": quantity, "price": 500.00}],
           "cashSum": 500.00})
}

fn sandbox() -> MaxmaSandbox {
    let sandbox = MaxmaSandbox::new(API_KEY_A);
    sandbox.add_client(emulators::maxma::SandboxClient {
        phone: Some("79161234567".into()),
        external_id: Some(CUSTOMER.into()),
        bonuses: 500,
        ..Default::default()
    });
    sandbox
}

/// Polls until `done` holds (the outbox works in the background), at most `within`.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::TestStore::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(store) = super::TestStore::postgres().await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    fifty_duplicate_sales_at_once_reach_the_vendor_once,
    a_refused_sale_can_be_tried_again,
    a_sale_whose_answer_is_wrong_is_undone_and_not_recorded,
    vendor_down_an_earning_sale_is_queued_and_delivered_once,
    a_return_after_a_partial_return,
    two_instances_on_one_store_deliver_once,
    a_graceful_stop_gives_back_every_tenants_delivery_lease,
);

async fn fifty_duplicate_sales_at_once_reach_the_vendor_once(store: TestStore) {
    let sandbox = sandbox();
    // Slow enough that the copies arrive while the first is still at the vendor.
    sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(300))));
    let w = std::sync::Arc::new(world(&sandbox, &store).await);
    let body = sale("a1b2c3d4-0000-4000-8000-000000000050", 0);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (w, body) = (w.clone(), body.clone());
            tokio::spawn(async move {
                // A copy still waiting when its own deadline comes gets "in progress, retry"
                // (409, 9409) — on a slow machine that happens — and MoySklad repeats it.
                for _ in 0..20 {
                    let (status, body) = w.post("/retaildemand", &body).await;
                    if status != StatusCode::CONFLICT || the_error(&body)["code"] != 9409 {
                        return (status, body);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                panic!("still in progress after 20 repeats")
            })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(sandbox.calls("set-purchase"), 1);
    assert_eq!(sandbox.calls("confirm-ticket"), 1);
    // And later repeats are answered from the journal.
    sandbox.set_fault(None);
    let (status, _) = w.post("/retaildemand", &body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sandbox.calls("set-purchase"), 1);
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(550));
}

async fn a_refused_sale_can_be_tried_again(store: TestStore) {
    let sandbox = sandbox();
    let w = world(&sandbox, &store).await;
    let id = "a1b2c3d4-0000-4000-8000-000000000051";
    // More points than the customer has: MAXMA refuses, nothing is recorded.
    let (status, body) = w.post("/retaildemand", &sale(id, 900)).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(500));
    // The same sale, corrected at the till, goes through.
    let (status, body) = w.post("/retaildemand", &sale(id, 100)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 100 spent, 5 % of the 900 paid in money earned.
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(445));
}

/// MAXMA answers a sale with fewer bonuses applied than the receipt paid with (a purchase an
/// earlier attempt of the sale left open under its txid answers as it was first priced): the
/// mapping's `verify` discards the ticket, the sale is refused and not recorded, and a repeat
/// of it reaches MAXMA again (refused: the purchase is discarded) rather than the journal.
async fn a_sale_whose_answer_is_wrong_is_undone_and_not_recorded(store: TestStore) {
    let sandbox = sandbox();
    let w = world(&sandbox, &store).await;
    let id = "a1b2c3d4-0000-4000-8000-000000000055";
    // The earlier attempt: priced without spending, never confirmed.
    let earlier = json!({"txid": format!("ms-retaildemand-{id}"), "calculationQuery": {
        "client": {"phoneNumber": "+79161234567"}, "shop": {"code": "s1", "name": "Касса 1"},
        "rows": [{"id": "0", "product": {"sku": "sku-coffee", "blackPrice": 500.00}, "qty": 2}],
        "applyBonuses": 0, "collectBonuses": "auto"}});
    let answer: Value = common::client()
        .post(format!("{}/set-purchase", w.vendor.url()))
        .header("X-Processing-Key", API_KEY_A)
        .json(&earlier)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["calculationResult"]["bonuses"]["applied"], 0,
        "{answer}"
    );

    let (status, body) = w.post("/retaildemand", &sale(id, 100)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 1051);
    assert_eq!(
        the_error(&body)["error_message"],
        "MAXMA приняла к списанию 0 бонусов вместо 100; покупка в MAXMA отменена. Оформите продажу заново."
    );
    assert_eq!(sandbox.calls("discard-ticket"), 1);
    assert_eq!(sandbox.calls("confirm-ticket"), 0);
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(500));
    let journal = store.open().await;
    let record = journal.record("shop", Kind::Sale, id).await.unwrap();
    assert_eq!(record.map(|r| r.state), Some(RecordState::Failed));

    // MoySklad repeats the sale: not answered from the journal, refused by MAXMA this time.
    let (status, body) = w.post("/retaildemand", &sale(id, 100)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 1022);
    assert_eq!(sandbox.calls("set-purchase"), 3);
    assert_eq!(sandbox.calls("confirm-ticket"), 0);
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(500));

    // Made again as a new sale, it goes through: 100 spent, 5 % of the 900 paid earned.
    let again = "a1b2c3d4-0000-4000-8000-000000000056";
    let (status, body) = w.post("/retaildemand", &sale(again, 100)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(445));
}

async fn vendor_down_an_earning_sale_is_queued_and_delivered_once(store: TestStore) {
    let sandbox = sandbox();
    sandbox.set_fault(Some(Fault::Http500));
    let w = world(&sandbox, &store).await;
    let earning = "a1b2c3d4-0000-4000-8000-000000000052";
    let spending = "a1b2c3d4-0000-4000-8000-000000000053";

    let (status, body) = w.post("/retaildemand", &sale(earning, 0)).await;
    assert_eq!(status, StatusCode::CREATED, "earning sale accepted: {body}");
    // A spending sale is not queued: the vendor has not approved the spend.
    let (status, body) = w.post("/retaildemand", &sale(spending, 100)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    // A return of the queued sale must wait for it.
    let (status, body) = w
        .post("/retailsalesreturn", &sale_return("ret-0052", earning, 1))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(the_error(&body)["code"], 9409);
    // MoySklad repeats the earning sale: accepted again, still one queued item.
    let (status, _) = w.post("/retaildemand", &sale(earning, 0)).await;
    assert_eq!(status, StatusCode::CREATED);

    sandbox.set_fault(None);
    eventually(
        Duration::from_secs(15),
        "the queued sale reaches MAXMA",
        || sandbox.calls("confirm-ticket") == 1,
    )
    .await;
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(550));
    // Delivered once: later rounds and repeats send nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = w.post("/retaildemand", &sale(earning, 0)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sandbox.calls("confirm-ticket"), 1);
    // Now the return goes through.
    let (status, body) = w
        .post("/retailsalesreturn", &sale_return("ret-0052", earning, 1))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(sandbox.calls("apply-return"), 1);
}

async fn a_return_after_a_partial_return(store: TestStore) {
    let sandbox = sandbox();
    let w = world(&sandbox, &store).await;
    let id = "a1b2c3d4-0000-4000-8000-000000000054";
    let (status, body) = w.post("/retaildemand", &sale(id, 0)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(550));
    for (ret, repeat) in [("ret-a", false), ("ret-a", true), ("ret-b", false)] {
        let (status, body) = w.post("/retailsalesreturn", &sale_return(ret, id, 1)).await;
        assert_eq!(status, StatusCode::CREATED, "{ret} repeat={repeat}: {body}");
    }
    // Two returns of one coffee each (the repeat of the first one did not count): all 50
    // earned points are taken back, exactly.
    assert_eq!(sandbox.calls("apply-return"), 2);
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(500));
}

async fn two_instances_on_one_store_deliver_once(store: TestStore) {
    if !store.shared_by_instances() {
        return;
    }
    let sandbox = sandbox();
    sandbox.set_fault(Some(Fault::Http500));
    let first = world(&sandbox, &store).await;
    // A second instance on the same store, in front of the same vendor.
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    let second = on_store(
        TestBridge::builder(),
        &store,
        TestTenant::maxma(vendor.url()),
    )
    .start()
    .await;
    let ids: Vec<String> = (0..6)
        .map(|i| format!("a1b2c3d4-0000-4000-8000-0000000001{i:02}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let bridge = if i % 2 == 0 { &first.bridge } else { &second };
        let (status, body) = bridge.post("/retaildemand", &sale(id, 0)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    sandbox.set_fault(None);
    eventually(
        Duration::from_secs(20),
        "all queued sales delivered",
        || sandbox.calls("confirm-ticket") >= ids.len(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sandbox.calls("confirm-ticket"), ids.len());
    assert_eq!(sandbox.balance_by_phone("79161234567"), Some(500 + 50 * 6));
}

/// At a graceful stop an instance gives back the delivery lease of every tenant whose queue it
/// held, configured and installed through the MoySklad app alike: another instance takes the
/// queues over at once, not when the leases run out (10 s here).
async fn a_graceful_stop_gives_back_every_tenants_delivery_lease(store: TestStore) {
    let configured_vendor = sandbox();
    configured_vendor.set_fault(Some(Fault::Http500));
    let vendor = ServedEmulator::start(configured_vendor.clone()).await;
    let shop = TestTenant::maxma(vendor.url()).keys("limits = { breaker_failures = 1000 }");
    let mut w = AppWorld::start_with(store, |bridge| {
        bridge.server("request_timeout_ms = 3000").tenant(shop)
    })
    .await;
    // The app account connects through its settings page.
    w.install(ACCOUNT_A).await;
    let session = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU"))
        .await
        .session();
    let app_token = connect_maxma(&w, ACCOUNT_A, &session).await;

    // Both vendors down: each tenant's earning sale is queued, and the bridge takes each
    // tenant's delivery lease to try it.
    w.maxma.set_fault(Some(Fault::Http500));
    let (status, body) = w
        .bridge
        .post(
            "/retaildemand",
            &sale("a1b2c3d4-0000-4000-8000-000000000201", 0),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = w
        .bridge
        .call_as(
            &app_token,
            http::Method::POST,
            "/retaildemand",
            Some(&sale("a1b2c3d4-0000-4000-8000-000000000202", 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let app_tenant = format!("app:{ACCOUNT_A}");
    let tenants = ["shop", app_tenant.as_str()];
    let other_instance = w.store.open().await;
    let started = Instant::now();
    for tenant in tenants {
        loop {
            let items = other_instance
                .outbox_items(Some(tenant), false)
                .await
                .unwrap();
            if items.iter().any(|item| item.attempts > 0) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{tenant}'s sale was never tried: {items:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = now_ms();
        assert!(
            !other_instance
                .lease_outbox(tenant, "other-instance", now, now + 60_000)
                .await
                .unwrap(),
            "{tenant}'s queue is the bridge's while it runs"
        );
    }

    w.bridge.stop_in_place().await;
    for tenant in tenants {
        let now = now_ms();
        assert!(
            other_instance
                .lease_outbox(tenant, "other-instance", now, now + 60_000)
                .await
                .unwrap(),
            "{tenant}'s queue is free once the bridge stopped"
        );
    }
}
