//! Statements over many rows at once: a batch of mappings, pending creates or index rows is one
//! statement per chunk, not one per row, so a pass's bookkeeping costs a few round trips to the
//! database whatever its size.

/// Values bound per statement at most. Far under SQLite's limit (32,766) and PostgreSQL's
/// (65,535): SQLite finds each `$N` of a statement by a scan of its parameters, so binding n
/// values costs n²; around 256 that scan costs about what one more statement does.
const VALUES_PER_STATEMENT: usize = 256;

/// The rows of `items` in chunks whose `cols` values each stay under both backends' limits.
pub(super) fn chunks<T>(items: &[T], cols: usize) -> std::slice::Chunks<'_, T> {
    items.chunks((VALUES_PER_STATEMENT / cols.max(1)).max(1))
}

/// `($first, $first+1, …), (…)`: `rows` groups of `cols` placeholders numbered from `first`.
pub(super) fn groups(rows: usize, cols: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * cols + c).to_string());
        }
        out.push(')');
    }
    out
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
    fn groups_number_placeholders_row_by_row() {
        assert_eq!(groups(2, 3, 2), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(groups(1, 1, 1), "($1)");
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
