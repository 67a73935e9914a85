//! Statements over many rows at once: a batch of mappings, pending creates or index rows is one
//! statement with the rows bound as one value, not one statement per row, so a pass's
//! bookkeeping costs a few round trips to the database whatever its size. And every statement's
//! final text: spelled for its backend and built once per process.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

/// Statement texts kept once spelled out: at most this many, then the memory starts over.
const TEXTS_KEPT: usize = 2048;

/// Texts spelled out, by the text they were spelled from.
type Texts = std::sync::OnceLock<std::sync::Mutex<HashMap<String, Arc<str>>>>;

/// A statement's final text, built once per process: a pass spells the same few texts again and
/// again, and rewriting them costs more than looking them up. A borrowed key finds a text, so a
/// hit allocates nothing.
fn remembered(memory: &'static Texts, key: &str, build: impl FnOnce(&str) -> String) -> Arc<str> {
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
/// database's clock in unix ms, which every node shares), `FOR_SHARE` (a row lock kept to the
/// end of the transaction; SQLite's write transaction already excludes other writers) and
/// `JSON_ROWS($N)` (the rows of [`json`] bound as `$N`, see there).
///
/// And as the backend binds it fastest. SQLite finds each numbered parameter (`$N`) by a scan of
/// all of them, so binding n values costs n²; anonymous `?` are bound in order at no cost. When
/// `$1, $2, …` each appear once and in order, the two mean the same, and SQLite gets `?`.
pub(super) fn statement(text: &str, sqlite: bool) -> sqlx::AssertSqlSafe<Arc<str>> {
    static SQLITE: Texts = std::sync::OnceLock::new();
    static POSTGRES: Texts = std::sync::OnceLock::new();
    let memory = if sqlite { &SQLITE } else { &POSTGRES };
    sqlx::AssertSqlSafe(remembered(memory, text, |text| {
        let (now, share) = match sqlite {
            true => (super::sqlite::NOW_MS, ""),
            false => (super::postgres::NOW_MS, " FOR SHARE"),
        };
        let text = json_rows(
            &text.replace("NOW_MS", now).replace(" FOR_SHARE", share),
            sqlite,
        );
        match sqlite.then(|| anonymous(&text)).flatten() {
            Some(plain) => plain,
            None => text,
        }
    }))
}

/// `JSON_ROWS($N)` spelled for the backend: a table with one row per element of the JSON array
/// bound as `$N`, in a column `value`.
fn json_rows(text: &str, sqlite: bool) -> String {
    const TOKEN: &str = "JSON_ROWS(";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TOKEN) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + TOKEN.len()..];
        let end = tail.find(')').expect("JSON_ROWS( is closed");
        match sqlite {
            // A row that is an array comes back as JSONB, so `value->>i` reads it unparsed.
            true => write!(out, "jsonb_each({})", &tail[..end]),
            false => write!(out, "jsonb_array_elements({}::jsonb)", &tail[..end]),
        }
        .expect("writing to a String");
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Rows bound as one value: a JSON array of rows, each an array of its values. A statement reads
/// them as `JSON_ROWS($N)`, a table whose `value` is a row and `value->>i` its i-th value as
/// text (`CAST(value->>i AS BIGINT)` for a number: PostgreSQL reads every value as text). A
/// batch of any size is one statement with one bound value, where binding each value on its
/// own costs sqlx's Any driver four allocations per text.
pub(super) fn json<T: serde::Serialize + ?Sized>(rows: &T) -> String {
    serde_json::to_string(rows).expect("rows of strings and numbers serialise")
}

/// A value written into [`json`] rows as its `Display` text, without a `String` of its own.
pub(super) struct Shown<T>(pub T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
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
        let text = "DELETE FROM t WHERE a = $1 AND b IN ($2, $3)";
        assert_eq!(
            plain(text, true),
            "DELETE FROM t WHERE a = ? AND b IN (?, ?)"
        );
        assert_eq!(plain(text, false), text);
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
    fn json_rows_are_spelled_for_each_backend() {
        let plain = |t: &str, sqlite| statement(t, sqlite).0.to_string();
        let text =
            "SELECT value->>0 FROM JSON_ROWS($1) WHERE x IN (SELECT value->>1 FROM JSON_ROWS($1))";
        assert_eq!(
            plain(text, true),
            "SELECT value->>0 FROM jsonb_each($1) WHERE x IN (SELECT value->>1 FROM jsonb_each($1))"
        );
        assert_eq!(
            plain(text, false),
            "SELECT value->>0 FROM jsonb_array_elements($1::jsonb) WHERE x IN \
             (SELECT value->>1 FROM jsonb_array_elements($1::jsonb))"
        );
        assert_eq!(
            plain("SELECT value->>0 FROM JSON_ROWS($2) WHERE y = $1", true),
            "SELECT value->>0 FROM jsonb_each($2) WHERE y = $1",
            "numbered out of order: kept as numbered"
        );
        assert_eq!(
            json(&[("a\"b", Some(Shown(7)), None::<i64>)]),
            r#"[["a\"b","7",null]]"#
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
