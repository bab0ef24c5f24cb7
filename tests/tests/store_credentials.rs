//! The admin-credential part of the store's contract, on SQLite and PostgreSQL: the first
//! credential only once, one live credential per name, revoking with its event, once.

use drover_coordinator::store::{CredentialRow, NewEvent, Store};
use drover_rules::{AdminRole, EventKind};
use drover_tests::TestPostgres;

fn row(name: &str, role: AdminRole, hash: &str) -> CredentialRow {
    CredentialRow {
        name: name.into(),
        role,
        token_hash: hash.into(),
        created_at_ms: 1,
        revoked_at_ms: None,
    }
}

fn event(text: &str) -> NewEvent {
    NewEvent {
        at_ms: 1,
        kind: EventKind::Admin,
        text: text.into(),
        ..NewEvent::default()
    }
}

async fn events(store: &Store, text: &str) -> usize {
    let all = store.recent_events("", 1000).await.unwrap();
    all.iter().filter(|e| e.text == text).count()
}

async fn credentials_contract(store: Store) {
    assert!(store.list_credentials().await.unwrap().is_empty());
    let first = row("bootstrap", AdminRole::Admin, "aa");
    assert!(store.create_first_credential(&first).await.unwrap());
    // A second first start (another replica) keeps the existing credential.
    assert!(
        !store
            .create_first_credential(&row("bootstrap", AdminRole::Admin, "bb"))
            .await
            .unwrap()
    );
    let ops = row("ops", AdminRole::Operator, "cc");
    store
        .create_credential(&ops, &[event("ops created")])
        .await
        .unwrap();
    let taken = store
        .create_credential(&row("ops", AdminRole::Viewer, "dd"), &[event("ops again")])
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("revoke it first"), "{taken}");
    assert_eq!(
        events(&store, "ops again").await,
        0,
        "a refused change writes no event"
    );

    assert!(
        store
            .revoke_credential("ops", 5, &[event("ops revoked")])
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_credential("ops", 6, &[event("ops revoked twice")])
            .await
            .unwrap()
    );
    assert_eq!(events(&store, "ops created").await, 1);
    assert_eq!(events(&store, "ops revoked").await, 1);
    assert_eq!(events(&store, "ops revoked twice").await, 0);
    // The name is free again once revoked.
    store
        .create_credential(&row("ops", AdminRole::Viewer, "ee"), &[])
        .await
        .unwrap();
    let all = store.list_credentials().await.unwrap();
    let summary: Vec<_> = all
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.role,
                c.token_hash.as_str(),
                c.revoked_at_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("bootstrap", AdminRole::Admin, "aa", None),
            ("ops", AdminRole::Operator, "cc", Some(5)),
            ("ops", AdminRole::Viewer, "ee", None),
        ]
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_keeps_the_credentials_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    credentials_contract(store).await;
}

#[tokio::test]
async fn postgres_keeps_the_credentials_contract() {
    let db = TestPostgres::create().await;
    let store = Store::open(&db.url).await.unwrap();
    credentials_contract(store).await;
    db.drop_database().await;
}
