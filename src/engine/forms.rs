//! How items are put in one form: when read, parsed, rewritten into the new org's addresses,
//! marked client-scheduled, judged against the window and hashed; when written to the old org,
//! turned back into its addresses. Every stage that reads or writes items holds the forms.

use std::sync::Arc;

use crate::domain::error::ErrorKind;
use crate::domain::item::{Ambiguous, Item, ItemError, Rewriter};
use crate::domain::mapping::Side;
use crate::domain::window::Window;
use crate::sync::{Content, Prepared};

/// What "now" is for the sync window (replaceable in tests to let time pass).
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

pub(super) fn system_clock() -> Clock {
    Arc::new(chrono::Utc::now)
}

#[derive(Clone)]
pub(super) struct Forms {
    pub(super) rewriter: Arc<Rewriter>,
    /// The rewrite for copies written to the old org (side A), or why there is none.
    pub(super) inverse: Result<Arc<Rewriter>, Ambiguous>,
    pub(super) window: Window,
    /// What "now" is for the window.
    pub(super) clock: Clock,
}

impl Forms {
    /// `rewriter` and its inverse, the whole calendar as the window, the system clock.
    pub(super) fn new(rewriter: Rewriter) -> Forms {
        Forms {
            inverse: rewriter.inverse([], []).map(Arc::new),
            rewriter: Arc::new(rewriter),
            window: Window::default(),
            clock: system_clock(),
        }
    }

    pub(super) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }

    /// An item read from `side`, made ready to plan with: in the new org's form (side A's
    /// addresses rewritten), marked client-scheduled, judged against the window, hashed. Both
    /// sides' items are in this one form, so equal content hashes equal whichever side it is on.
    pub(super) fn prepare(
        &self,
        side: Side,
        data: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Content<Arc<Prepared>> {
        match self.canonical(side, data) {
            Ok(mut item) => {
                item.mark_client_scheduled();
                // The recurrence expander is third-party code: if it panics on some input, the
                // item counts as inside (synced) rather than taking the pass down.
                let fit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.window.fit(&item, now)
                }))
                .unwrap_or(Ok(crate::domain::window::Fit::Inside));
                match fit {
                    Ok(fit) => Content::Fetched(Arc::new(Prepared::new(item).with_fit(fit))),
                    Err(e) => Content::Broken(ErrorKind::InvalidData, e.to_string()),
                }
            }
            Err(e) => Content::Broken(
                ErrorKind::InvalidData,
                format!("invalid iCalendar data: {e}"),
            ),
        }
    }

    /// An item read from `side`, parsed, in the new org's form.
    pub(super) fn canonical(&self, side: Side, data: &str) -> Result<Item, ItemError> {
        let mut item = Item::parse(data)?;
        if side == Side::A {
            item.rewrite(&self.rewriter);
        }
        Ok(item)
    }

    /// The text of a copy written to `side`: for the old org (A), with the new org's addresses
    /// turned back.
    pub(super) fn render(&self, side: Side, item: &Item) -> String {
        match (side, &self.inverse) {
            (Side::A, Ok(inverse)) if !inverse.is_empty() => {
                let mut back = item.clone();
                back.rewrite(inverse);
                back.to_ics()
            }
            // A pass writing to A without a way back does not start (see `recorded_pass`).
            _ => item.to_ics(),
        }
    }
}
