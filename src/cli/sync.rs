//! `tandem sync`, `resync` and `dedupe`: passes over chosen pairs, run at once, with the summary
//! and the exit code they earn.

use std::sync::Arc;

use crate::config::Config;
use crate::engine::report::Summary;
use crate::engine::{Engine, MailboxReport, PassOptions};

use super::exit::{EXIT_OK, EXIT_PARTIAL, Failure, open_state};
use super::mailboxes::{chosen, existing, render};

pub(super) async fn sync(
    config: &Config,
    ids: &[String],
    opts: PassOptions,
    json: bool,
) -> Result<u8, Failure> {
    let state = open_state(config).await?;
    // A bar per pair on a terminal; log lines every few seconds otherwise (or with --json, whose
    // stdout is for scripts).
    let progress: Arc<dyn crate::engine::progress::Progress> =
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !json {
            Arc::new(crate::engine::progress::Bars::new())
        } else {
            Arc::new(crate::engine::progress::Lines::new(
                std::time::Duration::from_secs(5),
            ))
        };
    // The runs of its quiet passes are written together at the end.
    let engine = Arc::new(
        Engine::new(config, state.clone())
            .with_progress(progress)
            .batching_runs(),
    );
    let chosen = chosen(config, &engine, ids, opts.dry_run).await?;
    if !json {
        print!("{}", render(&chosen.discovered));
    }
    let parallel = engine.passes_at_once();
    let reports = crate::engine::batch::run_pairs(&engine, chosen.pairs, opts, parallel).await?;
    engine.flush_runs().await?;
    if !opts.dry_run {
        engine.flush_counts().await?;
        // Every pair's lag, not only the chosen ones': a migration run from cron has its lag
        // chart too.
        let all = existing(config, &state, &[]).await?;
        let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
        state
            .sample_lag(crate::domain::time::now_ms(), &ids)
            .await?;
    }
    state.close().await;
    let mut summary = Summary::new(reports);
    summary.servers = engine.server_counts();
    summary.ok &= chosen.discovered.iter().all(MailboxReport::ok);
    summary.mailboxes = chosen.discovered;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serialises")
        );
    } else {
        if opts.dry_run {
            for p in &summary.pairs {
                for a in &p.plan {
                    println!(
                        "{}: {} {}{}{}",
                        p.pair,
                        a.action,
                        a.source_href,
                        a.target_href
                            .as_ref()
                            .map_or(String::new(), |t| format!(" -> {t}")),
                        a.detail
                            .as_ref()
                            .map_or(String::new(), |d| format!(" ({d})"))
                    );
                }
            }
            println!("dry run: nothing was written");
        }
        print!("{}", summary.render_text());
    }
    Ok(if summary.ok { EXIT_OK } else { EXIT_PARTIAL })
}

/// `tandem dedupe`: the pair's copies on `side` cleaned; a mailbox's id cleans each of its
/// calendars (with `--json`, an array of reports).
pub(super) async fn dedupe(
    config: &std::path::Path,
    id: &str,
    side: crate::domain::mapping::Side,
    dry_run: bool,
    json: bool,
) -> Result<u8, Failure> {
    let config = Config::load(config)?;
    let state = open_state(&config).await?;
    let pairs = existing(&config, &state, &[id.to_string()]).await?;
    let engine = Engine::new(&config, state.clone());
    let mut reports = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        reports.push(engine.dedupe(pair, side, dry_run).await?);
    }
    state.close().await;
    let ok = reports.iter().all(|r| r.ok());
    if json {
        let out = match (config.pair(id), reports.as_slice()) {
            (Some(_), [one]) => serde_json::to_value(one),
            _ => serde_json::to_value(&reports),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out.expect("report serialises")).expect("json")
        );
    } else {
        reports.iter().for_each(|r| print_dedupe(r, dry_run));
    }
    Ok(if ok { EXIT_OK } else { EXIT_PARTIAL })
}

fn print_dedupe(report: &crate::engine::DedupeReport, dry_run: bool) {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for g in &report.groups {
        println!(
            "pair {}: {}: kept {}; {verb} {}",
            report.pair,
            g.identity,
            g.kept.join(", "),
            g.deleted.join(", ")
        );
        for f in &g.failed {
            println!("pair {}: {}: delete failed: {f}", report.pair, g.identity);
        }
    }
    for s in &report.skipped {
        println!("pair {}: skipped {s}", report.pair);
    }
    if let Some(e) = &report.error {
        println!("pair {}: {e}", report.pair);
    }
    let copies: usize = report.groups.iter().map(|g| g.deleted.len()).sum();
    println!(
        "pair {}: {} duplicate group(s), {copies} copy(ies) {verb}{}",
        report.pair,
        report.groups.len(),
        if dry_run { " (dry run)" } else { "" }
    );
}
