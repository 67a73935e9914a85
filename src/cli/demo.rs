//! `tandem demo`: builds the two orgs ([`crate::cli::demo_orgs`]), syncs them twice and says what happened.

use std::path::Path;
use std::sync::Arc;

use super::demo_orgs::{REPAIR_COPY, build};
use super::exit::{EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Failure};
use crate::config::Config;
use crate::engine::batch::run_pairs;
use crate::engine::report::Summary;
use crate::engine::{Engine, PassOptions};

pub(super) async fn run(dir: &Path) -> Result<u8, Failure> {
    let usage = |m: String| Failure {
        code: EXIT_USAGE,
        message: m,
    };
    let stats = build(dir).map_err(usage)?;
    println!("tandem demo in {}", dir.display());
    println!(
        "  old org (old.example): {} users, {} items in {}/old-org/<user>/",
        stats.users,
        stats.items,
        dir.display()
    );
    println!(
        "  new org (new.example): empty calendars in {}/new-org/<user>/, except a stale copy of one of\n  \
         bob's meetings that Exchange's repair assistant made ({REPAIR_COPY}, UID in GOID form)",
        dir.display()
    );
    let config = Config::load(&dir.join("tandem.toml"))?;
    let state = crate::engine::connect_state(&config.state).await?;
    let engine = Arc::new(Engine::new(&config, state.clone()));
    let parallel = engine.passes_at_once();

    println!(
        "\nfirst pass: copying every calendar into the new org, addresses rewritten to @new.example;\n\
         bob's repair-assistant copy is adopted and brought up to date, not duplicated"
    );
    // One pass over every pair, printed.
    let pass = async || -> Result<Summary, Failure> {
        let reports = run_pairs(
            &engine,
            config.pairs.clone(),
            PassOptions::default(),
            parallel,
        )
        .await?;
        let summary = Summary::new(reports);
        print!("{}", summary.render_text());
        Ok(summary)
    };
    let first = pass().await?;

    println!("\nsecond pass: nothing changed, so nothing to do");
    let second = pass().await?;
    state.close().await;

    let sample = dir.join("new-org/bob/demo-standup-alice@old.example.ics");
    println!("\nlook around:");
    println!(
        "  a meeting alice organises, in bob's new calendar: {}",
        sample.display()
    );
    println!(
        "  the adopted repair-assistant copy:              {}",
        dir.join("new-org/bob").join(REPAIR_COPY).display()
    );
    println!("  the config: {}", dir.join("tandem.toml").display());
    println!(
        "  status:     cargo run --release -- -c {} status",
        dir.join("tandem.toml").display()
    );
    println!(
        "  the service and its status page (http://127.0.0.1:8686/): cargo run --release -- -c {} run",
        dir.join("tandem.toml").display()
    );
    let ok = first.ok
        && second.ok
        && first.adopted == 1
        && second.created + second.updated + second.deleted == 0;
    Ok(if ok { EXIT_OK } else { EXIT_PARTIAL })
}
