//! SQL for calendar leases ([`crate::domain::lease`]): one conditional write to acquire, fencing tokens
//! that only grow, expiry on the database's clock.

use std::time::{Duration, Instant};

use sqlx::Row;

use super::db::{State, StateResult};
use crate::domain::lease::Deadline;
use crate::domain::lease::{Lease, LeaseKind, Locked};

impl State {
    /// Takes the lease on `calendar` for `holder`, or over from a holder on this machine that no
    /// longer runs (a tandem process killed mid-pass): such a holder is not waited out. The one
    /// way every writer and `tandem lock acquire` take a lease. `Ok(Err(locked))`: held.
    pub async fn take_lease(
        &self,
        calendar: &str,
        holder: &str,
        kind: LeaseKind,
        ttl: Duration,
    ) -> StateResult<Result<Lease, Locked>> {
        match self.acquire_lease(calendar, holder, kind, ttl).await? {
            Err(locked) if crate::domain::lease::holder_is_gone(&locked.holder) => {
                let taken = self
                    .take_over_lease(calendar, &locked.holder, holder, kind, ttl)
                    .await?;
                if taken.is_some() {
                    tracing::info!(was = %locked.holder, calendar, "took over the lease of a process that is gone");
                }
                Ok(taken.ok_or(locked))
            }
            got => Ok(got),
        }
    }

    /// Takes the lease on `calendar` for `holder` if it is free, expired or already `holder`'s.
    /// A new holder gets a higher token than any before; renewing keeps the token.
    pub async fn acquire_lease(
        &self,
        calendar: &str,
        holder: &str,
        kind: LeaseKind,
        ttl: Duration,
    ) -> StateResult<Result<Lease, Locked>> {
        let _turn = self.turn().await;
        let asked = Instant::now();
        let row = sqlx::query(self.sql(
            "INSERT INTO leases (calendar, holder, kind, token, expires_at) VALUES ($1, $2, $3, 1, NOW_MS + $4) \
             ON CONFLICT (calendar) DO UPDATE SET \
             token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > NOW_MS THEN leases.token ELSE leases.token + 1 END, \
             holder = excluded.holder, kind = excluded.kind, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= NOW_MS \
             RETURNING token, expires_at",
        ))
        .bind(calendar)
        .bind(holder)
        .bind(kind.as_str())
        .bind(ms(ttl))
        .fetch_optional(self.writes())
        .await
        .map_err(self.err("acquiring lease"))?;
        if let Some(r) = row {
            return Ok(Ok(Lease {
                calendar: calendar.to_string(),
                holder: holder.to_string(),
                kind,
                token: r.get(0),
                expires_at: r.get(1),
                deadline: Deadline::after(asked, ttl),
            }));
        }
        let held = self.lease(calendar).await?;
        Ok(Err(match held {
            Some(l) => Locked {
                calendar: calendar.to_string(),
                holder: l.holder,
                kind: l.kind,
                expires_at: l.expires_at,
            },
            None => Locked {
                calendar: calendar.to_string(),
                holder: "unknown".into(),
                kind: LeaseKind::Sync,
                expires_at: crate::domain::time::now_ms(),
            },
        }))
    }

    /// Takes over the lease from `from` (a holder known to be gone), if it still holds it.
    pub async fn take_over_lease(
        &self,
        calendar: &str,
        from: &str,
        holder: &str,
        kind: LeaseKind,
        ttl: Duration,
    ) -> StateResult<Option<Lease>> {
        let _turn = self.turn().await;
        let asked = Instant::now();
        let row = sqlx::query(self.sql(
            "UPDATE leases SET holder = $1, kind = $2, token = token + 1, expires_at = NOW_MS + $3 \
             WHERE calendar = $4 AND holder = $5 RETURNING token, expires_at",
        ))
        .bind(holder)
        .bind(kind.as_str())
        .bind(ms(ttl))
        .bind(calendar)
        .bind(from)
        .fetch_optional(self.writes())
        .await
        .map_err(self.err("acquiring lease"))?;
        Ok(row.map(|r| Lease {
            calendar: calendar.to_string(),
            holder: holder.to_string(),
            kind,
            token: r.get(0),
            expires_at: r.get(1),
            deadline: Deadline::after(asked, ttl),
        }))
    }

    /// Extends a held lease (and its local deadline); `false` if it is no longer ours (taken
    /// over after it expired).
    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StateResult<bool> {
        let _turn = self.turn().await;
        let asked = Instant::now();
        let done = sqlx::query(self.sql(
            "UPDATE leases SET expires_at = NOW_MS + $1 WHERE calendar = $2 AND holder = $3 AND token = $4 AND expires_at > NOW_MS",
        ))
        .bind(ms(ttl))
        .bind(&lease.calendar)
        .bind(&lease.holder)
        .bind(lease.token)
        .execute(self.writes())
        .await
        .map_err(self.err("renewing lease"))?;
        let renewed = done.rows_affected() == 1;
        if renewed {
            lease.deadline.extend(asked, ttl);
        }
        Ok(renewed)
    }

    /// Whether `lease` is still the current one (same token, not expired): checked before each
    /// batch of writes.
    pub async fn lease_is_current(&self, lease: &Lease) -> StateResult<bool> {
        let row = sqlx::query(self.sql(
            "SELECT 1 FROM leases WHERE calendar = $1 AND holder = $2 AND token = $3 AND expires_at > NOW_MS",
        ))
        .bind(&lease.calendar)
        .bind(&lease.holder)
        .bind(lease.token)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("reading lease"))?;
        Ok(row.is_some())
    }

    /// Gives a lease up. The row stays (expired) so the next holder's token is higher.
    pub async fn release_lease(&self, lease: &Lease) -> StateResult<()> {
        self.release_leases(std::slice::from_ref(lease)).await
    }

    /// Gives leases up in one statement (those still held: one taken over since stays its new
    /// holder's).
    pub async fn release_leases(&self, leases: &[Lease]) -> StateResult<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let _turn = self.turn().await;
        let text = format!(
            "UPDATE leases SET expires_at = NOW_MS WHERE expires_at > NOW_MS AND ({})",
            each_lease(leases.len())
        );
        let mut q = sqlx::query(self.sql(&text));
        for l in leases {
            q = q.bind(&l.calendar).bind(&l.holder).bind(l.token);
        }
        q.execute(self.writes())
            .await
            .map_err(self.err("releasing lease"))?;
        Ok(())
    }

    /// Releases `calendar`'s lease if `holder` has it; `false` if not.
    pub async fn release_lease_of(&self, calendar: &str, holder: &str) -> StateResult<bool> {
        let _turn = self.turn().await;
        let done = sqlx::query(self.sql(
            "UPDATE leases SET expires_at = NOW_MS WHERE calendar = $1 AND holder = $2 AND expires_at > NOW_MS",
        ))
        .bind(calendar)
        .bind(holder)
        .execute(self.writes())
        .await
        .map_err(self.err("releasing lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases every lease of `holder` (a stopping service).
    pub async fn release_leases_of(&self, holder: &str) -> StateResult<()> {
        let _turn = self.turn().await;
        sqlx::query(self.sql(
            "UPDATE leases SET expires_at = NOW_MS WHERE holder = $1 AND expires_at > NOW_MS",
        ))
        .bind(holder)
        .execute(self.writes())
        .await
        .map_err(self.err("releasing leases"))?;
        Ok(())
    }

    /// The lease row of `calendar` (held or not).
    pub async fn lease(&self, calendar: &str) -> StateResult<Option<Lease>> {
        let row = sqlx::query(
            "SELECT calendar, holder, kind, token, expires_at FROM leases WHERE calendar = $1",
        )
        .bind(calendar)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("reading lease"))?;
        Ok(row.map(|r| read_lease(&r)))
    }

    /// Every lease row, held ones first.
    pub async fn leases(&self) -> StateResult<Vec<Lease>> {
        let rows = sqlx::query("SELECT calendar, holder, kind, token, expires_at FROM leases ORDER BY expires_at DESC, calendar")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading leases"))?;
        Ok(rows.iter().map(read_lease).collect())
    }
}

fn read_lease(r: &super::sql::DbRow) -> Lease {
    Lease {
        calendar: r.get(0),
        holder: r.get(1),
        kind: LeaseKind::parse(r.get(2)),
        token: r.get(3),
        expires_at: r.get(4),
        deadline: Deadline::default(),
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// SQL matching the rows of `n` leases, bound in order as calendar, holder, token each.
pub(super) fn each_lease(n: usize) -> String {
    (0..n)
        .map(|i| {
            let p = 3 * i + 1;
            format!(
                "(calendar = ${p} AND holder = ${} AND token = ${})",
                p + 1,
                p + 2
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}
