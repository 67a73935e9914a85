//! A pair: two calendars kept in step, which way, and how conflicts and extra items are settled.

use crate::domain::direction::{ConflictPolicy, Direction};
use crate::domain::mapping::Side;
use crate::domain::types::{CalendarRef, PairId};

/// Two calendars kept in step: the source (side A) and the target (side B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub id: PairId,
    pub source: CalendarRef,
    pub target: CalendarRef,
    pub direction: Direction,
    /// How a two-way pair settles an item both sides changed.
    pub conflict: ConflictPolicy,
}

impl Pair {
    /// A one-way pair whose conflicts (if it becomes two-way) go to the authority.
    pub fn new(id: PairId, source: CalendarRef, target: CalendarRef) -> Pair {
        Pair {
            id,
            source,
            target,
            direction: Direction::OneWay,
            conflict: ConflictPolicy::Authority,
        }
    }

    /// The calendar on `side`: A is the source, B the target.
    pub fn calendar(&self, side: Side) -> &CalendarRef {
        match side {
            Side::A => &self.source,
            Side::B => &self.target,
        }
    }
}

/// What a one-way pair does with target items that did not come from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extras {
    /// They are left alone.
    Keep,
    /// They are deleted.
    Delete,
}
