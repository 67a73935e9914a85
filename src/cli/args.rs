//! What the command line accepts: every command, its options and their help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    version,
    about = "Keeps mailbox pairs' calendars in step during a mail migration"
)]
pub(super) struct Cli {
    /// Config file.
    #[arg(
        short,
        long,
        global = true,
        env = "TANDEM_CONFIG",
        default_value = "tandem.toml"
    )]
    pub(super) config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(super) log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
        /// Only this pair, or all calendars of this mailbox (repeatable).
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
    /// Each mailbox's calendars on both sides and what `sync` will do with each (pair, create,
    /// skip, and why); writes nothing.
    Discover {
        /// Only this mailbox.
        #[arg(long, value_name = "ID")]
        mailbox: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete duplicate copies of a meeting in one of a pair's calendars (same identity key).
    Dedupe {
        /// The pair whose calendar to clean, or a mailbox (each of its calendars).
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
        /// Only this pair, or all calendars of this mailbox (repeatable); all by default.
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
        /// The pair to stop, or a mailbox (all its calendars).
        #[arg(long = "pair", value_name = "ID")]
        pair: String,
        /// Shown in `status`.
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
    },
    /// Sync a disabled, paused or backing-off pair again from its next turn.
    Enable {
        /// The pair to sync again, or a mailbox (all its calendars).
        #[arg(long = "pair", value_name = "ID")]
        pair: String,
    },
    /// The mailbox was switched to the new org: its target calendar becomes the truth (one-way
    /// pairs then sync target -> source; two-way pairs let it win conflicts).
    Cutover {
        /// This pair, or a mailbox: all its calendars at once (repeatable).
        #[arg(long = "pair", value_name = "ID")]
        pairs: Vec<String>,
        /// A wave: one pair or mailbox id per line (first column; a header `id` is skipped).
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// The switch was rolled back: the source is the truth again.
        #[arg(long)]
        undo: bool,
    },
}

/// A calendar of a pair, as the command line names it.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum WhichSide {
    Source,
    Target,
}

impl WhichSide {
    pub(super) fn side(self) -> crate::domain::mapping::Side {
        match self {
            WhichSide::Source => crate::domain::mapping::Side::A,
            WhichSide::Target => crate::domain::mapping::Side::B,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(super) enum LockAction {
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
pub(super) enum QuarantineAction {
    /// Failed and quarantined items with pair, href, identity and reason.
    List {
        /// Only this pair, or a mailbox's calendars; all by default.
        #[arg(long = "pair", value_name = "ID")]
        pair: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Try quarantined items again on their pair's next pass.
    Retry {
        /// Only this pair, or a mailbox's calendars; all by default.
        #[arg(long = "pair", value_name = "ID")]
        pair: Option<String>,
    },
}
