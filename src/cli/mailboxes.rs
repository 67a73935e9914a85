//! Mailboxes on the command line: `tandem discover`, and the pairs a `--pair` names, where a
//! mailbox's id means all its calendars (found first) and `MAILBOX/SEGMENT` one of them.

use crate::config::Config;
use crate::domain::mailbox::{Mailbox, recorded_pairs};
use crate::domain::pair::Pair;
use crate::engine::{Engine, MailboxReport};
use crate::state::{State, StateError};

use super::exit::{EXIT_OK, EXIT_PARTIAL, Failure, open_state, usage};

/// What a command works on: pairs, and the discoveries made to find them.
pub(super) struct Chosen {
    pub(super) pairs: Vec<Pair>,
    pub(super) discovered: Vec<MailboxReport>,
}

/// The pairs of `mailboxes`' calendars that sync, as discovery last recorded them.
pub(super) async fn recorded(
    state: &State,
    mailboxes: &[Mailbox],
) -> Result<Vec<Pair>, StateError> {
    Ok(recorded_pairs(
        mailboxes,
        state.all_mailbox_calendars().await?,
    ))
}

/// What one `--pair` names.
enum Named<'c> {
    Pair(&'c Pair),
    /// All of a mailbox's calendars.
    Mailbox(&'c Mailbox),
    /// One calendar of a mailbox: `MAILBOX/SEGMENT`.
    Calendar(&'c str),
}

/// What `id` names in `config`, or a usage failure.
fn name<'c>(config: &'c Config, id: &'c str) -> Result<Named<'c>, Failure> {
    if let Some(p) = config.pair(id) {
        return Ok(Named::Pair(p));
    }
    if let Some(m) = config.mailbox(id) {
        return Ok(Named::Mailbox(m));
    }
    match id.split_once('/').and_then(|(m, _)| config.mailbox(m)) {
        Some(_) => Ok(Named::Calendar(id)),
        None => Err(usage(format!(
            "{}: pairs: no pair with id {id:?}, and no mailbox",
            config.file.display()
        ))),
    }
}

/// The pairs `named` stand for, a mailbox's from its `recorded` calendars (none yet is
/// `Ok`); a mailbox's calendar not recorded is a usage failure.
fn pairs_of(named: &[Named], recorded: &[Pair]) -> Result<Vec<Pair>, Failure> {
    let mut pairs: Vec<Pair> = Vec::new();
    for n in named {
        let found: Vec<&Pair> = match n {
            Named::Pair(p) => vec![*p],
            Named::Mailbox(m) => (recorded.iter())
                .filter(|p| p.id.mailbox() == Some(m.id.as_str()))
                .collect(),
            Named::Calendar(id) => recorded.iter().filter(|p| p.id.as_str() == *id).collect(),
        };
        if let (Named::Calendar(id), []) = (n, found.as_slice()) {
            return Err(usage(format!(
                "{id}: no such calendar of its mailbox (`tandem discover` lists them)"
            )));
        }
        for p in found {
            if !pairs.iter().any(|q| q.id == p.id) {
                pairs.push(p.clone());
            }
        }
    }
    Ok(pairs)
}

/// The pairs `ids` name, all of them by default: a configured pair; a mailbox (its calendars,
/// discovered first: made and recorded unless `dry_run`); a mailbox's calendar
/// (`MAILBOX/SEGMENT`, as recorded by an earlier discovery).
pub(super) async fn chosen(
    config: &Config,
    engine: &Engine,
    ids: &[String],
    dry_run: bool,
) -> Result<Chosen, Failure> {
    let mut named: Vec<Named> = (ids.iter())
        .map(|id| name(config, id))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        named = (config.pairs.iter().map(Named::Pair))
            .chain(config.mailboxes.iter().map(Named::Mailbox))
            .collect();
    }
    let whole: Vec<&Mailbox> = (named.iter())
        .filter_map(|n| match n {
            Named::Mailbox(m) => Some(*m),
            _ => None,
        })
        .collect();
    let discovered = engine.discover_all(&whole, &config.pairs, dry_run).await?;
    let recorded = recorded(&engine.state, &config.mailboxes).await?;
    let pairs = pairs_of(&named, &recorded)?;
    Ok(Chosen { pairs, discovered })
}

/// The pairs `ids` name as discovery last left them, all of them by default, for commands
/// that work on calendars already paired (repair, dedupe, cutover, disable, enable,
/// quarantine): a mailbox means every calendar recorded for it.
pub(super) async fn existing(
    config: &Config,
    state: &State,
    ids: &[String],
) -> Result<Vec<Pair>, Failure> {
    let recorded = recorded(state, &config.mailboxes).await?;
    if ids.is_empty() {
        return Ok(config.pairs.iter().cloned().chain(recorded).collect());
    }
    resolve(config, &recorded, ids)
}

/// The pairs `ids` name, a mailbox's from its `recorded` calendars; a mailbox with none yet
/// is a usage failure.
pub(super) fn resolve(
    config: &Config,
    recorded: &[Pair],
    ids: &[String],
) -> Result<Vec<Pair>, Failure> {
    let named: Vec<Named> = (ids.iter())
        .map(|id| name(config, id))
        .collect::<Result<_, _>>()?;
    let pairs = pairs_of(&named, recorded)?;
    for n in &named {
        if let Named::Mailbox(m) = n
            && !pairs.iter().any(|p| p.id.mailbox() == Some(m.id.as_str()))
        {
            return Err(usage(format!(
                "mailbox {}: no calendars paired yet (`tandem sync --pair {}` finds and pairs them)",
                m.id, m.id
            )));
        }
    }
    Ok(pairs)
}

/// `tandem discover`: what `sync` would do with each mailbox's calendars, writing nothing.
pub(super) async fn discover(
    config: &Config,
    mailbox: Option<&str>,
    json: bool,
) -> Result<u8, Failure> {
    let mailboxes: Vec<&Mailbox> = match mailbox {
        Some(id) => vec![config.mailbox(id).ok_or_else(|| {
            usage(format!(
                "{}: no mailbox with id {id:?}",
                config.file.display()
            ))
        })?],
        None => config.mailboxes.iter().collect(),
    };
    let state = open_state(config).await?;
    let engine = Engine::new(config, state.clone());
    let reports = engine.discover_all(&mailboxes, &config.pairs, true).await?;
    state.close().await;
    if json {
        let out = serde_json::json!({ "mailboxes": reports });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("reports serialise")
        );
    } else {
        print!("{}", render(&reports));
    }
    let ok = reports.iter().all(MailboxReport::ok);
    Ok(if ok { EXIT_OK } else { EXIT_PARTIAL })
}

/// Discoveries as lines: each calendar, both its paths, what is done with it and why.
pub(super) fn render(reports: &[MailboxReport]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for r in reports {
        if let Some(e) = &r.error {
            let _ = writeln!(out, "mailbox {}: FAILED: {e}", r.id);
            continue;
        }
        let _ = writeln!(out, "mailbox {}: {} calendar(s)", r.id, r.calendars.len());
        for c in &r.calendars {
            let path = |p: &Option<String>| p.clone().unwrap_or_else(|| "-".into());
            let name = c
                .displayname
                .as_ref()
                .map_or(String::new(), |n| format!(" {n:?}"));
            let why = c
                .reason
                .as_ref()
                .map_or(String::new(), |w| format!(": {w}"));
            let _ = writeln!(
                out,
                "  {}{name}: {} {} -> {}{why}",
                c.id,
                c.action,
                path(&c.source),
                path(&c.target)
            );
        }
    }
    out
}
