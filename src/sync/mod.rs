//! Planning one pass of a pair: a pure function from both sides and the prior state to actions.
//!
//! Like pimsync and vdirsyncer, each item is decided by a `match` over
//! `(original?, copy?, previous mapping?)`; etags say what may have changed, content hashes say
//! whether it really did. Both sides are the same kind of value and every action names the side
//! it writes, so which way a pass copies is only its [`Mode`]. Nothing here does I/O: the whole
//! decision table is unit-tested, and `--dry-run` is just "print the plan".
//!
//! - [`plan_item`] is the decision table for one item, in either mode;
//! - [`plan()`](plan::plan) decides every item of a pass and every create left pending by a
//!   crash, walking it as its mode needs ([`one_way`], [`two_way`]); [`fetch_lists`] says what
//!   to read first;
//! - [`select`] gives creates a copy to adopt and picks the extras to delete;
//! - [`rank`] is the one keep-which-copy rule;
//! - [`calendars`] pairs a mailbox's calendars (which with which, what to create);
//! - [`twins`] sets aside a second item of one calendar that holds the same meeting;

pub mod calendars;
mod decide;
mod model;
mod one_way;
mod plan;
pub mod rank;
pub mod select;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_calendars;
#[cfg(test)]
mod tests_two_way;
pub mod twins;
mod two_way;

pub use crate::domain::mapping::Side;
pub use model::{
    Action, Adopt, Content, Mode, Plan, PlanError, PlanOptions, Prepared, Prior, Resolved,
    Snapshot, Version, target_name,
};
pub use plan::{fetch_lists, plan};
pub use rank::{CopyRank, rank_copies};
