//! SQL for the calendars of mailbox pairs: the pairings discovery made, and why one stopped.

use sqlx::Row;

use super::db::{State, StateResult};
use super::sql::DbRow;
use crate::domain::mailbox::{CalendarProps, MailboxCalendar};
use crate::domain::time::now_ms;
use crate::domain::types::PairId;

const COLUMNS: &str = "pair_id, a_calendar, b_calendar, gone, a_name, a_color, b_name, b_color";

/// A row as a pairing; `None` for one whose text no longer parses (written by another version).
fn read(r: &DbRow) -> Option<MailboxCalendar> {
    let props = |name: usize| CalendarProps {
        displayname: r.get(name),
        color: r.get(name + 1),
        ..CalendarProps::default()
    };
    Some(MailboxCalendar {
        id: r.get::<&str, _>(0).parse().ok()?,
        source: r.get::<&str, _>(1).parse().ok()?,
        target: r.get::<&str, _>(2).parse().ok()?,
        gone: r.get(3),
        seen: [props(4), props(6)],
    })
}

impl State {
    /// The calendar pairings of `mailbox`, by pair id.
    pub async fn mailbox_calendars(&self, mailbox: &PairId) -> StateResult<Vec<MailboxCalendar>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mailbox_calendars WHERE mailbox = $1 ORDER BY pair_id"
        )))
        .bind(mailbox.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading a mailbox's calendars"))?;
        Ok(rows.iter().filter_map(read).collect())
    }

    /// Every mailbox's calendar pairings, with the mailbox each belongs to.
    pub async fn all_mailbox_calendars(&self) -> StateResult<Vec<(String, MailboxCalendar)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, mailbox FROM mailbox_calendars ORDER BY pair_id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading mailboxes' calendars"))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get(8), read(r)?)))
            .collect())
    }

    /// Records `mailbox`'s pairings as discovery left them, in one transaction: each one
    /// given is written (new, or replacing its row); the others are left as they were.
    pub async fn record_mailbox_calendars(
        &self,
        mailbox: &PairId,
        calendars: &[MailboxCalendar],
    ) -> StateResult<()> {
        if calendars.is_empty() {
            return Ok(());
        }
        let what = "recording a mailbox's calendars";
        let _turn = self.turn().await;
        let mut tx = self.write_tx(what).await?;
        for c in calendars {
            let [a, b] = &c.seen;
            sqlx::query(
                "INSERT INTO mailbox_calendars (pair_id, mailbox, a_calendar, b_calendar, gone, \
                 a_name, a_color, b_name, b_color, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (pair_id) DO UPDATE SET mailbox = excluded.mailbox, \
                 a_calendar = excluded.a_calendar, b_calendar = excluded.b_calendar, \
                 gone = excluded.gone, a_name = excluded.a_name, a_color = excluded.a_color, \
                 b_name = excluded.b_name, b_color = excluded.b_color, updated_at = excluded.updated_at",
            )
            .bind(c.id.as_str())
            .bind(mailbox.as_str())
            .bind(c.source.to_string())
            .bind(c.target.to_string())
            .bind(c.gone.as_deref())
            .bind(a.displayname.as_deref())
            .bind(a.color.as_deref())
            .bind(b.displayname.as_deref())
            .bind(b.color.as_deref())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(self.err(what))?;
        }
        tx.commit().await.map_err(self.err(what))
    }
}
