//! A fresh PostgreSQL database per test, on the server this machine runs (see .ci/run).

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

/// How long a test waits for a PostgreSQL that is (re)starting, or busy copying template1
/// for another test's CREATE DATABASE, before it fails.
const SERVER_WAIT: Duration = Duration::from_secs(60);

/// Where the admin connection goes; override with DROVER_TEST_POSTGRES_URL.
fn admin_url() -> String {
    std::env::var("DROVER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestPostgres {
    pub url: String,
    name: String,
}

impl TestPostgres {
    /// Creates an empty database. Fails loudly if PostgreSQL is not reachable: the suite
    /// promises to cover both backends, so a silent skip would be a lie.
    /// A server that is restarting (refusing connections, or "starting up") is waited for,
    /// up to a minute.
    pub async fn create() -> Self {
        let admin = admin_url();
        let name = format!("drover_test_{}", uuid::Uuid::new_v4().simple());
        admin_statement(&format!("CREATE DATABASE {name}")).await;
        let (base, _) = admin.rsplit_once('/').expect("URL has a database part");
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's address (host and port of the URL).
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let host_port = self.url_host_port();
        host_port
            .parse()
            .expect("the test URL names an IP address and a port")
    }

    /// The same database reached through `addr` (a proxy) instead of the server.
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        self.url
            .replacen(self.url_host_port(), &addr.to_string(), 1)
    }

    fn url_host_port(&self) -> &str {
        let after_at = self
            .url
            .split_once('@')
            .map_or(self.url.as_str(), |(_, rest)| rest);
        after_at.split('/').next().unwrap_or(after_at)
    }

    /// Runs one statement on the server's admin database (ALTER DATABASE and the like).
    pub async fn admin(&self, sql: &str) {
        admin_statement(sql).await;
    }

    pub async fn drop_database(self) {
        // Drop does it; this name stays for readability at the end of a test.
        drop(self);
    }
}

/// Runs `sql` on the admin database, retrying (bounded by [`SERVER_WAIT`]) while the
/// server refuses connections, is starting or stopping, or the statement fails for a reason
/// a moment cures (template1 in use by a concurrent CREATE DATABASE).
async fn admin_statement(sql: &str) {
    let admin = admin_url();
    let deadline = Instant::now() + SERVER_WAIT;
    loop {
        let attempt = async {
            let mut conn = PgConnection::connect(&admin).await?;
            conn.execute(sqlx::AssertSqlSafe(sql.to_string())).await?;
            conn.close().await
        };
        let err = match attempt.await {
            Ok(()) => return,
            Err(err) => err,
        };
        assert!(
            transient(&err),
            "`{sql}` failed on PostgreSQL at {admin}: {err}"
        );
        assert!(
            Instant::now() < deadline,
            "PostgreSQL at {admin} did not run `{sql}` within {SERVER_WAIT:?}, last error: \
             {err}; start it (scripts/setup) or point DROVER_TEST_POSTGRES_URL at a server \
             where this user may create databases"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An error a restarting or busy server gives: refused or cut connections, "the database
/// system is starting up / shutting down", too many connections, template1 in use.
fn transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("57P01" | "57P02" | "57P03" | "53300" | "55006")
        ),
        _ => false,
    }
}

/// Every test database is dropped, also when its test fails (on its own thread and
/// runtime, since Drop cannot await).
impl Drop for TestPostgres {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.url);
        }
    }
}
