//! Why an .ics body is not an item tandem can sync, and the limits on one item.

use super::content;

/// The largest item read, in bytes of iCalendar text. Reading, hashing and writing an item take
/// time and memory in proportion to its size; real items, attachments included, stay far below.
pub(crate) const MAX_ITEM_BYTES: usize = 16 << 20;
/// The deepest nesting of components read, VCALENDAR included. iCalendar itself nests at most
/// four deep (VCALENDAR, VAVAILABILITY, AVAILABLE, VALARM); every walk over a component (write,
/// hash, drop) recurses, so an item nested thousands deep would overflow a thread's stack.
pub(super) const MAX_DEPTH: usize = 16;

/// Why an .ics body is not an item tandem can sync. Each names the rule it breaks ([`Self::rule`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("not valid iCalendar: line {line}: {reason} ({})", self.rule())]
    Line { line: usize, reason: String },
    #[error("not valid iCalendar: line {line}: {reason} ({})", self.rule())]
    Structure { line: usize, reason: String },
    #[error("not valid iCalendar: line {line}: {reason} ({})", self.rule())]
    OutsideCalendar { line: usize, reason: String },
    #[error("not valid iCalendar: no VCALENDAR ({})", self.rule())]
    Empty,
    #[error("more than one VCALENDAR in one resource ({})", self.rule())]
    MultipleCalendars,
    #[error("no component inside the VCALENDAR ({})", self.rule())]
    NoComponents,
    #[error("a {0} has no UID ({rule})", rule = self.rule())]
    MissingUid(String),
    #[error("components with different UIDs ({} and {}) in one resource ({rule})", content::quoted(.0), content::quoted(.1), rule = self.rule())]
    MixedUids(String, String),
    #[error("one UID names components of different types ({})", self.rule())]
    MixedKinds,
    #[error("a VALARM outside any VEVENT or VTODO ({})", self.rule())]
    StrayAlarm,
    #[error("the item is {0} bytes, over tandem's limit of {MAX_ITEM_BYTES} ({rule})", rule = self.rule())]
    TooLarge(usize),
    #[error("not valid iCalendar: line {line}: components nest more than {} deep ({})", MAX_DEPTH, self.rule())]
    TooDeep { line: usize },
}

impl ItemError {
    /// The rule of RFC 5545 (or, for one resource, RFC 4791) the object breaks.
    pub fn rule(&self) -> &'static str {
        match self {
            ItemError::Line { .. } => "RFC 5545 §3.1: content lines",
            ItemError::Structure { .. } => "RFC 5545 §3.6: every BEGIN has its END",
            ItemError::OutsideCalendar { .. } => {
                "RFC 5545 §3.4: an iCalendar object is one VCALENDAR"
            }
            ItemError::Empty => "RFC 5545 §3.4: an iCalendar stream is VCALENDAR objects",
            ItemError::MultipleCalendars | ItemError::MixedUids(..) => {
                "RFC 4791 §4.1: one resource holds one UID"
            }
            ItemError::NoComponents => "RFC 5545 §3.6: a VCALENDAR holds at least one component",
            ItemError::MissingUid(_) => "RFC 5545 §3.6.1-§3.6.4, RFC 7953: UID is required",
            ItemError::MixedKinds => "RFC 5545 §3.8.4.7: a UID is unique to one component type",
            ItemError::StrayAlarm => "RFC 5545 §3.6.6: VALARM lives in VEVENT or VTODO",
            ItemError::TooLarge(_) | ItemError::TooDeep { .. } => "tandem's limit on one item",
        }
    }
}
