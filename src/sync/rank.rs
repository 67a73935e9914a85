//! The keep-which-copy rule: of several copies of one meeting, which one stays.

use crate::domain::types::Href;

/// What the keep-which-copy rule looks at in one copy of a meeting.
#[derive(Debug, Clone, Copy)]
pub struct CopyRank<'a> {
    /// The state maps this copy: deleting it would only bring it back.
    pub mapped: bool,
    /// It already equals the source's version.
    pub equal: bool,
    pub sequence: i64,
    /// As written (UTC `YYYYMMDDTHHMMSSZ` sorts by time).
    pub last_modified: Option<&'a str>,
    pub href: &'a Href,
}

/// The keep-which-copy rule, one for `dedupe` and `repair`: sorts `copies` so the one to keep
/// comes first — the mapped copy, then one equal to the source, then the highest SEQUENCE, then
/// the latest LAST-MODIFIED; the href breaks ties so the choice is the same every time.
pub fn rank_copies<T>(copies: &mut [T], rank: impl for<'a> Fn(&'a T) -> CopyRank<'a>) {
    copies.sort_by(|a, b| {
        let (a, b) = (rank(a), rank(b));
        (b.mapped, b.equal, b.sequence, b.last_modified)
            .cmp(&(a.mapped, a.equal, a.sequence, a.last_modified))
            .then_with(|| a.href.cmp(b.href))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_kept_is_mapped_then_equal_then_newest() {
        // (href, mapped, equal, SEQUENCE, LAST-MODIFIED)
        let copy = |name: &str, mapped, equal, seq, lm: Option<&'static str>| {
            (
                Href::new(&format!("/cal/{name}.ics")).unwrap(),
                mapped,
                equal,
                seq,
                lm,
            )
        };
        let mut copies = vec![
            copy("a", false, false, 1, Some("20260101T000000Z")),
            copy("b", false, false, 2, None),
            copy("f", false, false, 2, Some("20250101T000000Z")),
            copy("c", false, false, 2, Some("20250101T000000Z")),
            copy("d", false, true, 0, None),
            copy("e", true, false, 0, None),
        ];
        rank_copies(&mut copies, |c| CopyRank {
            mapped: c.1,
            equal: c.2,
            sequence: c.3,
            last_modified: c.4,
            href: &c.0,
        });
        let names: Vec<&str> = copies.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "/cal/e.ics",
                "/cal/d.ics",
                "/cal/c.ics",
                "/cal/f.ics",
                "/cal/b.ics",
                "/cal/a.ics"
            ]
        );
    }
}
