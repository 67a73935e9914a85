//! Runs one pass of a pair: list both sides, read what moved, plan, execute, record — one path
//! for either [`Mode`](crate::sync::Mode): one way from the authority (the source until a
//! cutover, the target after), or both ways.
//!
//! Rule 2 of the design lives here: a mapping is recorded only after its remote write succeeded,
//! updates and deletes carry `If-Match`, and a 412 is answered by re-reading the item, never by
//! overwriting blindly. Per-item failures are data in the report; only state-store errors abort.
//!
//! A mailbox's calendars are found and paired by discovery (`discover.rs`) before its pairs
//! sync.

mod base;
pub mod batch;
mod dedupe;
mod discover;
mod execute;
mod forms;
mod glance;
mod list;
mod pass;
pub mod progress;
mod read;
mod record;
mod repair;
pub mod report;
mod runs;
mod settle;
mod write;

pub use base::{Claims, Engine, PassOptions, connect_state, open_store};
pub use dedupe::{DedupeGroup, DedupeReport};
pub use forms::Clock;
pub use report::{CalendarReport, MailboxReport};
