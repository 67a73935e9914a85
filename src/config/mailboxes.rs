//! Validating `[[mailboxes]]` and `mailboxes_csv`: ids, users on servers that say where their
//! calendars live, directions and conflict policies; each user the target of one mailbox at
//! most, and no calendar named both by a pair and inside a mailbox's home.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::domain::mailbox::{Home, Mailbox, UserRef};
use crate::domain::pair::Pair;
use crate::domain::types::PairId;

use super::raw::RawMailbox;
use super::types::{ServerConfig, SyncConfig};
use super::validate::Validator;

/// One mailbox as written, in `[[mailboxes]]` or a line of `mailboxes_csv`.
struct Entry {
    file: PathBuf,
    /// Where in `file`: `mailboxes[3]` or `line 12`.
    key: String,
    raw: RawMailbox,
}

impl Validator {
    pub(super) fn mailboxes(
        &mut self,
        raw: Vec<RawMailbox>,
        csv: Option<&str>,
        base: &Path,
        servers: &BTreeMap<String, ServerConfig>,
        sync: &SyncConfig,
    ) -> Vec<Mailbox> {
        let mut entries: Vec<Entry> = (raw.into_iter().enumerate())
            .map(|(i, raw)| Entry {
                file: self.file.clone(),
                key: format!("mailboxes[{i}]"),
                raw,
            })
            .collect();
        if let Some(csv) = csv {
            entries.extend(self.mailbox_lines(csv, base));
        }
        let mut ids: HashMap<PairId, String> = HashMap::new();
        let mut targets: HashMap<UserRef, PairId> = HashMap::new();
        let mut out = Vec::with_capacity(entries.len());
        for Entry { file, key, raw } in entries {
            let way = (raw.direction.as_deref(), raw.conflict.as_deref());
            let (direction, conflict) = self.way_at(&file, &key, way, sync);
            let id = self.id_at(&file, &key, &raw.id);
            let unique = (id.as_ref())
                .is_some_and(|id| self.first_id(&mut ids, (&file, &key), id, "mailbox"));
            let source = self.user_at(&file, &key, "source", &raw.source, servers);
            let target = self.user_at(&file, &key, "target", &raw.target, servers);
            let (Some(id), Some(source), Some(target), true) = (id, source, target, unique) else {
                continue;
            };
            if source == target {
                self.issue_in(&file, format!("{key}.target"), "is the same user as source");
                continue;
            }
            if let Some(other) = targets.insert(target.clone(), id.clone()) {
                let why = format!("{target} is already the target of mailbox {other}");
                self.issue_in(&file, format!("{key}.target"), why);
                continue;
            }
            out.push(Mailbox {
                id,
                source,
                target,
                direction,
                conflict,
            });
        }
        out
    }

    /// The mailboxes of `mailboxes_csv`: `id,source,target[,direction[,conflict]]` per line.
    fn mailbox_lines(&mut self, csv: &str, base: &Path) -> Vec<Entry> {
        self.csv_lines("mailboxes_csv", csv, base, 3..=5)
            .into_iter()
            .map(|(file, key, row)| {
                let col = |i: usize| row.get(i).filter(|c| !c.is_empty()).cloned();
                Entry {
                    file,
                    key,
                    raw: RawMailbox {
                        id: row[0].clone(),
                        source: row[1].clone(),
                        target: row[2].clone(),
                        direction: col(3),
                        conflict: col(4),
                    },
                }
            })
            .collect()
    }

    /// `value` as a user of a configured server that says where users' calendars live, or an
    /// issue at `KEY.NAME`.
    fn user_at(
        &mut self,
        file: &Path,
        key: &str,
        name: &str,
        value: &str,
        servers: &BTreeMap<String, ServerConfig>,
    ) -> Option<UserRef> {
        let at = format!("{key}.{name}");
        let user = value
            .parse::<UserRef>()
            .map_err(|e| self.issue_in(file, &at, e))
            .ok()?;
        let server = self.server_at(file, &at, &user.server, servers)?;
        if server.home.is_none() {
            let why = format!(
                "server {} says nowhere where a user's calendars are: give it `home` (\"/{{user}}/\") or `principal`",
                user.server
            );
            self.issue_in(file, &at, why);
            return None;
        }
        Some(user)
    }

    /// A calendar both named by a pair and inside a mailbox's home would be synced twice, and
    /// `--pair ID` must name one thing: each is an issue naming both.
    pub(super) fn overlaps(
        &mut self,
        pairs: &[Pair],
        mailboxes: &[Mailbox],
        servers: &BTreeMap<String, ServerConfig>,
    ) {
        let mut homes: HashMap<&str, Vec<(String, &PairId)>> = HashMap::new();
        for m in mailboxes {
            for user in [&m.source, &m.target] {
                let home = servers.get(&user.server).and_then(|s| s.home.as_ref());
                if let Some(Home::Path(path)) = home.map(|h| h.of(&user.user)) {
                    homes.entry(&user.server).or_default().push((path, &m.id));
                }
            }
        }
        for p in pairs {
            if mailboxes.iter().any(|m| m.id == p.id) {
                let why = format!("{} is the id of a pair and of a mailbox", p.id);
                self.issue("pairs", why);
            }
            for cal in [&p.source, &p.target] {
                let inside = homes.get(cal.server.as_str()).into_iter().flatten();
                for (home, mailbox) in inside.filter(|(h, _)| cal.path.as_str().starts_with(h)) {
                    let why = format!(
                        "pair {} names {cal}, a calendar in mailbox {mailbox}'s home {home}: name it in one of them",
                        p.id
                    );
                    self.issue("pairs", why);
                }
            }
        }
    }
}
