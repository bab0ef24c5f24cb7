//! `droverctl audit`: who asked for which change, and how it ended.

use clap::Args;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, status_text};
use crate::{
    names::{or_dash, time_or_dash},
    render::{Reply, Table},
};

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only records since then: an RFC 3339 time (2026-11-26T10:00:00Z) or a duration ago
    /// (90m, 1h30m, 2d).
    #[arg(long)]
    since: Option<String>,
    /// At most this many records, the newest (at most 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// `--since` as Unix milliseconds: a time as given, or a duration back from now.
fn since_ms(text: &str) -> Result<i64, String> {
    drover_rules::time::parse_rfc3339(text).or_else(|_| {
        let ago = drover_rules::time::parse_duration_ms(text).map_err(|_| {
            format!(
                "--since '{text}' is neither an RFC 3339 time (2026-11-26T10:00:00Z) nor a \
                 duration (90m, 1h30m, 2d)"
            )
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|err| format!("the clock is before 1970: {err}"))?;
        Ok(i64::try_from(now.as_millis()).unwrap_or(i64::MAX) - ago)
    })
}

pub async fn run(client: &mut Client, args: AuditArgs) -> Result<Reply, String> {
    let since = args.since.as_deref().map(since_ms).transpose()?;
    let request = pb::ListAuditRequest {
        since: since.map(|ms| prost_types::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: 0,
        }),
        limit: args.limit,
    };
    let entries = client
        .list_audit(request)
        .await
        .map_err(status_text)?
        .into_inner()
        .entries;
    let data: Vec<_> = entries.iter().map(api::AuditEntry::from).collect();
    let mut table = Table::new(&[
        "time", "actor", "role", "action", "target", "result", "detail",
    ]);
    for e in &entries {
        let cells = vec![
            time_or_dash(e.at.as_ref()),
            e.actor.clone(),
            e.role.clone(),
            e.action.clone(),
            or_dash(&e.target),
            e.result.clone(),
            e.detail.clone(),
        ];
        if e.result == drover_rules::AuditResult::Refused.as_str() {
            table.alert_row(cells);
        } else {
            table.row(cells);
        }
    }
    Ok(Reply::new(data, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago_and_says_the_forms_otherwise() {
        assert_eq!(since_ms("2026-11-23T00:00:00Z"), Ok(1_795_392_000_000));
        let hour_ago = since_ms("1h").unwrap();
        let now = since_ms("0s").unwrap();
        assert!((now - hour_ago - 3_600_000).abs() < 5_000);
        assert!(since_ms("last week").unwrap_err().contains("RFC 3339"));
    }
}
