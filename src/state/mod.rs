//! The state store: every SQL statement of tandem, behind one struct ([`State`]).
//!
//! The schema lives only in `migrations/`; opening a database applies what it lacks. All SQL of the
//! project is in this module, with `$N` placeholders and what SQLite and PostgreSQL share; what
//! is SQLite's own (opening, locking, the write transaction) is in its backend file, so a
//! PostgreSQL backend beside it shares the statements. Errors here are fatal for a run: without its state,
//! tandem could duplicate or lose items.
//!
//! One room per table group: [`db`] opens and connects, then pairs and cutover, mappings and
//! pending creates, the window's memory, the target index, watermarks, pass records, leases and
//! fences, nodes, push subscriptions, mailboxes' calendars, the operator's view and the migration minute
//! by minute.

mod db;
mod fence;
mod leases;
mod mailboxes;
mod mappings;
mod minutes;
mod nodes;
mod observe;
mod pairs;
mod pass;
mod postgres;
mod push;
mod rows;
mod sql;
mod sqlite;
mod target_index;
mod watermarks;
mod window;

pub use db::{State, StateError, StateResult};
pub use fence::{LeaseLost, fenced};
pub use minutes::Minute;
pub use nodes::{NodeInfo, NodeRow};
pub use observe::{PairRow, PassView, ServerRow};
pub use pass::{PassStart, Peek};
pub use postgres::MIGRATOR as POSTGRES_MIGRATOR;
pub use push::PushSubscription;
pub use sqlite::MIGRATOR as SQLITE_MIGRATOR;
