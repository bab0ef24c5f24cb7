//! Maintenance schedules per group.

use drover_rules::{MaintenanceSchedule, Weekdays};

use super::{NewEvent, Store, insert_events, on_connection};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct GroupSchedule {
    pub group: String,
    pub schedule: MaintenanceSchedule,
    pub updated_at_ms: i64,
}

impl Store {
    pub async fn list_schedules(&self) -> Result<Vec<GroupSchedule>> {
        let rows: Vec<(String, i64, i64, i64, i64)> = on_connection!(self, conn => {
            sqlx::query_as(
                "SELECT group_name, days, start_minute_utc, duration_minutes, updated_at_ms \
                 FROM group_schedules ORDER BY group_name",
            )
            .fetch_all(conn)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(group, days, start, duration, updated_at_ms)| GroupSchedule {
                    group,
                    schedule: MaintenanceSchedule {
                        days: Weekdays(days as u8),
                        start_minute_utc: start as u32,
                        duration_minutes: duration as u32,
                    },
                    updated_at_ms,
                },
            )
            .collect())
    }

    pub async fn set_schedule(
        &self,
        group: &str,
        schedule: &MaintenanceSchedule,
        now_ms: i64,
        event: &NewEvent,
    ) -> Result<()> {
        let _write = self.write_gate().await;
        on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO group_schedules (group_name, days, start_minute_utc, duration_minutes, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_name) DO UPDATE SET days = excluded.days, \
                 start_minute_utc = excluded.start_minute_utc, duration_minutes = excluded.duration_minutes, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .bind(group)
            .bind(i64::from(schedule.days.0))
            .bind(i64::from(schedule.start_minute_utc))
            .bind(i64::from(schedule.duration_minutes))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            insert_events!(tx, [event]);
            tx.commit().await?;
        });
        self.count_writes(2);
        Ok(())
    }

    /// Returns whether a schedule existed (only then is anything written, with its event).
    pub async fn clear_schedule(&self, group: &str, event: &NewEvent) -> Result<bool> {
        let _write = self.write_gate().await;
        let removed = on_connection!(self, conn => {
            let mut tx = conn.begin().await?;
            let removed = sqlx::query("DELETE FROM group_schedules WHERE group_name = $1")
                .bind(group)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed > 0 {
                insert_events!(tx, [event]);
                tx.commit().await?;
            }
            removed
        });
        self.count_writes(2 * removed);
        Ok(removed > 0)
    }
}
