//! The storm's same-run baseline: what the disk and the engine give at best.

use std::time::Instant;

/// Rows per second of batched inserts (1,000 report-sized rows per transaction) into a
/// scratch table of the same database: what the disk and the engine give at best.
pub async fn raw_insert_rate(database: &str, rows: usize) -> anyhow::Result<f64> {
    const CHUNK: usize = 1_000;
    let values = |start: usize, end: usize| {
        (start..end)
            .map(|i| {
                format!(
                    "('agent-{i:06}', 'attempt-{i:06}', '1.0.0', '1.1.0', 'succeeded', '{}')",
                    "x".repeat(200)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let create = "CREATE TABLE baseline_reports (agent_id TEXT, attempt_id TEXT, \
        from_version TEXT, to_version TEXT, outcome TEXT, payload TEXT)";
    let insert = "INSERT INTO baseline_reports VALUES ";
    let started;
    if database.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database).await?;
        sqlx::query(create).execute(&pool).await?;
        started = Instant::now();
        for start in (0..rows).step_by(CHUNK) {
            let sql = format!("{insert}{}", values(start, (start + CHUNK).min(rows)));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        }
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = database.parse()?;
        let pool = sqlx::SqlitePool::connect_with(
            options
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await?;
        sqlx::query(create).execute(&pool).await?;
        started = Instant::now();
        for start in (0..rows).step_by(CHUNK) {
            let sql = format!("{insert}{}", values(start, (start + CHUNK).min(rows)));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        }
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
