//! Which way a pair syncs, which side is the truth now, and who wins when both sides changed.

use crate::domain::mapping::Side;

/// How a pair's calendars are kept in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// The authority's calendar is copied to the other one.
    #[default]
    OneWay,
    /// A change on either side reaches the other.
    TwoWay,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::OneWay => "one-way",
            Direction::TwoWay => "two-way",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "one-way" => Some(Direction::OneWay),
            "two-way" => Some(Direction::TwoWay),
            _ => None,
        }
    }
}

/// Which version wins when both sides changed one item differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// The side that is the truth now (the pair's authority).
    #[default]
    Authority,
    /// The newer version (SEQUENCE, then LAST-MODIFIED, then DTSTAMP); the authority when they
    /// are equally new.
    Newest,
}

impl ConflictPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Authority => "authority",
            ConflictPolicy::Newest => "newest",
        }
    }

    pub fn parse(s: &str) -> Option<ConflictPolicy> {
        match s {
            "authority" => Some(ConflictPolicy::Authority),
            "newest" => Some(ConflictPolicy::Newest),
            _ => None,
        }
    }
}

/// The side that is the truth: the source (A) until the pair is cut over, the target (B) after.
pub fn authority(cut_over: bool) -> Side {
    if cut_over { Side::B } else { Side::A }
}
