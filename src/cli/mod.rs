//! The `tandem` command line (DESIGN.md "Interface").
//!
//! Exit codes: 0 all requested pairs synced; 1 fatal (state store unusable, ...); 2 usage or
//! config error; 3 finished, but some pairs or items failed ([`exit`]). Every command has its
//! room beside this one, which only parses ([`args`]) and dispatches; the library below returns typed
//! errors, and only this layer turns them into exit codes.

mod args;
mod check;
mod connect;
mod cutover;
mod demo;
mod demo_orgs;
mod exit;
mod logging;
mod mailboxes;
mod operate;
mod service;
mod status;
mod sync;

use std::process::ExitCode;

use clap::Parser;

use crate::config::Config;
use crate::engine::PassOptions;
use args::{Cli, Command, LockAction, QuarantineAction};
pub use exit::Failure;
pub(crate) use exit::{EXIT_FATAL, EXIT_OK, EXIT_USAGE};

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    logging::init(cli.log_format, cli.verbose);
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
            let code = check::check(&cli.config)?;
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
            sync::sync(&config, &pairs, opts, json).await
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
            sync::sync(&config, &[pair], opts, json).await
        }
        Command::Status { json } => status::status(&cli.config, json).await,
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
        Command::Discover { mailbox, json } => {
            let config = Config::load(&cli.config)?;
            mailboxes::discover(&config, mailbox.as_deref(), json).await
        }
        Command::Dedupe {
            pair,
            side,
            dry_run,
            json,
        } => sync::dedupe(&cli.config, &pair, side.side(), dry_run, json).await,
    }
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
        walk(&crate::cli::args::Cli::command(), "tandem", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }
}
