//! tandem keeps each mailbox pair's calendars in step during a mail migration.
//!
//! Each folder is a layer, and a layer imports only the ones listed before it:
//!
//! - [`domain`]: the values passed around (items, identity, window, hrefs, pair states, leases);
//!   no I/O.
//! - [`config`]: the config file, checked as a whole.
//! - [`store`]: calendars (CalDAV, vdir folders, in memory) behind one trait.
//! - [`state`]: the state store; every SQL statement of the project is here.
//! - [`sync`]: planning one pass, a pure function from both sides and the prior state to actions.
//! - [`engine`]: runs passes as stages (read → plan → execute → record), repair and dedupe.
//! - [`service`]: `tandem run`: agents, scheduling, the status page and the API.
//! - [`cli`]: the command line: every subcommand's handler and every exit code.
//!
//! The `architecture` tests hold the code to this order.

pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod service;
pub mod state;
pub mod store;
pub mod sync;
