//! `tandem cutover`: a mailbox was switched to the new org, so its pair's authority (the calendar
//! that is the truth) becomes the target; `--undo` when a switch is rolled back.

use std::path::Path;

use super::exit::{EXIT_OK, EXIT_PARTIAL, Failure, open_state, usage};
use super::mailboxes::{recorded, resolve};
use crate::config::Config;
use crate::domain::pair::Pair;
use crate::engine::Engine;

/// The pairs named by `--pair` and by the first column of `--csv` (a header `id` is skipped);
/// a mailbox's id names all its calendars, so its cutover flips the whole mailbox.
fn named_pairs(
    config: &Config,
    recorded: &[Pair],
    ids: &[String],
    csv: Option<&Path>,
) -> Result<Vec<Pair>, Failure> {
    let mut names: Vec<(String, String)> = ids
        .iter()
        .map(|id| ("--pair".to_string(), id.clone()))
        .collect();
    if let Some(file) = csv {
        let text = std::fs::read_to_string(file)
            .map_err(|e| usage(format!("--csv {}: cannot read: {e}", file.display())))?;
        for (i, line) in text.lines().enumerate() {
            let id = line.split(',').next().unwrap_or("").trim();
            if id.is_empty() || id.starts_with('#') || (i == 0 && id == "id") {
                continue;
            }
            names.push((format!("{} line {}", file.display(), i + 1), id.to_string()));
        }
    }
    if names.is_empty() {
        return Err(usage(
            "cutover: name the pairs or mailboxes with --pair ID or --csv FILE",
        ));
    }
    let mut unknown = Vec::new();
    let mut pairs: Vec<Pair> = Vec::new();
    for (place, id) in names {
        match resolve(config, recorded, &[id]) {
            Ok(found) => {
                let new: Vec<Pair> = (found.into_iter())
                    .filter(|p| !pairs.iter().any(|q| q.id == p.id))
                    .collect();
                pairs.extend(new);
            }
            Err(e) => unknown.push(format!("{place}: {}", e.message)),
        }
    }
    if !unknown.is_empty() {
        return Err(usage(unknown.join("\n")));
    }
    Ok(pairs)
}

pub(super) async fn cutover(
    file: &Path,
    ids: &[String],
    csv: Option<&Path>,
    undo: bool,
) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let recorded = recorded(&state, &config.mailboxes).await?;
    let pairs = named_pairs(&config, &recorded, ids, csv)?;
    // A cut-over pair writes back to the old org: the rewrite needs a way back.
    if !undo && let Err(e) = config.rewrite.inverse() {
        return Err(usage(format!("{}: rewrite: {e}", config.file.display())));
    }
    let engine = Engine::new(&config, state.clone());
    let mut busy = 0;
    for pair in &pairs {
        match engine.cutover(pair, undo).await? {
            Err(locked) => {
                busy += 1;
                println!(
                    "pair {}: calendar {}: {locked}; not changed, try again",
                    pair.id, locked.calendar
                );
            }
            Ok(changed) => {
                let (truth, mirror) = match undo {
                    false => (&pair.target, &pair.source),
                    true => (&pair.source, &pair.target),
                };
                let already = if changed { "" } else { " (already so)" };
                let how = match pair.direction {
                    crate::domain::direction::Direction::OneWay => {
                        format!("syncs {truth} -> {mirror}")
                    }
                    crate::domain::direction::Direction::TwoWay => {
                        format!("syncs both ways; {truth} wins conflicts under \"authority\"")
                    }
                };
                let verb = if undo { "cutover undone" } else { "cut over" };
                println!(
                    "pair {}: {verb}{already}: {truth} is the authority; {how}",
                    pair.id
                );
            }
        }
    }
    state.close().await;
    Ok(if busy == 0 { EXIT_OK } else { EXIT_PARTIAL })
}
