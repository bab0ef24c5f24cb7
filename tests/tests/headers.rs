//! #22 item 5: every HTTP answer (the dashboard, its assets, the API, errors) says how a
//! browser may use it, so the dashboard's confirm-and-act buttons cannot be framed and no
//! answer is sniffed into something else. (The browser suite runs the dashboard under this
//! policy, so a script or style it blocked would fail there.)

use drover_tests::{CoordinatorBuilder, http_headers};

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .control_plane("1.0.0")
        .start()
        .await;
    for (path, status) in [
        ("/", 200),
        ("/assets/app.js", 200),
        ("/api/v1/agents", 200),
        ("/api/v1/no-such-route", 404),
        ("/readyz", 200),
    ] {
        let (got, headers) = http_headers(c.addresses.http, path).await;
        assert_eq!(got, status, "{path}");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{path} has no {name}: {headers:?}"))
        };
        let policy = header("content-security-policy");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(
            header("strict-transport-security").starts_with("max-age="),
            "{path}"
        );
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
}
