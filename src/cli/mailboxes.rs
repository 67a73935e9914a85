//! Mailboxes on the command line: `tandem discover`, and the pairs a `--pair` names, where a
//! mailbox's id means all its calendars (found first) and `MAILBOX/SEGMENT` one of them.

use crate::config::Config;
use crate::domain::mailbox::Mailbox;
use crate::domain::pair::Pair;
use crate::engine::{Engine, MailboxReport};

use super::exit::{EXIT_OK, EXIT_PARTIAL, Failure, open_state, usage};

/// What a command works on: pairs, and the discoveries made to find them.
pub(super) struct Chosen {
    pub(super) pairs: Vec<Pair>,
    pub(super) discovered: Vec<MailboxReport>,
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
    let mut mailboxes: Vec<&Mailbox> = Vec::new();
    let mut pairs = Vec::new();
    let mut calendars = Vec::new();
    for id in ids {
        if let Some(p) = config.pair(id) {
            pairs.push(p.clone());
        } else if let Some(m) = config.mailbox(id) {
            mailboxes.push(m);
        } else if let Some(m) = id.split_once('/').and_then(|(m, _)| config.mailbox(m)) {
            calendars.push((m, id.as_str()));
        } else {
            return Err(usage(format!(
                "{}: pairs: no pair with id {id:?}, and no mailbox",
                config.file.display()
            )));
        }
    }
    if ids.is_empty() {
        pairs = config.pairs.clone();
        mailboxes = config.mailboxes.iter().collect();
    }
    let discovered = engine
        .discover_all(&mailboxes, &config.pairs, dry_run)
        .await?;
    let found: Vec<Mailbox> = (mailboxes.iter().copied())
        .chain(calendars.iter().map(|(m, _)| *m))
        .cloned()
        .collect();
    for p in engine.mailbox_pairs(&found).await? {
        let whole = mailboxes
            .iter()
            .any(|m| Some(m.id.as_str()) == p.id.mailbox());
        if whole || calendars.iter().any(|(_, id)| *id == p.id.as_str()) {
            pairs.push(p);
        }
    }
    for (_, id) in &calendars {
        if !pairs.iter().any(|p| p.id.as_str() == *id) {
            return Err(usage(format!(
                "{id}: no such calendar of its mailbox (`tandem discover` lists them)"
            )));
        }
    }
    Ok(Chosen { pairs, discovered })
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
