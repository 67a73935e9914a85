//! Statements over many rows at once: a batch of mappings, pending creates or index rows is one
//! statement per chunk, not one per row, so a pass's bookkeeping costs a few round trips to the
//! database whatever its size. And every statement's final text: spelled for its backend and
//! built once per process.

use std::collections::HashMap;
use std::sync::Arc;

/// Values bound per statement at most. Far under SQLite's limit (32,766) and PostgreSQL's
/// (65,535).
const VALUES_PER_STATEMENT: usize = 256;

/// Statement texts kept once spelled out: at most this many, then the memory starts over.
const TEXTS_KEPT: usize = 2048;

/// Texts spelled out, by what they were built from.
type Texts<K> = std::sync::OnceLock<std::sync::Mutex<HashMap<K, Arc<str>>>>;

/// A statement's final text, built once per process: a pass builds the same few texts (one per
/// statement and chunk length) again and again, and spelling out hundreds of placeholders
/// costs more than looking the text up. A borrowed key finds it, so a hit allocates nothing.
fn remembered<K, Q>(
    memory: &'static Texts<K>,
    key: &Q,
    build: impl FnOnce(&Q) -> String,
) -> Arc<str>
where
    K: Eq + std::hash::Hash + std::borrow::Borrow<Q>,
    Q: Eq + std::hash::Hash + ToOwned<Owned = K> + ?Sized,
{
    let memory = memory.get_or_init(Default::default);
    if let Some(text) = memory.lock().expect("not poisoned").get(key) {
        return text.clone();
    }
    let text: Arc<str> = build(key).into();
    let mut kept = memory.lock().expect("not poisoned");
    if kept.len() >= TEXTS_KEPT {
        kept.clear();
    }
    kept.insert(key.to_owned(), text.clone());
    text
}

/// `text` in the backend's own spelling of what the two spell differently: `NOW_MS` (the
/// database's clock in unix ms, which every node shares) and `FOR_SHARE` (a row lock kept to the
/// end of the transaction; SQLite's write transaction already excludes other writers).
///
/// And as the backend binds it fastest. SQLite finds each numbered parameter (`$N`) by a scan of
/// all of them, so binding n values costs n²; anonymous `?` are bound in order at no cost. When
/// `$1, $2, …` each appear once and in order, the two mean the same, and SQLite gets `?`.
pub(super) fn statement(text: &str, sqlite: bool) -> sqlx::AssertSqlSafe<Arc<str>> {
    static SQLITE: Texts<String> = std::sync::OnceLock::new();
    static POSTGRES: Texts<String> = std::sync::OnceLock::new();
    let memory = if sqlite { &SQLITE } else { &POSTGRES };
    sqlx::AssertSqlSafe(remembered(memory, text, |text| {
        let (now, share) = match sqlite {
            true => (super::sqlite::NOW_MS, ""),
            false => (super::postgres::NOW_MS, " FOR SHARE"),
        };
        let text = text.replace("NOW_MS", now).replace(" FOR_SHARE", share);
        match sqlite.then(|| anonymous(&text)).flatten() {
            Some(plain) => plain,
            None => text,
        }
    }))
}

/// Whether `conn` is SQLite's.
pub(super) fn on_sqlite(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

/// `text` with `$1, $2, …` as `?`, if each appears once and in order.
fn anonymous(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut next = 1;
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if tail[..digits].parse::<usize>().ok()? != next {
            return None;
        }
        next += 1;
        out.push('?');
        rest = &tail[digits..];
    }
    out.push_str(rest);
    Some(out)
}

/// The rows of `items` in chunks whose `cols` values each stay under both backends' limits.
pub(super) fn chunks<T>(items: &[T], cols: usize) -> std::slice::Chunks<'_, T> {
    items.chunks((VALUES_PER_STATEMENT / cols.max(1)).max(1))
}

/// `($first, $first+1, …), (…)`: `rows` groups of `cols` placeholders numbered from `first`.
pub(super) fn groups(rows: usize, cols: usize, first: usize) -> Arc<str> {
    static TEXTS: Texts<(usize, usize, usize)> = std::sync::OnceLock::new();
    remembered(&TEXTS, &(rows, cols, first), |&(rows, cols, first)| {
        use std::fmt::Write;
        let mut out = String::with_capacity(rows * cols * 6);
        for r in 0..rows {
            if r > 0 {
                out.push_str(", ");
            }
            out.push('(');
            for c in 0..cols {
                if c > 0 {
                    out.push_str(", ");
                }
                write!(out, "${}", first + r * cols + c).expect("writing to a String");
            }
            out.push(')');
        }
        out
    })
}

/// The last of the items that share a key, in their order: a batch applied as one statement
/// ends as the same batch applied row by row, where a later row replaces an earlier one.
pub(super) fn last_per_key<T, K: Eq + std::hash::Hash>(
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<&T> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<&T> = items.iter().rev().filter(|t| seen.insert(key(t))).collect();
    kept.reverse();
    kept
}

/// `items` in rounds where each key appears at most once, in order: the k-th item of a key goes
/// in round k. A statement per round that may match each key once ends as the items applied one
/// by one.
pub(super) fn rounds<T, K: Eq + std::hash::Hash>(
    items: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<Vec<&T>> {
    let mut seen: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut out: Vec<Vec<&T>> = Vec::new();
    for item in items {
        let n = seen.entry(key(item)).or_insert(0);
        if out.len() <= *n {
            out.push(Vec::new());
        }
        out[*n].push(item);
        *n += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_anonymous_parameters_only_when_they_mean_the_same() {
        let plain = |t: &str, sqlite| statement(t, sqlite).0.to_string();
        let text = format!("DELETE FROM t WHERE a = $1 AND b IN {}", groups(1, 11, 2));
        assert_eq!(
            plain(&text, true),
            "DELETE FROM t WHERE a = ? AND b IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(plain(&text, false), text);
        for kept in [
            "SELECT $2, $1",
            "SELECT $1 WHERE x = $1",
            "SELECT $1, $3",
            "SELECT '$'",
        ] {
            assert_eq!(plain(kept, true), kept);
        }
        assert_eq!(plain("SELECT 1", true), "SELECT 1");
        assert_eq!(
            plain("SELECT NOW_MS FROM t FOR_SHARE", true),
            format!("SELECT {} FROM t", crate::state::sqlite::NOW_MS)
        );
        assert_eq!(
            plain("SELECT NOW_MS FROM t FOR_SHARE", false),
            format!("SELECT {} FROM t FOR SHARE", crate::state::postgres::NOW_MS)
        );
    }

    #[test]
    fn groups_number_placeholders_row_by_row() {
        assert_eq!(&*groups(2, 3, 2), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(&*groups(1, 1, 1), "($1)");
        assert_eq!(
            &*groups(2, 3, 2),
            "($2, $3, $4), ($5, $6, $7)",
            "remembered alike"
        );
    }

    #[test]
    fn chunks_stay_under_the_limit() {
        let items = vec![0u8; 1_000];
        let sizes: Vec<usize> = chunks(&items, 9).map(<[u8]>::len).collect();
        assert!(sizes.iter().all(|n| n * 9 <= VALUES_PER_STATEMENT));
        assert_eq!(sizes.iter().sum::<usize>(), 1_000);
        assert!(
            chunks(&items, 1000).all(|c| c.len() == 1),
            "a row too wide still goes"
        );
    }

    #[test]
    fn a_key_appears_once_per_round() {
        let items = [(1, 'a'), (2, 'b'), (1, 'c'), (1, 'd')];
        let rounds: Vec<String> = rounds(&items, |i| i.0)
            .iter()
            .map(|r| r.iter().map(|i| i.1).collect())
            .collect();
        assert_eq!(rounds, ["ab", "c", "d"]);
    }

    #[test]
    fn the_last_of_a_key_wins() {
        let items = [(1, 'a'), (2, 'b'), (1, 'c')];
        let kept: Vec<char> = last_per_key(&items, |i| i.0).iter().map(|i| i.1).collect();
        assert_eq!(kept, ['b', 'c']);
    }
}
