//! The independent reference for fidelity: Python's `icalendar` (in the test virtualenv) reads a
//! source and tandem's copies of it and says where they differ beyond the documented rewrites
//! (`ics_compare.py` beside this file says what is compared).

use std::io::Write;
use std::process::{Command, Stdio};

/// One source and what tandem made of it (`None`: tandem rejected it).
#[derive(Clone, serde::Serialize)]
pub struct Case {
    pub name: String,
    pub source: String,
    pub outputs: Option<Vec<String>>,
    /// Whether the copy must keep the source's order (false where a server re-serialises).
    pub order: bool,
}

/// What the reference found for one case.
#[derive(Debug, serde::Deserialize)]
pub struct Verdict {
    pub name: String,
    /// Differences between source and copies; empty when the copies are exact.
    pub problems: Vec<String>,
    /// icalendar's own `Calendar.from_ical` reads the source.
    pub reads: bool,
    /// Every component of the source (VTIMEZONEs aside) has a UID.
    pub uids: bool,
}

/// The rewrite rules the tests use: `old.example` → `new.example` and the corpus's domains.
pub fn domains() -> Vec<(String, String)> {
    [
        "old.example",
        "example.com",
        "example.org",
        "host.com",
        "gmail.com",
        "google.com",
        "mozilla.org",
        "test.com",
        "example.net",
    ]
    .iter()
    .map(|d| {
        let new = if *d == "old.example" {
            "new.example".to_string()
        } else {
            format!("new.{d}")
        };
        (d.to_string(), new)
    })
    .collect()
}

pub fn rewriter() -> tandem::domain::item::Rewriter {
    tandem::domain::item::Rewriter::new(domains(), [])
}

/// Runs `script` in the test virtualenv's Python with `input` as JSON on stdin; its stdout, read
/// as JSON. `what` names the run in the failure message.
pub fn python<T: serde::de::DeserializeOwned>(
    what: &str,
    script: &str,
    input: &impl serde::Serialize,
) -> T {
    let mut child = Command::new(super::dav::venv_bin().join("python"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the virtualenv's python");
    let mut stdin = child.stdin.take().unwrap();
    let body = serde_json::to_vec(input).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("feed python");
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the reference over `cases` in one Python process.
pub fn compare(cases: &[Case]) -> Vec<Verdict> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/common/ics_compare.py"
    );
    let job = serde_json::json!({
        "domains": domains().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "cases": cases,
    });
    let mut child = Command::new(super::dav::venv_bin().join("python"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the virtualenv's python");
    let mut stdin = child.stdin.take().unwrap();
    let body = serde_json::to_vec(&job).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("feed the reference");
    assert!(
        out.status.success(),
        "the icalendar reference failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Verdict> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts.len(), cases.len());
    verdicts
}

/// tandem's copy of one source text as the engine writes it: parse, rewrite, mark.
pub fn tandem_copy(source: &str) -> Result<Vec<String>, tandem::domain::item::ItemError> {
    let rw = rewriter();
    Ok(tandem::domain::item::Item::split(source)?
        .into_iter()
        .map(|mut item| {
            item.rewrite(&rw);
            item.mark_client_scheduled();
            item.to_ics()
        })
        .collect())
}
