//! After a pass that wrote: each side's watermark moves past tandem's own writes, so the next
//! pass does not list them again (it costs what a quiet pass costs), and no one else's change
//! is lost on the way.
//!
//! The side is listed once more from the token taken before the writes. If it shows nothing
//! but tandem's own writes, the new token is kept. If it shows someone else's change, the old
//! token stays, and the next pass reads that change. If a copy tandem created is missing from
//! it, the server left out an item created after the token and deleted since (RFC 6578 allows
//! that; Xandikos does it), which no later listing from that token would report: the next pass
//! lists the side whole, and sees the copy gone.

use std::collections::HashSet;

use tracing::debug;

use super::execute::Wrote;
use super::list::Tokens;
use super::record::Recorder;
use crate::domain::mapping::Side;
use crate::domain::types::{Href, SyncToken};
use crate::store::Changes;

/// Where a side's watermark goes after the check.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Past tandem's writes: nothing else moved.
    Advance(SyncToken),
    /// Stays: someone else's change is to be read next pass (or the check told nothing).
    Keep,
    /// None: the next pass lists the side whole.
    Relist,
}

/// The verdict on a listing from the token taken before the writes `wrote`.
fn judge(changes: &Changes, wrote: &Wrote) -> Verdict {
    let (false, Some(token)) = (changes.complete, &changes.token) else {
        return Verdict::Keep;
    };
    let listed: HashSet<&Href> = changes.changed.iter().map(|v| &v.href).collect();
    let deleted: HashSet<&Href> = changes.deleted.iter().collect();
    if wrote
        .created
        .iter()
        .any(|h| !listed.contains(h) && !deleted.contains(h))
    {
        return Verdict::Relist;
    }
    let foreign = changes
        .changed
        .iter()
        .any(|v| wrote.versions.get(&v.href) != Some(&v.etag))
        || changes.deleted.iter().any(|h| !wrote.deleted.contains(h));
    match foreign {
        true => Verdict::Keep,
        false => Verdict::Advance(token.clone()),
    }
}

impl Recorder<'_> {
    /// The watermarks to record after the writes `wrote` (A, B): see the module's header. A
    /// side that cannot be listed now keeps its token.
    pub(super) async fn settle(&self, tokens: &Tokens, wrote: &[Wrote; 2]) -> Tokens {
        let mut out = tokens.clone();
        for side in [Side::A, Side::B] {
            let (w, (_, listed)) = (&wrote[side as usize], &tokens[side as usize]);
            let Some(listed) = listed.as_ref().filter(|_| !w.is_empty()) else {
                continue;
            };
            let (cal, store) = (self.pair.calendar(side), self.store(side));
            let verdict = match store.changes(&cal.path, Some(listed)).await {
                Ok(changes) => judge(&changes, w),
                Err(e) => {
                    debug!(calendar = %cal, error = %e, "listing after the writes failed; the token stays");
                    Verdict::Keep
                }
            };
            debug!(calendar = %cal, ?verdict, "watermark after the writes");
            match verdict {
                Verdict::Advance(t) => out[side as usize].1 = Some(t),
                Verdict::Keep => {}
                Verdict::Relist => out[side as usize].1 = None,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::types::Etag;
    use crate::store::ItemVersion;

    fn href(s: &str) -> Href {
        Href::new(&format!("/c/{s}")).unwrap()
    }

    fn listing(changed: &[(&str, &str)], deleted: &[&str]) -> Changes {
        Changes {
            changed: changed
                .iter()
                .map(|(h, e)| ItemVersion {
                    href: href(h),
                    etag: Etag::new(*e),
                })
                .collect(),
            deleted: deleted.iter().map(|h| href(h)).collect(),
            complete: false,
            token: Some(SyncToken::new("t2")),
        }
    }

    fn wrote() -> Wrote {
        Wrote {
            versions: [
                (href("a.ics"), Etag::new("1")),
                (href("b.ics"), Etag::new("7")),
            ]
            .into_iter()
            .collect(),
            created: [href("a.ics")].into_iter().collect(),
            deleted: [href("gone.ics")].into_iter().collect(),
        }
    }

    #[test]
    fn only_our_own_writes_move_the_token() {
        let ours = listing(&[("a.ics", "1"), ("b.ics", "7")], &["gone.ics"]);
        assert_eq!(
            judge(&ours, &wrote()),
            Verdict::Advance(SyncToken::new("t2"))
        );
    }

    #[test]
    fn anyone_elses_change_keeps_the_token() {
        let edited = listing(&[("a.ics", "1"), ("b.ics", "8")], &[]);
        assert_eq!(judge(&edited, &wrote()), Verdict::Keep);
        let new = listing(&[("a.ics", "1"), ("z.ics", "1")], &[]);
        assert_eq!(judge(&new, &wrote()), Verdict::Keep);
        let removed = listing(&[("a.ics", "1")], &["old.ics"]);
        assert_eq!(judge(&removed, &wrote()), Verdict::Keep);
        // Our new copy deleted by someone, and the server says so.
        let reported = listing(&[], &["a.ics"]);
        assert_eq!(judge(&reported, &wrote()), Verdict::Keep);
    }

    #[test]
    fn a_created_copy_left_out_lists_the_side_whole() {
        let silent = listing(&[("b.ics", "7")], &[]);
        assert_eq!(judge(&silent, &wrote()), Verdict::Relist);
    }

    #[test]
    fn a_refused_token_tells_nothing() {
        let mut whole = listing(&[("a.ics", "1")], &[]);
        whole.complete = true;
        assert_eq!(judge(&whole, &wrote()), Verdict::Keep);
    }
}
