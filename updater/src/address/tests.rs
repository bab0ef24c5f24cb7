use proptest::prelude::*;

use super::*;

#[test]
fn parses_one_or_several_addresses() {
    let one = Coordinators::parse("https://127.0.0.1:7400").unwrap();
    assert_eq!(one.addresses().len(), 1);
    assert!(one.https());
    assert_eq!(one.first(), "https://127.0.0.1:7400");

    let two = Coordinators::parse(" https://a:7400/ , https://b:7401,https://a:7400,").unwrap();
    let urls: Vec<_> = two.addresses().iter().map(|a| a.url.as_str()).collect();
    assert_eq!(
        urls,
        ["https://a:7400", "https://b:7401"],
        "trimmed, deduplicated"
    );
    assert_eq!(two.to_string(), "https://a:7400,https://b:7401");
    assert_eq!(two.addresses()[1].port, 7401);
    assert_eq!(
        Coordinators::parse("https://c").unwrap().addresses()[0].port,
        443
    );
    assert!(!Coordinators::parse("http://[::1]:7400").unwrap().https());
}

#[test]
fn refuses_what_is_not_a_list_of_coordinators() {
    for (text, says) in [
        ("", "no coordinator address"),
        (" , ", "no coordinator address"),
        ("https://a:7400,http://b:7400", "mixes https:// and http://"),
        ("a:7400", "give the scheme"),
        ("ftp://a:7400", "give the scheme"),
        ("https://a:7400/x", "give no path"),
        ("https://a:port", "not a valid coordinator address"),
    ] {
        let err = format!("{:#}", Coordinators::parse(text).unwrap_err());
        assert!(err.contains(says), "{text:?}: {err}");
    }
}

#[tokio::test]
async fn an_ip_is_itself_and_a_name_is_each_address_it_resolves_to() {
    let ip = Coordinators::parse("https://127.0.0.1:7400").unwrap();
    assert_eq!(
        ip.resolve().await,
        [Target {
            address: "https://127.0.0.1:7400".into(),
            url: "https://127.0.0.1:7400".into(),
            tls_name: None,
        }]
    );
    let name = Coordinators::parse("https://localhost:7400,https://127.0.0.1:7401")
        .unwrap()
        .resolve()
        .await;
    let (local, other): (Vec<_>, Vec<_>) = name
        .iter()
        .partition(|t| t.address == "https://localhost:7400");
    assert!(!local.is_empty());
    for target in &local {
        assert_eq!(target.tls_name.as_deref(), Some("localhost"), "{target}");
        let ip: std::net::SocketAddr = target.url.trim_start_matches("https://").parse().unwrap();
        assert!(ip.ip().is_loopback() && ip.port() == 7400, "{target}");
    }
    assert_eq!(other.len(), 1);
    let unknown = Coordinators::parse("https://no-such-host.invalid:7400").unwrap();
    assert!(unknown.resolve().await.is_empty());
}

#[tokio::test]
async fn a_resolved_name_is_verified_as_the_name_not_as_the_ip() {
    let started = crate::enrol::tests::start(std::time::Duration::from_secs(3600)).await;
    let ca = tonic::transport::Certificate::from_pem(crate::pin::certificate_pem(
        &crate::pin::fetch_pinned_ca(&started.address, started.pin)
            .await
            .unwrap(),
    ));
    let none = crate::identity::ClientIdentity::None;
    let port = started.address.rsplit(':').next().unwrap();
    // `localhost` resolves to 127.0.0.1, whose certificate does not name `localhost`.
    let by_name = Coordinators::parse(&format!("https://localhost:{port}"))
        .unwrap()
        .resolve()
        .await;
    let loopback = by_name
        .iter()
        .find(|t| t.url == started.address)
        .expect("localhost resolves to 127.0.0.1");
    assert_eq!(loopback.tls_name.as_deref(), Some("localhost"));
    let err = crate::connection::connect_target(loopback, Some(&ca), &none)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("not valid for name \"localhost\""),
        "{err:?}"
    );
    // The same IP dialled as itself verifies.
    let by_ip = &Coordinators::parse(&started.address)
        .unwrap()
        .resolve()
        .await[0];
    crate::connection::connect_target(by_ip, Some(&ca), &none)
        .await
        .unwrap();
}

#[test]
fn next_moves_on_from_the_last_and_starts_anywhere() {
    let targets = ["a", "b", "c"];
    assert_eq!(next_address(&targets, Some(&"a"), 0.9), 1);
    assert_eq!(next_address(&targets, Some(&"c"), 0.9), 0);
    assert_eq!(next_address(&targets, None, 0.0), 0);
    assert_eq!(next_address(&targets, None, 0.5), 1);
    assert_eq!(next_address(&targets, None, 0.999_999), 2);
    assert_eq!(
        next_address(&targets, Some(&"gone"), 0.4),
        1,
        "gone: a random start"
    );
    assert_eq!(next_address(&["only"], Some(&"only"), 0.7), 0);
}

#[test]
fn backoff_waits_for_a_whole_round_and_a_stable_session_resets_it() {
    let mut rounds = Rounds::default();
    assert_eq!(
        rounds.ended(1, false),
        Some(0),
        "one endpoint: every failure is a round"
    );
    assert_eq!(rounds.ended(1, false), Some(1));
    let mut rounds = Rounds::default();
    assert_eq!(rounds.ended(3, false), None, "the next endpoint at once");
    assert_eq!(rounds.ended(3, false), None);
    assert_eq!(rounds.ended(3, false), Some(0));
    assert_eq!(rounds.ended(3, false), None);
    assert_eq!(rounds.ended(3, false), None);
    assert_eq!(
        rounds.ended(3, false),
        Some(1),
        "the backoff grows per round"
    );
    assert_eq!(
        rounds.ended(3, true),
        None,
        "a stable session's end: the next at once"
    );
    assert_eq!(rounds.ended(3, false), None);
    assert_eq!(
        rounds.ended(3, false),
        Some(0),
        "and the backoff starts again"
    );
    assert_eq!(
        rounds.ended(0, false),
        Some(1),
        "nothing resolved: a failed round"
    );
}

proptest! {
    #[test]
    fn never_the_last_while_another_exists(count in 1usize..20, last in 0usize..20, r in 0.0f64..1.0) {
        let targets: Vec<usize> = (0..count).collect();
        let next = next_address(&targets, Some(&last), r);
        prop_assert!(next < count);
        if count > 1 && last < count {
            prop_assert_ne!(next, last);
        }
    }

    #[test]
    fn a_round_from_any_start_visits_every_endpoint_once(count in 1usize..20, r in 0.0f64..1.0) {
        let targets: Vec<usize> = (0..count).collect();
        let mut seen = Vec::new();
        let mut last = None;
        for _ in 0..count {
            let next = next_address(&targets, last.as_ref(), r);
            seen.push(next);
            last = Some(targets[next]);
        }
        seen.sort_unstable();
        prop_assert_eq!(seen, targets);
    }
}
