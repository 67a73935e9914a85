//! The `tandem` command line (DESIGN.md "Interface").
//!
//! Exit codes: 0 all requested pairs synced; 1 fatal (state store unusable, ...); 2 usage or
//! config error; 3 finished, but some pairs or items failed. Every subcommand's handler lives
//! here or in a file beside this one ([`demo`], [`service`]); the library below returns typed
//! errors, and only this layer turns them into exit codes.

mod connect;
mod cutover;
mod demo;
mod demo_orgs;
pub mod logging;
mod operate;
mod service;

use crate::cli::logging::LogFormat;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, PasswordSource, ServerKind};
use crate::engine::report::Summary;
use crate::engine::{Engine, PassOptions};
use crate::state::State;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FATAL: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PARTIAL: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    version,
    about = "Keeps mailbox pairs' calendars in step during a mail migration"
)]
struct Cli {
    /// Config file.
    #[arg(
        short,
        long,
        global = true,
        env = "TANDEM_CONFIG",
        default_value = "tandem.toml"
    )]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build two local orgs, sync them, show what happened (no config needed).
    Demo {
        /// Folder to build the demo in (recreated if it holds an earlier demo).
        #[arg(long, default_value = "tandem-demo")]
        dir: PathBuf,
    },
    /// Validate the config and print what it says.
    Check {
        /// Also reach every pair's calendars and say what each server does differently.
        #[arg(long)]
        connect: bool,
    },
    /// One incremental pass over the pairs (all by default), then exit.
    Sync {
        /// Only this pair (repeatable).
        #[arg(long = "pair", value_name = "ID")]
        pairs: Vec<String>,
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object with a per-pair summary.
        #[arg(long)]
        json: bool,
        /// Delete target copies even if a source calendar lists nothing at all.
        #[arg(long)]
        force_delete: bool,
    },
    /// Full resync of one pair: ignore watermarks and etags, compare everything, converge.
    Resync {
        /// The pair to resync.
        #[arg(long = "pair", value_name = "ID")]
        pair: String,
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Delete target copies even if the source calendar lists nothing at all.
        #[arg(long)]
        force_delete: bool,
    },
    /// Delete duplicate copies of a meeting in one of a pair's calendars (same identity key).
    Dedupe {
        /// The pair whose calendar to clean.
        #[arg(long = "pair", value_name = "ID")]
        pair: String,
        /// Which calendar: the target (default) or the source.
        #[arg(long, value_enum, default_value_t = WhichSide::Target)]
        side: WhichSide,
        /// Report the groups, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Per pair: state, last pass, outcome, items, quarantined items, next run, errors.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The sync service: agents pinned to their processors sync every pair, forever; stops on
    /// SIGINT/SIGTERM.
    Run,
    /// Which agent runs on which processor, with how many pairs and items.
    Agents {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every `tandem run` node sharing the state: alive, stopped or dead, its pairs and the age
    /// of its heartbeat.
    Nodes {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Items skipped after failing permanently three times.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Compare each pair's source and target in full (trusting no recorded state), fix what
    /// differs under the target calendar's lease, and rebuild the pair's mappings.
    Repair {
        /// Only this pair (repeatable); all by default.
        #[arg(long = "pair", value_name = "ID")]
        pairs: Vec<String>,
        /// Report the findings, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Calendar leases: list them, or take and give one back by hand (an operator pausing sync
    /// on a calendar while another tool repairs it).
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// Stop syncing a pair until `enable` (the service skips it; `sync` still runs it on demand).
    Disable {
        /// The pair to stop.
        #[arg(long = "pair", value_name = "ID")]
        pair: String,
        /// Shown in `status`.
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
    },
    /// Sync a disabled, paused or backing-off pair again from its next turn.
    Enable {
        /// The pair to sync again.
        #[arg(long = "pair", value_name = "ID")]
        pair: String,
    },
    /// The mailbox was switched to the new org: its target calendar becomes the truth (one-way
    /// pairs then sync target -> source; two-way pairs let it win conflicts).
    Cutover {
        /// This pair (repeatable).
        #[arg(long = "pair", value_name = "ID")]
        pairs: Vec<String>,
        /// A wave of pairs: one pair id per line (first column; a header `id` is skipped).
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// The switch was rolled back: the source is the truth again.
        #[arg(long)]
        undo: bool,
    },
}

/// A calendar of a pair, as the command line names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum WhichSide {
    Source,
    Target,
}

impl WhichSide {
    fn side(self) -> crate::domain::mapping::Side {
        match self {
            WhichSide::Source => crate::domain::mapping::Side::A,
            WhichSide::Target => crate::domain::mapping::Side::B,
        }
    }
}

#[derive(Subcommand, Debug)]
enum LockAction {
    /// Every calendar lease: holder, kind, token, expiry.
    List {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take a calendar's lease (exit 3 with the current holder if someone else has it).
    Acquire {
        /// SERVER:PATH, as in the pairs.
        #[arg(long)]
        calendar: String,
        /// Who holds the lease (a name the other tools recognise).
        #[arg(long)]
        holder: String,
        /// How long before the lease lapses by itself.
        #[arg(long, default_value = "10m")]
        ttl: String,
    },
    /// Give a calendar's lease back.
    Release {
        /// SERVER:PATH, as in the pairs.
        #[arg(long)]
        calendar: String,
        /// Who holds the lease (a name the other tools recognise).
        #[arg(long)]
        holder: String,
    },
}

#[derive(Subcommand, Debug)]
enum QuarantineAction {
    /// Failed and quarantined items with pair, href, identity and reason.
    List {
        /// Only this pair; all by default.
        #[arg(long = "pair", value_name = "ID")]
        pair: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Try quarantined items again on their pair's next pass.
    Retry {
        /// Only this pair; all by default.
        #[arg(long = "pair", value_name = "ID")]
        pair: Option<String>,
    },
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: e.to_string(),
        }
    }
}

impl From<crate::state::StateError> for Failure {
    fn from(e: crate::state::StateError) -> Self {
        Failure {
            code: EXIT_FATAL,
            message: e.to_string(),
        }
    }
}

/// Opens the state of `config`. Refuses (exit 2) when a cut-over pair would write back to the
/// old org and the rewrite has no way back (the config changed after the cutover).
pub(crate) async fn open_state(config: &Config) -> Result<State, Failure> {
    let state = crate::engine::connect_state(&config.state).await?;
    if let Err(e) = config.rewrite.inverse() {
        let cut = state.cutovers().await?;
        let mut ids: Vec<&str> = config
            .pairs
            .iter()
            .map(|p| p.id.as_str())
            .filter(|id| cut.contains_key(*id))
            .collect();
        if !ids.is_empty() {
            state.close().await;
            ids.truncate(3);
            return Err(usage(format!(
                "{}: rewrite: {e} (needed by the cut-over pairs {}{})",
                config.file.display(),
                ids.join(", "),
                if cut.len() > 3 { ", ..." } else { "" }
            )));
        }
    }
    Ok(state)
}

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    crate::cli::logging::init(cli.log_format, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Demo { dir } => demo::run(&dir).await,
        Command::Check { connect } => {
            let code = check(&cli.config)?;
            match connect {
                true => connect::check(&Config::load(&cli.config)?).await,
                false => Ok(code),
            }
        }
        Command::Sync {
            pairs,
            dry_run,
            json,
            force_delete,
        } => {
            let config = Config::load(&cli.config)?;
            let opts = PassOptions {
                dry_run,
                full: false,
                force_delete,
            };
            sync(&config, &pairs, opts, json).await
        }
        Command::Resync {
            pair,
            dry_run,
            json,
            force_delete,
        } => {
            let config = Config::load(&cli.config)?;
            let opts = PassOptions {
                dry_run,
                full: true,
                force_delete,
            };
            sync(&config, &[pair], opts, json).await
        }
        Command::Status { json } => status(&cli.config, json).await,
        Command::Run => service::serve(&cli.config).await,
        Command::Agents { json } => operate::agents(&cli.config, json).await,
        Command::Nodes { json } => operate::nodes(&cli.config, json).await,
        Command::Quarantine { action } => match action {
            QuarantineAction::List { pair, json } => {
                operate::quarantine_list(&cli.config, pair.as_deref(), json).await
            }
            QuarantineAction::Retry { pair } => {
                operate::quarantine_retry(&cli.config, pair.as_deref()).await
            }
        },
        Command::Repair {
            pairs,
            dry_run,
            json,
        } => operate::repair(&cli.config, &pairs, dry_run, json).await,
        Command::Lock { action } => match action {
            LockAction::List { json } => operate::lock_list(&cli.config, json).await,
            LockAction::Acquire {
                calendar,
                holder,
                ttl,
            } => operate::lock_acquire(&cli.config, &calendar, &holder, &ttl).await,
            LockAction::Release { calendar, holder } => {
                operate::lock_release(&cli.config, &calendar, &holder).await
            }
        },
        Command::Disable { pair, reason } => {
            operate::set_enabled(&cli.config, &pair, Some(reason)).await
        }
        Command::Enable { pair } => operate::set_enabled(&cli.config, &pair, None).await,
        Command::Cutover { pairs, csv, undo } => {
            cutover::cutover(&cli.config, &pairs, csv.as_deref(), undo).await
        }
        Command::Dedupe {
            pair,
            side,
            dry_run,
            json,
        } => dedupe(&cli.config, &pair, side.side(), dry_run, json).await,
    }
}

fn check(file: &std::path::Path) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    // What only the service reads is checked here too.
    config.http.token().map_err(|reason| {
        usage(format!(
            "{}: http.token_env: {reason}",
            config.file.display()
        ))
    })?;
    if let Some(files) = &config.http.tls {
        crate::service::tls::acceptor(files)
            .map_err(|reason| usage(format!("{}: {reason}", config.file.display())))?;
    }
    print!("{}", describe_config(&config));
    if config.pairs.is_empty() {
        println!(
            "note: no pairs: nothing will be synced (add [[pairs]] blocks or pairs_csv; see docs/configuration.md)"
        );
    }
    Ok(EXIT_OK)
}

/// The `push` line of `check`.
fn describe_push(c: &Config) -> String {
    let Some(base) = c.http.push_base() else {
        return "off (no http.public_url): every pair is polled".to_string();
    };
    format!(
        "servers push to {base}/push/…; push-driven pairs polled every {}; subscriptions for {}{}",
        humantime::format_duration(c.sync.safety_interval),
        humantime::format_duration(c.sync.push_lifetime),
        match c.http.tls.is_some() {
            true => "; https",
            false => "; the listener serves plain http (put TLS in front)",
        }
    )
}

/// What `check` prints: everything the config says, secrets named by source only.
pub fn describe_config(c: &Config) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "config {}: OK", c.file.display());
    let _ = writeln!(o, "state    {}", c.state.describe());
    let window = |d: Option<std::time::Duration>| {
        d.map_or("unlimited".to_string(), |d| {
            humantime::format_duration(d).to_string()
        })
    };
    let _ = writeln!(
        o,
        "sync     interval {}, pause {}, backoff up to {}, window past {}, future {}, extras {:?}",
        humantime::format_duration(c.sync.interval),
        humantime::format_duration(c.sync.pause),
        humantime::format_duration(c.sync.backoff_max),
        window(c.sync.window_past),
        window(c.sync.window_future),
        c.sync.extras
    );
    let _ = writeln!(
        o,
        "http     {}{}",
        c.http.listen,
        c.http.token_env.as_ref().map_or_else(
            || "; resync over HTTP off (no token_env)".to_string(),
            |v| format!("; resync token from ${v}")
        )
    );
    let _ = writeln!(o, "push     {}", describe_push(c));
    let _ = writeln!(
        o,
        "alerts   lag over {}, failed requests over {}%",
        humantime::format_duration(c.alerts.lag),
        c.alerts.failed_requests_percent
    );
    let _ = writeln!(
        o,
        "agents   {} on {} online processors ({})",
        c.agents.count,
        crate::config::online_processors(),
        if c.agents.explicit {
            "explicit processor_indexes"
        } else {
            "default: agent i -> processor i mod N"
        }
    );
    for (i, p) in c.agents.processor_indexes.iter().enumerate() {
        let _ = writeln!(o, "  agent {i} -> processor {p}");
    }
    let _ = writeln!(o, "  {} passes at once per agent", c.agents.passes);
    if let Some(w) = c
        .agents
        .placement_warning(crate::config::online_processors())
    {
        let _ = writeln!(o, "  warning: {w}");
    }
    let _ = writeln!(o, "servers  {}", c.servers.len());
    for s in c.servers.values() {
        let limits = match (s.requests_per_second, s.max_concurrency) {
            (None, None) => String::new(),
            (r, m) => format!(
                " ({}{})",
                r.map_or(String::new(), |r| format!("{r} req/s")),
                m.map_or(String::new(), |m| format!(", at most {m} at once"))
            ),
        };
        match &s.kind {
            ServerKind::Vdir { path } => {
                let _ = writeln!(o, "  {:<12} vdir   {}{limits}", s.name, path.display());
            }
            ServerKind::Caldav {
                url,
                username,
                password,
            } => {
                let auth = match (username, password) {
                    (Some(u), Some(PasswordSource::Env(v))) => {
                        format!(" as {u}, password from ${v}")
                    }
                    (Some(u), Some(PasswordSource::File(f))) => {
                        format!(" as {u}, password from {}", f.display())
                    }
                    (Some(u), None) => format!(" as {u}"),
                    (None, _) => " without credentials".to_string(),
                };
                let _ = writeln!(o, "  {:<12} caldav {url}{auth}{limits}", s.name);
            }
        }
    }
    let r = &c.rewrite;
    let _ = writeln!(
        o,
        "rewrite  {} domain(s), {} address(es){}",
        r.domains.len(),
        r.addresses.len(),
        r.addresses_file
            .as_ref()
            .map_or(String::new(), |f| format!(" from {}", f.display()))
    );
    for (from, to) in &r.domains {
        let _ = writeln!(o, "  @{from} -> @{to}");
    }
    for (from, to) in &r.reverse_domains {
        let _ = writeln!(o, "  back: @{from} -> @{to}");
    }
    if !r.reverse_addresses.is_empty() {
        let _ = writeln!(o, "  back: {} address(es)", r.reverse_addresses.len());
    }
    let _ = writeln!(o, "pairs    {}", c.pairs.len());
    let mailbox: std::collections::HashMap<&str, &str> = c
        .addresses
        .iter()
        .map(|(addr, id)| (id.as_str(), addr.as_str()))
        .collect();
    for p in &c.pairs {
        let (arrow, way) = match p.direction {
            crate::domain::direction::Direction::OneWay => ("->", String::new()),
            crate::domain::direction::Direction::TwoWay => (
                "<->",
                format!("  (two-way, conflicts: {})", p.conflict.as_str()),
            ),
        };
        let _ = writeln!(
            o,
            "  {:<20} {} {arrow} {}{way}{}",
            p.id,
            p.source,
            p.target,
            mailbox
                .get(p.id.as_str())
                .map_or(String::new(), |a| format!("  (mailbox {a})"))
        );
    }
    o
}

async fn sync(
    config: &Config,
    ids: &[String],
    opts: PassOptions,
    json: bool,
) -> Result<u8, Failure> {
    let mut pairs = Vec::new();
    for id in ids {
        pairs.push(
            config
                .pair(id)
                .ok_or_else(|| {
                    usage(format!(
                        "{}: pairs: no pair with id {id:?}",
                        config.file.display()
                    ))
                })?
                .clone(),
        );
    }
    if pairs.is_empty() {
        pairs = config.pairs.clone();
    }
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
    let parallel = engine.passes_at_once();
    let reports = crate::engine::batch::run_pairs(&engine, pairs, opts, parallel).await?;
    engine.flush_runs().await?;
    if !opts.dry_run {
        engine.flush_server_counts().await?;
    }
    state.close().await;
    let mut summary = Summary::new(reports);
    summary.servers = engine.server_counts();
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

async fn dedupe(
    config: &std::path::Path,
    id: &str,
    side: crate::domain::mapping::Side,
    dry_run: bool,
    json: bool,
) -> Result<u8, Failure> {
    let config = Config::load(config)?;
    let pair = config
        .pair(id)
        .ok_or_else(|| {
            usage(format!(
                "{}: pairs: no pair with id {id:?}",
                config.file.display()
            ))
        })?
        .clone();
    let state = open_state(&config).await?;
    let engine = Engine::new(&config, state.clone());
    let report = engine.dedupe(&pair, side, dry_run).await?;
    state.close().await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
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
            "{} duplicate group(s), {copies} copy(ies) {verb}{}",
            report.groups.len(),
            if dry_run { " (dry run)" } else { "" }
        );
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_PARTIAL })
}

/// `->` source to target, `<-` cut over (target to source), `<->` two-way; `*`: cut over.
fn way_glyph(p: &crate::service::observe::PairView) -> &'static str {
    match (p.direction, p.cutover_at) {
        ("two-way", None) => "<->",
        ("two-way", Some(_)) => "<->*",
        (_, None) => "->",
        (_, Some(_)) => "<-*",
    }
}

/// A line per node sharing the state, under `status`.
fn print_nodes(nodes: &[crate::state::NodeRow]) {
    for n in nodes {
        println!(
            "node {}: {}, {} pair(s), heartbeat {:.1}s ago, listens on {}",
            n.id,
            n.status,
            n.pairs,
            n.heartbeat_age_ms as f64 / 1000.0,
            n.listen
        );
    }
}

async fn status(file: &std::path::Path, json: bool) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    let state = open_state(&config).await?;
    let snap = crate::service::observe::snapshot(
        &config,
        &state,
        &crate::service::observe::Live::default(),
    )
    .await?;
    state.close().await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snap).expect("status serialises")
        );
        return Ok(EXIT_OK);
    }
    let now = snap.generated_at;
    let when = |t: Option<i64>| {
        t.map_or("-".to_string(), |t| {
            let d = crate::service::observe::human_seconds((now - t).abs() as f64 / 1000.0);
            if t <= now {
                format!("{d} ago")
            } else {
                format!("in {d}")
            }
        })
    };
    let alerts = snap.pairs.iter().filter(|p| !p.alerts.is_empty()).count();
    let states: Vec<String> = ["active", "paused", "backoff", "disabled", "new"]
        .iter()
        .filter_map(|s| {
            snap.states
                .get(s)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {s}"))
        })
        .collect();
    println!(
        "{} pair(s): {}; {} over an alert; {} quarantined item(s)",
        snap.pairs.len(),
        if states.is_empty() {
            "none".to_string()
        } else {
            states.join(", ")
        },
        alerts,
        snap.quarantined
    );
    println!(
        "{:<20} {:<8} {:<8} {:>8} {:>7} {:>6} {:>4} {:>6} {:<14} {:<14} detail",
        "pair",
        "state",
        "way",
        "lag",
        "backlog",
        "items",
        "quar",
        "fail%",
        "last success",
        "next run"
    );
    for p in &snap.pairs {
        let lock = p.lock.as_ref().map(|l| {
            format!(
                "locked by {} ({}) until {}; ",
                l.holder,
                l.kind,
                crate::domain::time::utc(l.until)
            )
        });
        let detail = match (&p.reason, &p.last_run) {
            (Some(reason), _) => match p.until {
                Some(u) => format!("{reason} (until {})", crate::domain::time::utc(u)),
                None => reason.clone(),
            },
            (None, Some(run)) => format!(
                "{} {} {}: +{} ~{} -{} ={} !{}{}",
                run.kind,
                run.outcome.as_deref().unwrap_or("running"),
                when(Some(run.started_at)),
                run.created,
                run.updated,
                run.deleted,
                run.unchanged,
                run.failed,
                run.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" ({e})"))
            ),
            (None, None) => "never synced".to_string(),
        };
        let alerts = if p.alerts.is_empty() {
            String::new()
        } else {
            format!("ALERT {}; ", p.alerts.join(", "))
        };
        let way = way_glyph(p);
        let node = p
            .node
            .as_ref()
            .map_or(String::new(), |n| format!("on {n}; "));
        let node = match (p.push_driven, p.last_push_at) {
            (true, Some(t)) => format!("{node}push, last {}; ", when(Some(t))),
            (true, None) => format!("{node}push; "),
            _ => node,
        };
        println!(
            "{:<20} {:<8} {:<8} {:>8} {:>7} {:>6} {:>4} {:>6} {:<14} {:<14} {alerts}{node}{}{detail}",
            p.id,
            p.state,
            way,
            crate::service::observe::human_seconds(p.lag_seconds),
            p.backlog,
            p.items,
            p.quarantined,
            p.failed_requests_percent
                .map_or("-".to_string(), |f| format!("{f:.1}")),
            when(p.last_success_at),
            when(p.next_run),
            lock.unwrap_or_default(),
        );
    }
    print_nodes(&snap.nodes);
    for s in snap.servers.iter().filter(|s| s.requests > 0) {
        println!(
            "server {}: {} requests in the last hour, {} failed ({}), {} throttled, {:.2}/s now{}",
            s.name,
            s.requests_last_hour,
            s.failed_requests_last_hour,
            s.failed_requests_percent
                .map_or("-".to_string(), |f| format!("{f:.1}%")),
            s.throttled_last_hour,
            s.rate_per_second,
            if s.alerts.is_empty() {
                ""
            } else {
                "  ALERT failed requests"
            }
        );
    }
    if snap.pairs.iter().any(|p| p.cutover_at.is_some()) {
        println!("*: cut over, the target is the authority (tandem cutover --undo rolls back)");
    }
    if let Some(w) = &snap.agents_warning {
        println!("warning: {w}");
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option of every command says what it does in `--help`.
    #[test]
    fn every_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&crate::cli::Cli::command(), "tandem", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }
}
