//! tandem keeps each mailbox pair's calendars in step during a mail migration.
//!
//! Data flows one way: [`config`] → stores ([`store`]) and state ([`state`]) → [`sync::plan`]
//! (pure) → [`engine`] (executes, records mappings only after remote writes succeed).
//!
//! - [`item`] reads and writes iCalendar exactly (RFC 5545); [`identity`] and [`window`] judge
//!   items; [`types`], [`pairstate`] and [`lease`] are the values the rest passes around.
//! - [`state`] holds every SQL statement of the project (pairs, mappings, leases, quarantine,
//!   runs, counters); nothing else touches the database.
//! - [`engine`] runs one pass of a pair; [`repair`] compares both sides without trusting the
//!   state; [`pool`] and [`scheduler`] run passes on pinned agents; [`observe`] and [`web`] are
//!   the operator's view.
//! - [`cli`] is the command line: every subcommand's handler and every exit code.
//!
//! No module imports one that imports it back (checked by the `architecture` tests).

pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod identity;
pub mod item;
pub mod lease;
pub mod logging;
pub mod observe;
pub mod pairstate;
pub mod pool;
pub mod progress;
pub mod repair;
pub mod report;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod sync;
pub mod types;
pub mod web;
pub mod window;
