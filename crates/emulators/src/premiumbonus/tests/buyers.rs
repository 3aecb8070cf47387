//! `/buyer-info`, `/buyer-register`, `/buyer-edit` and the confirmation codes.

use super::*;

#[tokio::test]
async fn phones_must_be_eleven_digits_starting_with_7() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let items = json!([item(None, "A", "100", "1")]);
    for bad in [
        "+79990000001",
        "89990000001",
        "7 999 000 00 01",
        "7(999)0000001",
        "7999000000",
        "799900000011",
        "7999000000a",
        "６9990000001",
    ] {
        let bodies = [
            ("/buyer-info", json!({"phone": bad})),
            ("/buyer-register", json!({"phone": bad})),
            ("/buyer-edit", json!({"phone": bad, "name": "X"})),
            ("/send-register-code", json!({"phone": bad})),
            (
                "/verify-confirmation-code",
                json!({"phone": bad, "code": "1234"}),
            ),
            ("/purchase-dry-run", json!({"phone": bad, "items": items})),
            ("/purchase", purchase_body("p", bad, "0", items.clone())),
        ];
        for (path, body) in bodies {
            let description = srv.refused(path, body).await;
            assert!(description.contains(bad), "{path}: {description}");
            assert!(description.contains("7XXXXXXXXXX"), "{description}");
        }
    }
    let description = srv
        .refused("/buyer-info", json!({"phone": 79990000001_u64}))
        .await;
    assert!(description.contains("79990000001"), "{description}");
    // An identificator that is a badly written phone is refused too…
    for bad in ["+79990000001", "8 (999) 000-00-01", "999 000-00-01"] {
        let description = srv
            .refused("/buyer-info", json!({"identificator": bad}))
            .await;
        assert!(description.contains(bad), "{description}");
    }
    // …but a string of digits may be a card number.
    let answer = srv
        .ok("/buyer-info", json!({"identificator": "89990000001"}))
        .await;
    assert_eq!(answer["is_registered"], json!(false));
    assert_eq!(answer["identificator_type"], json!("card"));
    assert_eq!(sandbox.calls("/purchase"), 8);
    srv.stop().await;
}

#[tokio::test]
async fn buyer_info_finds_buyers_by_any_identificator() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;
    let queries = [
        (json!({"identificator": IVANOV}), "phone"),
        (json!({"phone": IVANOV}), "phone"),
        (json!({"identificator": "IVANOV@Example.com"}), "email"),
        (json!({"identificator": "PB-0001"}), "card"),
        (json!({"external_id": "demo-1"}), "external_id"),
        (
            json!({"identificator": "PB-0001", "external_id": "demo-2"}),
            "card",
        ),
    ];
    let expected_id = client_id(Some(IVANOV)).to_string();
    for (query, kind) in queries {
        let answer = srv.ok("/buyer-info", query.clone()).await;
        assert_eq!(answer["is_registered"], json!(true), "{query}");
        assert_eq!(answer["identificator_type"], json!(kind), "{query}");
        assert_eq!(answer["blocked"], json!(false));
        assert_eq!(answer["client_id"], json!(expected_id));
        assert_eq!(answer["phone"], json!(IVANOV));
        assert_eq!(answer["card_number"], json!("PB-0001"));
        assert_eq!(answer["surname"], json!("Иванов"));
        assert_eq!(answer["name"], json!("Иван"));
        assert_eq!(answer["middle_name"], json!("Иванович"));
        assert_eq!(answer["birth_date"], json!("1985-03-14"));
        assert_eq!(answer["gender"], json!("male"));
        assert_eq!(answer["email"], json!("ivanov@example.com"));
        assert_eq!(answer["external_id"], json!("demo-1"));
        assert_eq!(answer["group_name"], json!("Базовая"));
        assert!(Uuid::parse_str(answer["group_id"].as_str().unwrap()).is_ok());
        assert_eq!(answer["balance"].to_string(), "500.00");
        assert_eq!(answer["balance_bonus_accumulated"].to_string(), "500.00");
        assert_eq!(answer["balance_bonus_present"].to_string(), "0.00");
        assert_eq!(answer["balance_bonus_action"].to_string(), "0.00");
        assert_eq!(answer["bonus_inactive"].to_string(), "0.00");
        assert_eq!(answer["registration_confirmation_required"], json!(false));
        assert_eq!(answer["write_off_confirmation_required"], json!(false));
    }

    let petrova = srv
        .ok("/buyer-info", json!({"identificator": PETROVA}))
        .await;
    assert_eq!(petrova["balance"].to_string(), "0.00");
    assert_eq!(petrova["middle_name"], Value::Null);
    let blocked = srv
        .ok("/buyer-info", json!({"identificator": "PB-0009"}))
        .await;
    assert_eq!(blocked["blocked"], json!(true));
    assert_eq!(blocked["phone"], json!(BLOCKED));

    sandbox.set_settings(PbSettings {
        registration_confirmation_required: true,
        write_off_confirmation_required: true,
        ..PbSettings::default()
    });
    for (query, kind) in [
        (json!({"identificator": "79110000000"}), "phone"),
        (json!({"identificator": "nobody@example.com"}), "email"),
        (json!({"identificator": "PB-9999"}), "card"),
        (json!({"external_id": "nope"}), "external_id"),
    ] {
        let answer = srv.ok("/buyer-info", query).await;
        let mut answer = answer.as_object().cloned().unwrap();
        answer.remove("logger");
        assert_eq!(
            Value::Object(answer),
            json!({
                "success": true, "is_registered": false, "identificator_type": kind,
                "registration_confirmation_required": true,
                "write_off_confirmation_required": true,
            })
        );
    }
    srv.refused("/buyer-info", json!({"identificator": 5}))
        .await;
    srv.refused("/buyer-info", json!({"identificator": ""}))
        .await;
    srv.stop().await;
}

#[tokio::test]
async fn registration_without_confirmation_and_edits() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    sandbox.set_settings(PbSettings {
        welcome_bonus: d("100"),
        ..PbSettings::default()
    });
    let srv = start(&sandbox).await;
    let answer = srv
        .ok(
            "/buyer-register",
            json!({
                "phone": "79123456789", "card_number": "C-1", "surname": "Новикова",
                "name": "Анна", "middle_name": "Петровна", "birth_date": "1990-05-01",
                "gender": "female", "email": "anna@example.com", "external_id": "ms-1",
                "phone_checked": false, "registration_channel": "pos", "cashier_name": "К",
            }),
        )
        .await;
    assert_eq!(answer["is_registered"], json!(true));
    assert_eq!(answer["phone"], json!("79123456789"));
    assert_eq!(answer["card_number"], json!("C-1"));
    assert_eq!(answer["middle_name"], json!("Петровна"));
    assert_eq!(answer["gender"], json!("female"));
    assert_eq!(answer["balance"].to_string(), "100.00");
    assert_eq!(answer["write_off_confirmation_required"], json!(false));
    assert_eq!(
        answer["client_id"],
        json!(client_id(Some("79123456789")).to_string())
    );
    assert_eq!(sandbox.balance("+7 912 345-67-89"), Some(d("100")));
    let found = srv.ok("/buyer-info", json!({"identificator": "C-1"})).await;
    assert_eq!(found["email"], json!("anna@example.com"));
    // Only the phone is required.
    let bare = srv
        .ok("/buyer-register", json!({"phone": "79123456780"}))
        .await;
    assert_eq!(bare["card_number"], Value::Null);
    assert_eq!(bare["name"], Value::Null);

    let cases = [
        (json!({}), "phone is required"),
        (json!({"phone": ""}), "phone is required"),
        (json!({"phone": IVANOV}), "already registered"),
        (
            json!({"phone": "79120000001", "card_number": "PB-0001"}),
            "Card",
        ),
        (
            json!({"phone": "79120000002", "email": "IVANOV@example.com"}),
            "email",
        ),
        (
            json!({"phone": "79120000003", "external_id": "demo-1"}),
            "external_id",
        ),
        (
            json!({"phone": "79120000004", "birth_date": "1990-13-01"}),
            "birth_date",
        ),
        (
            json!({"phone": "79120000004", "birth_date": "01.05.1990"}),
            "birth_date",
        ),
        (
            json!({"phone": "79120000004", "birth_date": "1990-5-1"}),
            "birth_date",
        ),
        (json!({"phone": "79120000004", "gender": "m"}), "gender"),
        (json!({"phone": "79120000004", "email": "anna"}), "email"),
        (json!({"phone": "79120000004", "name": 5}), "name"),
        (
            json!({"phone": "79120000004", "phone_checked": "yes"}),
            "phone_checked",
        ),
    ];
    for (body, expected) in cases {
        let description = srv.refused("/buyer-register", body.clone()).await;
        assert!(description.contains(expected), "{body}: {description}");
    }
    for phone in ["79120000001", "79120000002", "79120000003", "79120000004"] {
        assert_eq!(sandbox.balance(phone), None);
    }

    // buyer-edit: values replace, "" clears, absent keeps; uniqueness excludes the buyer.
    let edited = srv
        .ok(
            "/buyer-edit",
            json!({"phone": "79123456789", "name": "Анастасия", "email": "",
                   "card_number": "C-1", "phone_checked": true}),
        )
        .await;
    assert_eq!(edited["name"], json!("Анастасия"));
    assert_eq!(edited["surname"], json!("Новикова"));
    assert_eq!(edited["email"], Value::Null);
    assert_eq!(edited["card_number"], json!("C-1"));
    assert_eq!(edited["balance"].to_string(), "100.00");
    let found = srv.ok("/buyer-info", json!({"identificator": "C-1"})).await;
    assert_eq!(found["name"], json!("Анастасия"));
    for (body, expected) in [
        (
            json!({"phone": "79123456789", "card_number": "PB-0001"}),
            "Card",
        ),
        (
            json!({"phone": "79123456789", "email": "petrova@EXAMPLE.com"}),
            "email",
        ),
        (json!({"phone": "79123456789", "gender": "x"}), "gender"),
        (
            json!({"phone": "79110000000", "name": "X"}),
            "not registered",
        ),
        (json!({"name": "X"}), "phone is required"),
    ] {
        let description = srv.refused("/buyer-edit", body.clone()).await;
        assert!(description.contains(expected), "{body}: {description}");
    }
    // A blocked buyer can be edited.
    srv.ok(
        "/buyer-edit",
        json!({"phone": BLOCKED, "email": "s@example.com"}),
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn registration_with_confirmation_needs_a_verified_phone() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    sandbox.set_settings(PbSettings {
        registration_confirmation_required: true,
        ..PbSettings::default()
    });
    let srv = start(&sandbox).await;
    let phone = "79160000001";
    let description = srv
        .refused("/buyer-register", json!({"phone": phone}))
        .await;
    assert!(description.contains("must be confirmed"), "{description}");
    assert!(description.contains(phone), "{description}");

    let description = srv
        .refused(
            "/verify-confirmation-code",
            json!({"phone": phone, "code": "1234"}),
        )
        .await;
    assert!(description.contains("No active code"), "{description}");

    let answer = srv.ok("/send-register-code", json!({"phone": phone})).await;
    assert_eq!(answer.as_object().map(Map::len), Some(2), "{answer}");
    let code = sandbox.last_code(phone).unwrap();
    assert_eq!(code.len(), 4);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let wrong = if code == "0000" { "1111" } else { "0000" };

    let description = srv
        .refused(
            "/verify-confirmation-code",
            json!({"phone": phone, "code": wrong}),
        )
        .await;
    assert!(description.contains("Wrong code"), "{description}");
    assert!(description.contains("4 attempts left"), "{description}");
    // Still refused: a wrong code verifies nothing.
    srv.refused("/buyer-register", json!({"phone": phone}))
        .await;

    srv.ok(
        "/verify-confirmation-code",
        json!({"phone": phone, "code": code}),
    )
    .await;
    // The code is used up.
    let description = srv
        .refused(
            "/verify-confirmation-code",
            json!({"phone": phone, "code": code}),
        )
        .await;
    assert!(description.contains("No active code"), "{description}");
    let answer = srv
        .ok("/buyer-register", json!({"phone": phone, "name": "Олег"}))
        .await;
    assert_eq!(answer["registration_confirmation_required"], json!(true));

    // phone_checked: true is the caller vouching for the phone.
    srv.ok(
        "/buyer-register",
        json!({"phone": "79160000002", "phone_checked": true}),
    )
    .await;
    assert_eq!(sandbox.balance("79160000002"), Some(Decimal::ZERO));
    srv.stop().await;
}

#[tokio::test]
async fn codes_are_limited_per_phone_and_burnt_by_wrong_attempts() {
    let sandbox = PremiumBonusSandbox::with_demo_data(TOKEN);
    let srv = start(&sandbox).await;

    // Three codes per phone per minute, both methods together.
    srv.ok("/send-register-code", json!({"phone": IVANOV}))
        .await;
    srv.ok(
        "/send-write-off-confirmation-code",
        json!({"phone": IVANOV, "purchase_amount": n("1000.00"), "write_off_bonus": 100}),
    )
    .await;
    srv.ok("/send-register-code", json!({"phone": IVANOV}))
        .await;
    let description = srv
        .refused("/send-register-code", json!({"phone": IVANOV}))
        .await;
    assert!(
        description.contains("at most 3 per minute"),
        "{description}"
    );
    srv.refused(
        "/send-write-off-confirmation-code",
        json!({"phone": IVANOV}),
    )
    .await;
    srv.ok("/send-register-code", json!({"phone": PETROVA}))
        .await;

    // Only the last code counts; five wrong attempts burn it.
    let code = sandbox.last_code(PETROVA).unwrap();
    let wrong = if code == "0000" { "1111" } else { "0000" };
    for left in (1..=4).rev() {
        let description = srv
            .refused(
                "/verify-confirmation-code",
                json!({"phone": PETROVA, "code": wrong}),
            )
            .await;
        assert!(
            description.contains(&format!("{left} attempts left")),
            "{description}"
        );
    }
    let description = srv
        .refused(
            "/verify-confirmation-code",
            json!({"phone": PETROVA, "code": wrong}),
        )
        .await;
    assert!(description.contains("no longer valid"), "{description}");
    let description = srv
        .refused(
            "/verify-confirmation-code",
            json!({"phone": PETROVA, "code": code}),
        )
        .await;
    assert!(description.contains("No active code"), "{description}");

    // Write-off codes go to registered, unblocked buyers only.
    for (phone, expected) in [("79110000000", "not registered"), (BLOCKED, "blocked")] {
        let description = srv
            .refused("/send-write-off-confirmation-code", json!({"phone": phone}))
            .await;
        assert!(description.contains(expected), "{description}");
    }
    let description = srv
        .refused(
            "/send-write-off-confirmation-code",
            json!({"phone": PETROVA, "write_off_bonus": "100"}),
        )
        .await;
    assert!(description.contains("write_off_bonus"), "{description}");
    srv.refused("/verify-confirmation-code", json!({"phone": PETROVA}))
        .await;
    assert_eq!(sandbox.last_code("+7 999 000-00-02"), Some(code));
    srv.stop().await;
}

#[test]
fn codes_expire_and_verification_lasts_ten_minutes() {
    let mut state = State::default();
    let t0 = Instant::now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    let send = |state: &mut State, now| state.send_code(IVANOV.to_owned(), now);
    let verify = |state: &mut State, now| {
        let code = state.last_codes.get(IVANOV).cloned().unwrap();
        let request: Map<String, Value> =
            serde_json::from_value(json!({"phone": IVANOV, "code": code})).unwrap();
        state.apply(Op::VerifyConfirmationCode, &request, now)
    };

    send(&mut state, at(0)).unwrap();
    let expired = verify(&mut state, at(300)).unwrap_err();
    assert!(expired.description.contains("expired"), "{expired}");
    assert!(!state.is_verified(IVANOV, at(300)));

    send(&mut state, at(301)).unwrap();
    verify(&mut state, at(600)).unwrap(); // 4 min 59 s after sending
    assert!(state.is_verified(IVANOV, at(600 + 599)));
    assert!(!state.is_verified(IVANOV, at(600 + 600)));

    // Three codes in any 60 s; a refusal does not count.
    let mut state = State::default();
    for secs in [0, 1, 2] {
        send(&mut state, at(secs)).unwrap();
    }
    let refused = send(&mut state, at(59)).unwrap_err();
    assert!(
        refused.description.contains("try again in 1 s"),
        "{refused}"
    );
    send(&mut state, at(60)).unwrap(); // the code sent at 0 s left the window
    send(&mut state, at(61)).unwrap(); // and the one sent at 1 s
    assert!(send(&mut state, at(61)).is_err());
}
