//! Planning one pass of a pair: a pure function from both sides and the prior state to actions.
//!
//! Like pimsync and vdirsyncer, each item is decided by a `match` over
//! `(original?, copy?, previous mapping?)`; etags say what may have changed, content hashes say
//! whether it really did. Both sides are the same kind of value and every action names the side
//! it writes, so which way a pass copies is only its [`Mode`]. Nothing here does I/O: the whole
//! decision table is unit-tested, and `--dry-run` is just "print the plan".
//!
//! - [`plan_item`] is the decision table for one item, in either mode;
//! - [`plan()`](plan::plan) walks a one-way pass: every item and every create left pending by a
//!   crash;
//! - [`select`] gives creates a copy to adopt and picks the extras to delete;
//! - [`rank`] is the one keep-which-copy rule;
//! - [`twins`] sets aside a second item of one calendar that holds the same meeting;
//! - [`two_way`] walks a pass that copies both ways.

mod decide;
mod model;
mod plan;
pub mod rank;
pub mod select;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_two_way;
pub mod twins;
pub mod two_way;

pub use crate::domain::mapping::Side;
pub use decide::plan_item;
pub use model::{
    Action, Adopt, Content, Mode, Plan, PlanError, PlanOptions, Prepared, Prior, Resolved,
    SourceSnapshot, TargetSnapshot, Version, target_name,
};
pub use plan::{fetch_lists, plan};
pub use rank::{CopyRank, rank_copies};
