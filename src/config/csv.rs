//! Reading the CSV files a config names (pairs, address maps): rows of a given width, each
//! problem with its line.

use std::path::Path;

/// Records as (line number, fields).
type CsvRows = Vec<(u64, Vec<String>)>;

/// Reads a headerless CSV with exactly `columns` fields per record; an error is (line, reason).
pub(super) fn read_csv(
    path: &Path,
    columns: std::ops::RangeInclusive<usize>,
) -> Result<CsvRows, (u64, String)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(true)
        .from_path(path)
        .map_err(|e| (0, e.to_string()))?;
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| (e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        if !columns.contains(&rec.len()) {
            let expected = match columns.end() - columns.start() {
                0 => columns.start().to_string(),
                1 => format!("{} or {}", columns.start(), columns.end()),
                _ => format!("{} to {}", columns.start(), columns.end()),
            };
            return Err((
                line,
                format!(
                    "expected {expected} comma-separated fields, found {}",
                    rec.len()
                ),
            ));
        }
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(rows)
}
