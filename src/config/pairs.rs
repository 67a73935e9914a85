//! Validating `[[pairs]]` and `pairs_csv`: ids, calendars, directions and conflict policies,
//! each calendar in one pair at most.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::domain::pair::Pair;
use crate::domain::types::{CalendarRef, PairId};

use super::raw::RawPair;
use super::types::{ServerConfig, SyncConfig};
use super::validate::Validator;

impl Validator {
    pub(super) fn pairs(
        &mut self,
        raw: Vec<RawPair>,
        csv: Option<&str>,
        base: &Path,
        servers: &BTreeMap<String, ServerConfig>,
        sync: &SyncConfig,
    ) -> (Vec<Pair>, BTreeMap<String, PairId>) {
        let mut entries: Vec<Entry> = raw
            .into_iter()
            .enumerate()
            .map(|(i, p)| Entry {
                file: self.file.clone(),
                key: format!("pairs[{i}]"),
                id: p.id,
                source: p.source,
                target: p.target,
                address: p.address,
                direction: p.direction,
                conflict: p.conflict,
            })
            .collect();
        if let Some(csv) = csv {
            entries.extend(self.csv_entries(csv, base));
        }
        let mut seen: HashMap<PairId, String> = HashMap::new();
        let mut targets: HashSet<CalendarRef> = HashSet::new();
        let mut pairs = Vec::with_capacity(entries.len());
        let mut addresses: BTreeMap<String, PairId> = BTreeMap::new();
        for e in entries {
            let (file, key) = (e.file.as_path(), e.key.as_str());
            let way = (e.direction.as_deref(), e.conflict.as_deref());
            let (direction, conflict) = self.way_at(file, key, way, sync);
            let id = self.id_at(file, key, &e.id);
            let unique = id
                .as_ref()
                .is_some_and(|id| self.first_id(&mut seen, (file, key), id, "pair"));
            let source = self.calendar_at(file, key, "source", &e.source, servers);
            let target = self.calendar_at(file, key, "target", &e.target, servers);
            let (Some(id), Some(source), Some(target), true) = (id, source, target, unique) else {
                continue;
            };
            if source == target {
                self.issue_in(
                    file,
                    format!("{key}.target"),
                    "is the same calendar as source",
                );
                continue;
            }
            if !targets.insert(target.clone()) {
                let why = format!("{target} is already the target of another pair");
                self.issue_in(file, format!("{key}.target"), why);
                continue;
            }
            if let Some(addr) = &e.address {
                self.mailbox_address(file, key, addr, &id, &mut addresses);
            }
            pairs.push(Pair {
                id,
                source,
                target,
                direction,
                conflict,
            });
        }
        (pairs, addresses)
    }

    /// `id` as the id of a pair or a mailbox, or an issue at `KEY.id`: `/` is kept for a
    /// mailbox's calendars (`MAILBOX/CALENDAR`).
    pub(super) fn id_at(&mut self, file: &Path, key: &str, id: &str) -> Option<PairId> {
        let parsed = id.parse::<PairId>().and_then(|p| match id.contains('/') {
            true => Err(format!(
                "{id:?}: '/' is kept for a mailbox's calendars (MAILBOX/CALENDAR)"
            )),
            false => Ok(p),
        });
        parsed
            .map_err(|e| self.issue_in(file, format!("{key}.id"), e))
            .ok()
    }

    /// `value` as a calendar of a configured server, or an issue at `KEY.NAME`.
    fn calendar_at(
        &mut self,
        file: &Path,
        key: &str,
        name: &str,
        value: &str,
        servers: &BTreeMap<String, ServerConfig>,
    ) -> Option<CalendarRef> {
        match value.parse::<CalendarRef>() {
            Err(e) => {
                self.issue_in(file, format!("{key}.{name}"), e);
                None
            }
            Ok(c) => self
                .server_at(file, &format!("{key}.{name}"), &c.server, servers)
                .map(|_| c),
        }
    }

    /// The configured server `server`, or an issue at `key` naming the servers there are.
    pub(super) fn server_at<'s>(
        &mut self,
        file: &Path,
        key: &str,
        server: &str,
        servers: &'s BTreeMap<String, ServerConfig>,
    ) -> Option<&'s ServerConfig> {
        let found = servers.get(server);
        if found.is_none() {
            let known: Vec<&str> = servers.keys().map(String::as_str).collect();
            self.issue_in(
                file,
                key,
                format!(
                    "unknown server {server:?} (configured: {})",
                    known.join(", ")
                ),
            );
        }
        found
    }

    /// Notes `addr` as the mailbox address of pair `id`, or an issue at `KEY.address`.
    fn mailbox_address(
        &mut self,
        file: &Path,
        key: &str,
        addr: &str,
        id: &PairId,
        addresses: &mut BTreeMap<String, PairId>,
    ) {
        let addr = crate::domain::identity::normalize_address(addr);
        if !addr.contains('@') || addr.contains(char::is_whitespace) {
            self.issue_in(
                file,
                format!("{key}.address"),
                format!("{addr:?} is not an email address"),
            );
        } else if let Some(other) = addresses.insert(addr.clone(), id.clone()) {
            self.issue_in(
                file,
                format!("{key}.address"),
                format!("{addr} is already the address of pair {other}"),
            );
        }
    }
}

/// One pair as written, in `[[pairs]]` or a line of `pairs_csv`.
pub(super) struct Entry {
    file: PathBuf,
    /// Where in `file`: `pairs[3]` or `line 12`.
    key: String,
    id: String,
    source: String,
    target: String,
    /// The mailbox address.
    address: Option<String>,
    direction: Option<String>,
    conflict: Option<String>,
}

impl Validator {
    /// The pairs of `pairs_csv`: `id,source,target[,address[,direction[,conflict]]]` per line,
    /// an empty column meaning the default, an optional header line.
    pub(super) fn csv_entries(&mut self, csv: &str, base: &Path) -> Vec<Entry> {
        self.csv_lines("pairs_csv", csv, base, 3..=6)
            .into_iter()
            .map(|(file, key, row)| {
                let col = |i: usize| row.get(i).filter(|c| !c.is_empty()).cloned();
                Entry {
                    file,
                    key,
                    id: row[0].clone(),
                    source: row[1].clone(),
                    target: row[2].clone(),
                    address: col(3),
                    direction: col(4),
                    conflict: col(5),
                }
            })
            .collect()
    }
}
