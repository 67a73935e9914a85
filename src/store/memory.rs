//! `memory`: an in-process store for tests and benches, with sync tokens and fault injection.
//!
//! It behaves like a CalDAV server with sync-collection support: every write bumps a revision,
//! deletions leave tombstones, and `changes` answers from the revision in a token. Faults: fail the
//! next N calls with a chosen kind, or "crash" after a write (the write lands, the caller sees an
//! error, as when the process dies between the remote write and recording the mapping).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::calendar::{CalendarStore, Changes, Fetched, ItemVersion, Resource};
use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::mailbox::{CalendarProps, Collection, CollectionKind, HomeListing};
use crate::domain::types::{CalendarPath, Etag, Href, SyncToken};

#[derive(Default)]
pub struct MemoryStore {
    // A std Mutex: never held across an await, and calls are short.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    calendars: BTreeMap<CalendarPath, Calendar>,
    revision: u64,
    fail_next: usize,
    fail_kind: Option<ErrorKind>,
    crash_after_write: bool,
}

#[derive(Default)]
struct Calendar {
    items: BTreeMap<Href, Stored>,
    /// href → revision at which it was deleted.
    tombstones: BTreeMap<Href, u64>,
    props: CalendarProps,
}

struct Stored {
    etag: Etag,
    data: String,
    revision: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data: every update is one insert.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_calendar(&self, cal: &CalendarPath) {
        self.lock().calendars.entry(cal.clone()).or_default();
    }

    /// A calendar's properties, if it exists.
    pub fn props(&self, cal: &CalendarPath) -> Option<CalendarProps> {
        self.lock().calendars.get(cal).map(|c| c.props.clone())
    }

    /// The next `n` calls fail with `kind` (before doing anything).
    pub fn fail_next(&self, n: usize, kind: ErrorKind) {
        let mut g = self.lock();
        g.fail_next = n;
        g.fail_kind = Some(kind);
    }

    /// The next successful write is applied and then reported as failed.
    pub fn crash_after_next_write(&self) {
        self.lock().crash_after_write = true;
    }

    /// Disarms every injected fault.
    pub fn clear_faults(&self) {
        let mut g = self.lock();
        g.fail_next = 0;
        g.crash_after_write = false;
    }

    /// Writes an item directly, bypassing faults and preconditions (a user editing the calendar).
    pub fn put(&self, cal: &CalendarPath, name: &str, data: &str) -> Href {
        let mut g = self.lock();
        let href = cal.join(name);
        g.write(cal, &href, data.to_string());
        href
    }

    /// Deletes an item directly, bypassing faults and preconditions.
    pub fn remove(&self, href: &Href) -> bool {
        let mut g = self.lock();
        let rev = g.bump();
        g.calendars.values_mut().any(|c| {
            let found = c.items.remove(href).is_some();
            if found {
                c.tombstones.insert(href.clone(), rev);
            }
            found
        })
    }

    /// Every item of `cal` with its body, by href.
    pub fn items(&self, cal: &CalendarPath) -> Vec<(Href, String)> {
        let g = self.lock();
        g.calendars
            .get(cal)
            .map(|c| {
                c.items
                    .iter()
                    .map(|(h, s)| (h.clone(), s.data.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn write(&mut self, cal: &CalendarPath, href: &Href, data: String) -> Etag {
        let rev = self.bump();
        let etag = Etag::new(format!("\"r{rev}\""));
        let c = self.calendars.entry(cal.clone()).or_default();
        c.tombstones.remove(href);
        c.items.insert(
            href.clone(),
            Stored {
                etag: etag.clone(),
                data,
                revision: rev,
            },
        );
        etag
    }

    /// Applies an injected failure, if one is armed.
    fn enter(&mut self, what: &str) -> StoreResult<()> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            let kind = self.fail_kind.unwrap_or(ErrorKind::Transient);
            return Err(StoreError::new(
                kind,
                format!("injected {kind} failure on {what}"),
            ));
        }
        Ok(())
    }

    /// Called after a write landed: turns it into a "crash" if one was asked for.
    fn after_write(&mut self, what: &str) -> StoreResult<()> {
        if std::mem::take(&mut self.crash_after_write) {
            return Err(StoreError::new(
                ErrorKind::Transient,
                format!("simulated crash after {what}"),
            ));
        }
        Ok(())
    }

    fn calendar(&self, cal: &CalendarPath) -> StoreResult<&Calendar> {
        self.calendars.get(cal).ok_or_else(|| {
            StoreError::new(
                ErrorKind::NotFound,
                format!("calendar {cal} does not exist"),
            )
        })
    }

    fn find(&mut self, href: &Href) -> StoreResult<(CalendarPath, &mut Stored)> {
        self.calendars
            .iter_mut()
            .find_map(|(path, c)| c.items.get_mut(href).map(|s| (path.clone(), s)))
            .ok_or_else(|| StoreError::new(ErrorKind::NotFound, format!("{href} does not exist")))
    }
}

fn parse_token(t: &SyncToken) -> Option<u64> {
    t.as_str().strip_prefix("mem-")?.parse().ok()
}

#[async_trait]
impl CalendarStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    /// A home is every calendar one segment under it.
    async fn collections(&self, home: &CalendarPath) -> StoreResult<HomeListing> {
        let mut g = self.lock();
        g.enter("list calendars")?;
        // Paths under `home` sort right after it.
        let collections = (g.calendars.range(home.clone()..))
            .take_while(|(path, _)| path.as_str().starts_with(home.as_str()))
            .filter(|(path, _)| {
                let rest = &path.as_str()[home.as_str().len()..];
                rest.len() > 1 && rest.matches('/').count() == 1
            })
            .map(|(path, c)| Collection {
                path: path.clone(),
                kind: CollectionKind::Calendar,
                props: c.props.clone(),
                owner: None,
            })
            .collect();
        Ok(HomeListing {
            collections,
            ..HomeListing::default()
        })
    }

    async fn make_calendar(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let mut g = self.lock();
        g.enter("make calendar")?;
        if g.calendars.contains_key(cal) {
            let why = format!("calendar {cal} already exists");
            return Err(StoreError::new(ErrorKind::PreconditionFailed, why));
        }
        let props = props.clone();
        g.calendars.insert(
            cal.clone(),
            Calendar {
                props,
                ..Calendar::default()
            },
        );
        Ok(())
    }

    async fn set_props(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let mut g = self.lock();
        g.enter("set calendar properties")?;
        let c = g.calendars.get_mut(cal).ok_or_else(|| {
            StoreError::new(
                ErrorKind::NotFound,
                format!("calendar {cal} does not exist"),
            )
        })?;
        for (mine, new) in [
            (&mut c.props.displayname, &props.displayname),
            (&mut c.props.color, &props.color),
            (&mut c.props.description, &props.description),
        ] {
            if new.is_some() {
                mine.clone_from(new);
            }
        }
        Ok(())
    }

    async fn check_calendar(&self, cal: &CalendarPath) -> StoreResult<()> {
        let mut g = self.lock();
        g.enter("check")?;
        g.calendar(cal).map(|_| ())
    }

    async fn list(&self, cal: &CalendarPath) -> StoreResult<Vec<ItemVersion>> {
        let mut g = self.lock();
        g.enter("list")?;
        let c = g.calendar(cal)?;
        Ok(c.items
            .iter()
            .map(|(h, s)| ItemVersion {
                href: h.clone(),
                etag: s.etag.clone(),
            })
            .collect())
    }

    async fn changes(&self, cal: &CalendarPath, since: Option<&SyncToken>) -> StoreResult<Changes> {
        let mut g = self.lock();
        g.enter("changes")?;
        let c = g.calendar(cal)?;
        // The calendar's own last change, as a server's per-collection token: unchanged while
        // the calendar is.
        let latest = c
            .items
            .values()
            .map(|s| s.revision)
            .chain(c.tombstones.values().copied())
            .max()
            .unwrap_or(0);
        let token = Some(SyncToken::new(format!("mem-{latest}")));
        let version = |(h, s): (&Href, &Stored)| ItemVersion {
            href: h.clone(),
            etag: s.etag.clone(),
        };
        match since.and_then(parse_token) {
            Some(rev) => Ok(Changes {
                changed: c
                    .items
                    .iter()
                    .filter(|(_, s)| s.revision > rev)
                    .map(version)
                    .collect(),
                deleted: c
                    .tombstones
                    .iter()
                    .filter(|(_, r)| **r > rev)
                    .map(|(h, _)| h.clone())
                    .collect(),
                complete: false,
                token,
            }),
            None => Ok(Changes {
                changed: c.items.iter().map(version).collect(),
                deleted: Vec::new(),
                complete: true,
                token,
            }),
        }
    }

    async fn fetch(&self, cal: &CalendarPath, hrefs: &[Href]) -> StoreResult<Vec<Fetched>> {
        let mut g = self.lock();
        g.enter("fetch")?;
        let c = g.calendar(cal)?;
        Ok(hrefs
            .iter()
            .map(|h| {
                let res = c
                    .items
                    .get(h)
                    .map(|s| Resource {
                        href: h.clone(),
                        etag: s.etag.clone(),
                        data: s.data.clone(),
                    })
                    .ok_or_else(|| {
                        StoreError::new(ErrorKind::NotFound, format!("{h} does not exist"))
                    });
                (h.clone(), res)
            })
            .collect())
    }

    async fn create(&self, cal: &CalendarPath, name: &str, data: &str) -> StoreResult<ItemVersion> {
        let mut g = self.lock();
        g.enter("create")?;
        let href = cal.join(name);
        if g.calendar(cal)?.items.contains_key(&href) {
            return Err(StoreError::new(
                ErrorKind::PreconditionFailed,
                format!("{href} already exists"),
            ));
        }
        let etag = g.write(cal, &href, data.to_string());
        g.after_write("create")?;
        Ok(ItemVersion { href, etag })
    }

    async fn update(&self, href: &Href, etag: &Etag, data: &str) -> StoreResult<Etag> {
        let mut g = self.lock();
        g.enter("update")?;
        let (cal, stored) = g.find(href)?;
        if &stored.etag != etag {
            return Err(StoreError::new(
                ErrorKind::PreconditionFailed,
                format!("{href} changed since it was read"),
            ));
        }
        let new = g.write(&cal, href, data.to_string());
        g.after_write("update")?;
        Ok(new)
    }

    async fn delete(&self, href: &Href, etag: &Etag) -> StoreResult<()> {
        let mut g = self.lock();
        g.enter("delete")?;
        let (cal, stored) = g.find(href)?;
        if &stored.etag != etag {
            return Err(StoreError::new(
                ErrorKind::PreconditionFailed,
                format!("{href} changed since it was read"),
            ));
        }
        let rev = g.bump();
        let c = g.calendars.get_mut(&cal).expect("found above");
        c.items.remove(href);
        c.tombstones.insert(href.clone(), rev);
        g.after_write("delete")?;
        Ok(())
    }
}
