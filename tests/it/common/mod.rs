//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod corpus;
pub mod dav;
pub mod groupware;
pub mod items;
pub mod mock;
pub mod pg;
pub mod proxy;
pub mod reference;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the `tandem` binary with `args` and the config `config`.
pub fn tandem(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("TANDEM_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run tandem")
}

/// The JSON a command printed (`--json`).
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// One pair's report in `sync --json` output.
pub fn pair_report<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pair"] == id)
        .unwrap_or_else(|| panic!("no pair {id} in {v}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn event(uid: &str, summary: &str, organizer: Option<&str>) -> String {
    let org = organizer
        .map(|o| format!("ORGANIZER;CN=\"Doe, Jane\":mailto:{o}\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@old.example\r\n"))
        .unwrap_or_default();
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n\
         DTSTART:20260110T100000Z\r\nDTEND:20260110T110000Z\r\nSUMMARY:{summary}\r\n{org}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// A vdir migration set-up: `old/<user>/`, `new/<user>/`, and a config with one pair per user.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    pub fn new(users: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut toml = String::from(
            "[state]\nurl = \"sqlite://state/tandem.db\"\n\n[servers.old]\nkind = \"vdir\"\npath = \"old\"\n\n\
             [servers.new]\nkind = \"vdir\"\npath = \"new\"\n\n[rewrite]\ndomains = { \"old.example\" = \"new.example\" }\n",
        );
        for u in users {
            std::fs::create_dir_all(dir.path().join("old").join(u)).unwrap();
            std::fs::create_dir_all(dir.path().join("new").join(u)).unwrap();
            toml.push_str(&format!(
                "\n[[pairs]]\nid = \"{u}\"\nsource = \"old:/{u}/\"\ntarget = \"new:/{u}/\"\n"
            ));
        }
        let config = dir.path().join("tandem.toml");
        std::fs::write(&config, toml).unwrap();
        Setup { dir, config }
    }

    pub fn source(&self, user: &str) -> PathBuf {
        self.dir.path().join("old").join(user)
    }

    pub fn target(&self, user: &str) -> PathBuf {
        self.dir.path().join("new").join(user)
    }

    pub fn put(&self, user: &str, name: &str, body: &str) {
        std::fs::write(self.source(user).join(name), body).unwrap();
    }

    /// File name → body of every item in a folder.
    pub fn files(dir: &Path) -> std::collections::BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                )
            })
            .collect()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        tandem(&self.config, args)
    }
}

/// `tandem -v run` with the config, on a port of its own.
pub fn spawn_run(config: &std::path::Path) -> Child {
    // Tests run side by side: each service takes a port of its own.
    let toml = std::fs::read_to_string(config).unwrap();
    if !toml.contains("[http]") {
        std::fs::write(
            config,
            format!("{toml}\n[http]\nlisten = \"127.0.0.1:0\"\n"),
        )
        .unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(config)
        .args(["-v", "run"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tandem run")
}

/// Sends SIGTERM and waits (bounded, so a hang fails the test instead of stalling it).
pub fn stop(child: &mut Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        assert!(
            Instant::now() < deadline,
            "tandem run did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request; returns status and body.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    exchange(s, port, method, path, headers)
}

/// One HTTPS/1.1 request to 127.0.0.1, trusting only the CA certificate in `ca` (PEM).
pub fn https(port: u16, ca: &Path, method: &str, path: &str) -> (u16, String) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = "127.0.0.1".try_into().unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    exchange(rustls::StreamOwned::new(conn, tcp), port, method, path, &[])
}

fn exchange(
    mut s: impl Read + Write,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // A TLS peer may close without close_notify; what arrived is the answer.
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Bodies arrive chunked or whole; de-chunk when needed.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (code, body)
}

/// Polls `f` every 200 ms until it holds; fails the test after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `n` pairs `u00`, `u01`, … over the config's servers `source` and `target` (on `source` and
/// `target`): a calendar on each side and one item in each source. Returns their `[[pairs]]`
/// and calendars (source, target).
pub async fn radicale_pairs(
    source: &dav::DavServer,
    target: &dav::DavServer,
    n: usize,
) -> (
    String,
    Vec<(
        tandem::domain::types::CalendarPath,
        tandem::domain::types::CalendarPath,
    )>,
) {
    use tandem::store::CalendarStore;
    let src = source.store();
    let (mut config, mut cals) = (String::new(), Vec::new());
    for i in 0..n {
        let user = format!("u{i:02}");
        let s: tandem::domain::types::CalendarPath =
            source.make_calendar(&user, "calendar").parse().unwrap();
        let t: tandem::domain::types::CalendarPath =
            target.make_calendar(&user, "calendar").parse().unwrap();
        src.create(
            &s,
            "first.ics",
            &event(&format!("first-{i}"), "First", None),
        )
        .await
        .unwrap();
        config.push_str(&format!(
            "\n[[pairs]]\nid = \"{user}\"\nsource = \"source:{s}\"\ntarget = \"target:{t}\"\n"
        ));
        cals.push((s, t));
    }
    (config, cals)
}
