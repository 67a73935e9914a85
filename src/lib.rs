//! tandem keeps each mailbox pair's calendars in step during a mail migration.
//!
//! Each folder is a layer, and a layer imports only the ones it names:
//!
//! - [`domain`]: the values passed around (items, identity, window, hrefs, pairs, mailboxes,
//!   pair states, leases); no I/O; imports nothing.
//! - [`config`]: the config file, checked as a whole; imports `domain`.
//! - [`store`]: calendars (CalDAV, vdir folders, in memory) behind one trait; imports `domain`.
//! - [`state`]: the state store; every SQL statement of the project is here; imports `domain`.
//! - [`sync`]: planning one pass, a pure function from both sides and the prior state to
//!   actions, and pairing a mailbox's calendars; imports `domain`.
//! - [`engine`]: turns the config into what the layers above take, and runs passes as stages
//!   (list → read → plan → execute → record, one path for either mode), discovery of
//!   mailboxes' calendars, repair and dedupe.
//! - [`service`]: `tandem run`: agents, scheduling, the status page and the API.
//! - [`cli`]: the command line: every subcommand's handler and every exit code.
//!
//! The `architecture` tests hold the code to this order.

// The docs are for the engineers reading the code (`cargo doc --document-private-items`): a
// module's doc names the private rooms it is made of.
#![allow(rustdoc::private_intra_doc_links)]
// Private by default: an item another layer does not use is not `pub`.
#![warn(unreachable_pub)]

pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod service;
pub mod state;
pub mod store;
pub mod sync;
