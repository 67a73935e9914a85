//! The keep-which-copy rule: of several copies of one meeting, which one stays.

use crate::domain::item::Item;
use crate::domain::types::Href;

/// How new a version of a meeting is, as its writers numbered and stamped it: the higher
/// SEQUENCE, then the later LAST-MODIFIED, then the later DTSTAMP (UTC `YYYYMMDDTHHMMSSZ` as
/// written sorts by time; a missing stamp is oldest). Orders copies for `dedupe` and `repair`,
/// and conflicts under `conflict = "newest"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Newness {
    pub sequence: i64,
    pub last_modified: Option<String>,
    pub dtstamp: Option<String>,
}

impl Newness {
    pub fn of(item: &Item) -> Newness {
        Newness {
            sequence: item.sequence(),
            last_modified: item.last_modified().map(str::to_string),
            dtstamp: item.dtstamp().map(str::to_string),
        }
    }
}

/// What the keep-which-copy rule looks at in one copy of a meeting.
#[derive(Debug, Clone, Copy)]
pub struct CopyRank<'a> {
    /// The state maps this copy: deleting it would only bring it back.
    pub mapped: bool,
    /// It already equals the source's version.
    pub equal: bool,
    pub newness: &'a Newness,
    pub href: &'a Href,
}

/// The keep-which-copy rule, one for `dedupe` and `repair`: sorts `copies` so the one to keep
/// comes first — the mapped copy, then one equal to the source, then the newest ([`Newness`]);
/// the href breaks ties so the choice is the same every time.
pub fn rank_copies<T>(copies: &mut [T], rank: impl for<'a> Fn(&'a T) -> CopyRank<'a>) {
    copies.sort_by(|a, b| {
        let (a, b) = (rank(a), rank(b));
        (b.mapped, b.equal, b.newness)
            .cmp(&(a.mapped, a.equal, a.newness))
            .then_with(|| a.href.cmp(b.href))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_kept_is_mapped_then_equal_then_newest() {
        // (href, mapped, equal, SEQUENCE, LAST-MODIFIED, DTSTAMP)
        let copy = |name: &str, mapped, equal, sequence, lm: Option<&str>, stamp: Option<&str>| {
            let newness = Newness {
                sequence,
                last_modified: lm.map(str::to_string),
                dtstamp: stamp.map(str::to_string),
            };
            let href = Href::new(&format!("/cal/{name}.ics")).unwrap();
            (href, mapped, equal, newness)
        };
        let mut copies = vec![
            copy("a", false, false, 1, Some("20260101T000000Z"), None),
            copy("b", false, false, 2, None, None),
            copy("f", false, false, 2, Some("20250101T000000Z"), None),
            copy("c", false, false, 2, Some("20250101T000000Z"), None),
            copy(
                "g",
                false,
                false,
                2,
                Some("20250101T000000Z"),
                Some("20240101T000000Z"),
            ),
            copy("d", false, true, 0, None, None),
            copy("e", true, false, 0, None, None),
        ];
        rank_copies(&mut copies, |c| CopyRank {
            mapped: c.1,
            equal: c.2,
            newness: &c.3,
            href: &c.0,
        });
        let names: Vec<&str> = copies.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "/cal/e.ics",
                "/cal/d.ics",
                "/cal/g.ics",
                "/cal/c.ics",
                "/cal/f.ics",
                "/cal/b.ics",
                "/cal/a.ics"
            ]
        );
    }
}
