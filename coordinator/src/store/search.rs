//! The dashboard's agent table: filter, substring search and sort in one indexed query
//! (offset paging), so a 10k fleet is one statement per page, never a read per agent.

use super::{
    Store,
    agents::{AGENT_COLUMNS, AgentRow, FILTER, FilterBinds},
    on_connection,
};
use crate::{
    domain::{AgentFilter, AgentRecord},
    error::Result,
};

/// Columns the table may sort by; anything else never reaches the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentSort {
    #[default]
    AgentId,
    Version,
    LastSeen,
    Group,
}

impl AgentSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "agent_id" => Self::AgentId,
            "version" => Self::Version,
            "last_seen" => Self::LastSeen,
            "group" => Self::Group,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Self::AgentId => "agent_id",
            Self::Version => "COALESCE(agent_version, '')",
            Self::LastSeen => "last_seen_ms",
            Self::Group => "group_name",
        }
    }
}

/// A search: the list filters, a substring of the id or hostname, the order.
#[derive(Debug, Clone, Default)]
pub struct AgentSearch {
    pub filter: AgentFilter,
    pub text: String,
    pub sort: AgentSort,
    pub descending: bool,
}

/// `text` as a case-insensitive LIKE pattern, its wildcards escaped; '' for no search.
fn pattern(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let mut escaped = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

const SEARCH: &str =
    "($5 = '' OR lower(agent_id) LIKE $5 ESCAPE '\\' OR lower(hostname) LIKE $5 ESCAPE '\\')";

impl Store {
    /// Up to `limit` matching agents from `offset`, in the search's order (ties by id).
    pub async fn search_agents(
        &self,
        search: &AgentSearch,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<AgentRecord>> {
        let direction = if search.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE {FILTER} AND {SEARCH} \
             ORDER BY {} {direction}, agent_id {direction} LIMIT $6 OFFSET $7",
            search.sort.column()
        );
        let binds = FilterBinds::from(&search.filter);
        let text = pattern(&search.text);
        let rows: Vec<AgentRow> = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&binds.group)
                .bind(&binds.version)
                .bind(&binds.health)
                .bind(&binds.channel)
                .bind(&text)
                .bind(i64::from(limit))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(conn)
                .await?
        });
        Ok(rows.into_iter().map(AgentRow::into_record).collect())
    }

    pub async fn count_search(&self, search: &AgentSearch) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM agents WHERE {FILTER} AND {SEARCH}");
        let binds = FilterBinds::from(&search.filter);
        let text = pattern(&search.text);
        let (count,): (i64,) = on_connection!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&binds.group)
                .bind(&binds.version)
                .bind(&binds.health)
                .bind(&binds.channel)
                .bind(&text)
                .fetch_one(conn)
                .await?
        });
        Ok(count.max(0) as u64)
    }
}
