//! Real-world .ics files (`../shared/corpus/ics`, or `TANDEM_ICS_CORPUS`) go through
//! parse → rewrite → emit → parse: no panic, and every item that parses keeps its identity and
//! content hash, and the sync window judges the copy as it judged the original. Prints how many
//! parsed and every rejected file with its reason.

use std::path::{Path, PathBuf};

use tandem::item::{Item, Rewriter};
use tandem::window::Window;

fn corpus_dir() -> PathBuf {
    match std::env::var_os("TANDEM_ICS_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/ics"),
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus folder {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn corpus_round_trips() {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "the .ics corpus is missing at {} (set TANDEM_ICS_CORPUS)",
        dir.display()
    );
    let mut files = Vec::new();
    walk(&dir, &mut files);
    assert!(!files.is_empty(), "no files under {}", dir.display());

    // Rewrite every address's domain so the round trip exercises the rewriting path everywhere.
    let domains = [
        "example.com",
        "example.org",
        "host.com",
        "gmail.com",
        "google.com",
        "mozilla.org",
        "test.com",
        "example.net",
    ];
    let rw = Rewriter::new(
        domains.iter().map(|d| (d.to_string(), format!("new.{d}"))),
        [],
    );

    let (mut parsed_files, mut items, mut rewritten) = (0, 0, 0);
    // A year either side of a fixed day, so the count printed below is stable.
    let year = std::time::Duration::from_secs(365 * 86_400);
    let window = Window {
        past: Some(year),
        future: Some(year),
    };
    let now = chrono::DateTime::from_timestamp(1_795_262_400, 0).unwrap();
    let mut inside = 0;
    let mut rejected: Vec<(String, String)> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    for file in &files {
        let name = file.strip_prefix(&dir).unwrap().display().to_string();
        let bytes = std::fs::read(file).unwrap();
        let Ok(text) = String::from_utf8(bytes) else {
            rejected.push((name, "not UTF-8".into()));
            continue;
        };
        let result = std::panic::catch_unwind(|| Item::split(&text));
        let split = match result {
            Err(_) => {
                broken.push(format!("{name}: panicked"));
                continue;
            }
            Ok(Err(e)) => {
                rejected.push((name, e.to_string()));
                continue;
            }
            Ok(Ok(v)) if v.is_empty() => {
                rejected.push((name, "no VEVENT, VTODO or VJOURNAL".into()));
                continue;
            }
            Ok(Ok(v)) => v,
        };
        parsed_files += 1;
        for mut item in split {
            items += 1;
            rewritten += item.rewrite(&rw);
            item.mark_client_scheduled(); // as every copy is written
            let (identity, hash) = (item.identity(), item.content_hash());
            // The window judgement never panics, and is the same for the emitted copy.
            let fit = match std::panic::catch_unwind(|| window.fit(&item, now)) {
                Ok(fit) => fit,
                Err(_) => {
                    broken.push(format!(
                        "{name}: uid {:?}: window check panicked",
                        item.uid()
                    ));
                    continue;
                }
            };
            inside += usize::from(fit.is_inside());
            let emitted = item.to_ics();
            match Item::parse(&emitted) {
                Err(e) => broken.push(format!(
                    "{name}: uid {:?}: emitted item does not parse: {e}",
                    item.uid()
                )),
                Ok(back) => {
                    if back.identity() != identity {
                        broken.push(format!(
                            "{name}: uid {:?}: identity changed: {identity} -> {}",
                            item.uid(),
                            back.identity()
                        ));
                    }
                    if back.content_hash() != hash {
                        broken.push(format!(
                            "{name}: uid {:?}: content hash changed in the round trip",
                            item.uid()
                        ));
                    }
                    if window.fit(&back, now) != fit {
                        broken.push(format!(
                            "{name}: uid {:?}: emitted copy is judged differently by the window",
                            item.uid()
                        ));
                    }
                    if back.to_ics() != emitted {
                        broken.push(format!(
                            "{name}: uid {:?}: emitting twice differs",
                            item.uid()
                        ));
                    }
                }
            }
            for line in emitted.split("\r\n") {
                if line.len() > 75 {
                    broken.push(format!(
                        "{name}: uid {:?}: line over 75 octets: {line:?}",
                        item.uid()
                    ));
                }
            }
        }
    }
    println!(
        "corpus {}: {} files, {parsed_files} parsed into {items} items ({rewritten} addresses rewritten, \
         {inside} inside a window of a year either side of 2026-11-21), {} rejected",
        dir.display(),
        files.len(),
        rejected.len()
    );
    for (name, reason) in &rejected {
        println!("  rejected {name}: {reason}");
    }
    assert!(
        broken.is_empty(),
        "round-trip failures:\n{}",
        broken.join("\n")
    );
    assert!(
        parsed_files * 2 > files.len(),
        "fewer than half the corpus parsed: {parsed_files} of {}",
        files.len()
    );
}
