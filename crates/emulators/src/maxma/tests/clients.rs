//! `/get-balance`, `/new-client`, `/get-settings`, `/send-confirmation-code`.

use super::*;

#[tokio::test]
async fn get_balance_finds_clients_by_any_identifier() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    let srv = start(&sandbox).await;
    let queries = [
        json!({"phoneNumber": "+7 999 000-00-01"}),
        json!({"phoneNumber": "8 (999) 000-00-01"}),
        json!({"phoneNumber": "79990000001"}),
        json!({"card": "DEMO-0001"}),
        json!({"externalId": "demo-1"}),
        json!({"phoneNumber": "", "card": "DEMO-0001"}),
    ];
    for query in queries {
        let answer = srv.ok("/get-balance", query).await;
        let client = &answer["client"];
        assert_eq!(client["phoneNumber"], json!(IVANOV));
        assert_eq!(client["card"], json!("DEMO-0001"));
        assert_eq!(client["externalId"], json!("demo-1"));
        assert_eq!(client["surname"], json!("Иванов"));
        assert_eq!(client["name"], json!("Иван"));
        assert_eq!(client["patronymicName"], json!("Иванович"));
        assert_eq!(client["fullName"], json!("Иванов Иван Иванович"));
        assert_eq!(int(&client["gender"]), 1);
        assert_eq!(client["birthdate"], json!("1985-03-14"));
        assert_eq!(client["email"], json!("ivanov@example.com"));
        assert_eq!(int(&client["bonuses"]), 500);
        assert_eq!(int(&client["pendingBonuses"]), 0);
        assert_eq!(int(&answer["bonuses"][0]["amount"]), 500);
        assert_eq!(answer["level"]["name"], json!("Базовый"));
        assert_eq!(int(&answer["level"]["level"]), 1);
        assert_eq!(dec(&answer["level"]["levelSpent"]), Decimal::ZERO);
        assert!(answer["walletsLink"].is_string());
    }
    let second = srv.ok("/get-balance", json!({"card": "0001"})).await;
    assert_eq!(second["client"]["phoneNumber"], json!("+75551234567"));
    assert_eq!(
        second["client"]["fullName"],
        json!("Петрова Мария Сергеевна")
    );
    assert_eq!(second["bonuses"], json!([]));

    assert_eq!(
        srv.error("/get-balance", json!({"phoneNumber": "+79110000000"}))
            .await,
        3
    );
    assert_eq!(srv.error("/get-balance", json!({"card": "nope"})).await, 3);
    assert_eq!(
        srv.error("/get-balance", json!({"externalId": "nope"}))
            .await,
        3
    );
    for bad in [
        "12345",
        "+8 999 000 00 01",
        "+7 999 000-00-0100",
        "7999abc0001",
    ] {
        assert_eq!(
            srv.error("/get-balance", json!({"phoneNumber": bad})).await,
            20,
            "{bad}"
        );
    }
    assert_eq!(srv.error("/get-balance", json!({})).await, 2);
    assert_eq!(
        srv.error("/get-balance", json!({"phoneNumber": 79990000001_u64}))
            .await,
        2
    );
    srv.stop().await;
}

#[tokio::test]
async fn new_client_registers_and_refuses_duplicates() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    sandbox.set_settings(SandboxSettings {
        welcome_bonus: 100,
        ..SandboxSettings::default()
    });
    let srv = start(&sandbox).await;
    let new =
        |client: Value| json!({"client": client, "shop": {"code": "s"}, "cashier": {"code": "c"}});

    let answer = srv
        .ok(
            "/new-client",
            new(json!({
                "phoneNumber": "8 912 345-67-89", "card": "C-1", "externalId": "ms-1",
                "surname": "Новикова", "name": "Анна", "gender": 2,
                "birthdate": "1990-05-01", "email": "anna@example.com"
            })),
        )
        .await;
    assert_eq!(answer["client"]["phoneNumber"], json!("+79123456789"));
    assert_eq!(answer["client"]["fullName"], json!("Новикова Анна"));
    assert_eq!(int(&answer["client"]["bonuses"]), 100);
    assert_eq!(int(&answer["bonuses"][0]["amount"]), 100);
    assert!(answer["walletsLink"].is_string());
    assert_eq!(sandbox.balance_by_phone("+7 912 345 67 89"), Some(100));
    let found = srv.ok("/get-balance", json!({"card": "C-1"})).await;
    assert_eq!(found["client"]["email"], json!("anna@example.com"));

    let cases = [
        (json!({"name": "Без телефона"}), 29),
        (json!({"phoneNumber": ""}), 29),
        (json!({"phoneNumber": "123"}), 20),
        (json!({"phoneNumber": "+7 (999) 000-00-01"}), 24),
        (json!({"phoneNumber": "+79120000001", "card": "0001"}), 25),
        (
            json!({"phoneNumber": "+79120000002", "externalId": "demo-1"}),
            30,
        ),
        (
            json!({"phoneNumber": "+79120000003", "email": "IVANOV@example.com"}),
            48,
        ),
        (json!({"phoneNumber": "+79120000004", "gender": 7}), 2),
        (json!({"phoneNumber": "+79120000005", "name": 5}), 2),
    ];
    for (client, expected) in cases {
        assert_eq!(
            srv.error("/new-client", new(client.clone())).await,
            expected,
            "{client}"
        );
    }
    assert_eq!(srv.error("/new-client", json!({})).await, 2);
    assert_eq!(sandbox.balance_by_phone("+79120000001"), None);
    srv.stop().await;
}

#[tokio::test]
async fn get_settings_reflects_set_settings() {
    let sandbox = MaxmaSandbox::new(KEY);
    let srv = start(&sandbox).await;
    let answer = srv.ok("/get-settings", json!({})).await;
    assert_eq!(answer["phoneVerification"], json!(false));
    assert_eq!(answer["bonusApplyingConfirmation"], json!(false));
    sandbox.set_settings(SandboxSettings {
        phone_verification: true,
        bonus_applying_confirmation: true,
        ..SandboxSettings::default()
    });
    let answer = srv.ok("/get-settings", json!({})).await;
    assert_eq!(answer["phoneVerification"], json!(true));
    assert_eq!(answer["bonusApplyingConfirmation"], json!(true));
    srv.stop().await;
}

#[tokio::test]
async fn confirmation_codes_are_returned_recorded_and_throttled() {
    let sandbox = MaxmaSandbox::with_demo_data(KEY);
    sandbox.set_settings(SandboxSettings {
        code_requests_per_minute: 2,
        ..SandboxSettings::default()
    });
    let srv = start(&sandbox).await;

    let before = DateTime::<Utc>::from(SystemTime::now());
    let answer = srv
        .ok(
            "/send-confirmation-code",
            json!({"phoneNumber": "+7 911 000-00-00"}),
        )
        .await;
    let code = answer["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 3);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert_eq!(answer["channel"], json!("sms"));
    assert!(answer["msgid"].is_string());
    let expires = DateTime::parse_from_rfc3339(answer["expiresAt"].as_str().unwrap()).unwrap();
    let lifetime = expires.with_timezone(&Utc) - before;
    assert!(lifetime > TimeDelta::seconds(295) && lifetime <= TimeDelta::seconds(302));
    // Not a client yet: registration codes are allowed.
    assert_eq!(sandbox.last_code("89110000000"), Some(code));

    // By card: the code goes to the client's phone.
    let answer = srv
        .ok(
            "/send-confirmation-code",
            json!({"card": "DEMO-0001", "to": "sms"}),
        )
        .await;
    assert_eq!(
        sandbox.last_code(IVANOV).as_deref(),
        answer["code"].as_str()
    );
    assert_eq!(
        srv.error("/send-confirmation-code", json!({"card": "nope"}))
            .await,
        3
    );
    assert_eq!(
        srv.error("/send-confirmation-code", json!({"externalId": "nope"}))
            .await,
        3
    );
    assert_eq!(
        srv.error("/send-confirmation-code", json!({"phoneNumber": "1"}))
            .await,
        20
    );

    // Two codes per minute for one phone; another phone is unaffected.
    srv.ok("/send-confirmation-code", json!({"externalId": "demo-1"}))
        .await;
    assert_eq!(
        srv.error("/send-confirmation-code", json!({"phoneNumber": IVANOV}))
            .await,
        28
    );
    srv.ok(
        "/send-confirmation-code",
        json!({"phoneNumber": "+75551234567"}),
    )
    .await;
    assert_eq!(sandbox.calls("/send-confirmation-code"), 8);
    srv.stop().await;
}

#[test]
fn the_code_window_slides() {
    let mut state = State::default();
    state.settings.code_requests_per_minute = 1;
    let request: Map<String, Value> =
        serde_json::from_value(json!({"phoneNumber": IVANOV})).unwrap();
    let t0 = Now::current();
    let at = |secs: u64| Now {
        wall: t0.wall,
        mono: t0.mono + Duration::from_secs(secs),
    };
    assert!(
        state
            .apply(Op::SendConfirmationCode, &request, &at(0))
            .is_ok()
    );
    let refused = state.apply(Op::SendConfirmationCode, &request, &at(59));
    assert_eq!(refused.unwrap_err().code, code::TOO_MANY_CODE_REQUESTS);
    // The refusal did not count: a minute after the first code, the next one goes out.
    assert!(
        state
            .apply(Op::SendConfirmationCode, &request, &at(60))
            .is_ok()
    );
}
