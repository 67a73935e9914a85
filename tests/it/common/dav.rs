//! Real CalDAV servers for tests and benches: Radicale and Xandikos from PyPI, installed into a
//! virtualenv under `target/` on first use, and SOGo and DAViCal from Debian ([`groupware`]),
//! each started on a free loopback port with its own storage and stopped on drop. A missing
//! package or a failed install fails the test with the reason; nothing is skipped.
//!
//! [`groupware`]: super::groupware

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the virtualenv holds; a change re-installs.
const REQUIREMENTS: &[&str] = &[
    "radicale==3.9.0",
    // With WebDAV-Push (pywebpush, py-vapid, cryptography).
    "xandikos[webdav-push]==0.4.10",
    "vdirsyncer==0.21.0",
    // The independent parser of the fidelity tests.
    "icalendar==7.3.0",
];

pub const USER: &str = "tandem";
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// `target/` of this build (benches and integration tests both get CARGO_TARGET_TMPDIR).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .to_path_buf()
}

/// The virtualenv's `bin/`, installing it if needed. Safe across parallel test processes.
pub fn venv_bin() -> PathBuf {
    let venv = target_dir().join("dav-venv");
    let marker = venv.join("tandem-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return venv.join("bin");
    }
    std::fs::create_dir_all(target_dir()).unwrap();
    let lock = std::fs::File::create(target_dir().join("dav-venv.lock"))
        .expect("create the venv lock file");
    lock.lock().expect("lock the venv");
    if !std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        let run = |cmd: &mut Command, what: &str| {
            let out = cmd.output().unwrap_or_else(|e| {
                panic!(
                    "{what}: cannot run {:?}: {e} (python3 with venv and pip is required)",
                    cmd.get_program()
                )
            });
            assert!(
                out.status.success(),
                "{what} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "creating the virtualenv for the CalDAV test servers",
        );
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(REQUIREMENTS),
            "pip install of the CalDAV test servers",
        );
        run(
            Command::new(venv.join("bin/python"))
                .arg(test_ca_script())
                .arg("ca")
                .arg(venv.join("test-ca")),
            "making the test CA and adding it to the virtualenv's certifi bundle",
        );
        std::fs::write(&marker, &wanted).unwrap();
    }
    venv.join("bin")
}

fn test_ca_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/common/test_ca.py")
}

/// The test CA's certificate (PEM): Xandikos in the virtualenv trusts it.
pub fn test_ca() -> PathBuf {
    venv_bin().parent().unwrap().join("test-ca/ca.pem")
}

/// A certificate for 127.0.0.1 signed by the test CA, written into `dir`: (cert, key).
pub fn leaf_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = venv_bin();
    let out = Command::new(bin.join("python"))
        .arg(test_ca_script())
        .arg("leaf")
        .arg(bin.parent().unwrap().join("test-ca"))
        .arg(dir)
        .output()
        .expect("run python for the test certificate");
    assert!(
        out.status.success(),
        "making a test certificate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("cert.pem"), dir.join("key.pem"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Radicale,
    Xandikos,
    Sogo,
    Davical,
}

/// Every kind, for suites that run on each.
pub const ALL: [Kind; 4] = [Kind::Radicale, Kind::Xandikos, Kind::Sogo, Kind::Davical];

/// A running server with its own storage.
pub struct DavServer {
    pub kind: Kind,
    pub port: u16,
    /// Lines added to Radicale's `[server]` section (limits such as `max_content_length`).
    server_extra: String,
    /// Radicale's rights as its `from_file` rules; `None`: every user may do anything.
    rights: Option<String>,
    /// Xandikos serves WebDAV-Push (and pushes to loopback).
    pub push: bool,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// SOGo's or DAViCal's processes and database.
    pub groupware: Option<super::groupware::Groupware>,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl DavServer {
    pub fn radicale() -> DavServer {
        Self::start_new(Kind::Radicale)
    }

    pub fn xandikos() -> DavServer {
        Self::start_new(Kind::Xandikos)
    }

    /// A Xandikos that pushes changes (WebDAV-Push) to subscribers, loopback ones included.
    pub fn xandikos_push() -> DavServer {
        let mut s = Self::unstarted(Kind::Xandikos, "");
        s.push = true;
        s.dir = tempfile::tempdir().unwrap();
        s.start();
        s
    }

    pub fn sogo() -> DavServer {
        Self::start_new(Kind::Sogo)
    }

    pub fn davical() -> DavServer {
        Self::start_new(Kind::Davical)
    }

    /// A Radicale with `extra` lines in its `[server]` section.
    pub fn radicale_with(extra: &str) -> DavServer {
        Self::start_with(Kind::Radicale, extra)
    }

    /// A Radicale whose users may only do what `rules` (its `from_file` rights) allow.
    pub fn radicale_with_rights(rules: &str) -> DavServer {
        let mut s = Self::unstarted(Kind::Radicale, "");
        s.rights = Some(rules.to_string());
        s.start();
        s
    }

    pub fn start_new(kind: Kind) -> DavServer {
        Self::start_with(kind, "")
    }

    fn start_with(kind: Kind, server_extra: &str) -> DavServer {
        let mut s = Self::unstarted(kind, server_extra);
        s.start();
        s
    }

    fn unstarted(kind: Kind, server_extra: &str) -> DavServer {
        DavServer {
            kind,
            port: free_port(),
            server_extra: server_extra.to_string(),
            rights: None,
            push: false,
            dir: super::groupware::shared_dir(),
            child: None,
            groupware: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Whether the server checks credentials (Xandikos has no auth).
    pub fn needs_auth(&self) -> bool {
        self.kind != Kind::Xandikos
    }

    /// Where a calendar named `name` for `user` lives on this server.
    pub fn calendar_path(&self, user: &str, name: &str) -> String {
        match self.kind {
            Kind::Radicale => format!("/{user}/{name}/"),
            // Xandikos serves one principal; users become calendar names under it.
            Kind::Xandikos => format!("/user/calendars/{user}-{name}/"),
            Kind::Sogo => format!("/SOGo/dav/{user}/Calendar/{name}/"),
            Kind::Davical => format!("/caldav.php/{user}/{name}/"),
        }
    }

    /// The name of the calendar a user has from the start (SOGo's own), or a tests' usual one.
    pub fn default_calendar(&self) -> &'static str {
        match self.kind {
            Kind::Sogo => "personal",
            _ => "calendar",
        }
    }

    /// A user's address on this server (groupware servers know their users' addresses).
    pub fn address(&self, user: &str) -> String {
        format!("{user}@{}", super::groupware::MAIL_DOMAIN)
    }

    /// (Re)starts the server on its port over its storage.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let start = match self.kind {
            Kind::Sogo => super::groupware::start_sogo,
            Kind::Davical => super::groupware::start_davical,
            _ => return self.start_python(),
        };
        assert!(self.groupware.is_none(), "{:?} starts once", self.kind);
        // A port taken meanwhile by another test's server: another port.
        for _ in 0..4 {
            match start(self.port, self.dir.path()) {
                Ok(g) => {
                    self.groupware = Some(g);
                    return;
                }
                Err(super::groupware::NotStarted::PortTaken) => self.port = free_port(),
                Err(super::groupware::NotStarted::Failed(why)) => panic!("{why}"),
            }
        }
        panic!("{:?}: every port tried was taken", self.kind);
    }

    /// Starts Radicale or Xandikos from the test virtualenv.
    fn start_python(&mut self) {
        let bin = venv_bin();
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let mut cmd = match self.kind {
            Kind::Radicale => {
                let users = self.dir.path().join("users");
                std::fs::write(&users, format!("{USER}:{PASSWORD}\n")).unwrap();
                let config = self.dir.path().join("radicale.conf");
                let rights = match &self.rights {
                    None => "type = authenticated".to_string(),
                    Some(rules) => {
                        let file = self.dir.path().join("rights");
                        std::fs::write(&file, rules).unwrap();
                        format!("type = from_file\nfile = {}", file.display())
                    }
                };
                std::fs::write(
                    &config,
                    format!(
                        "[server]\nhosts = 127.0.0.1:{}\n{}\n[auth]\ntype = htpasswd\nhtpasswd_filename = {}\n\
                         htpasswd_encryption = plain\ndelay = 0\n[rights]\n{}\n\
                         [storage]\nfilesystem_folder = {}\n[logging]\nlevel = warning\n",
                        self.port,
                        self.server_extra,
                        users.display(),
                        rights,
                        data.display()
                    ),
                )
                .unwrap();
                let mut c = Command::new(bin.join("radicale"));
                c.arg("--config").arg(&config);
                c
            }
            Kind::Xandikos => {
                let mut c = Command::new(bin.join("xandikos"));
                c.args(["serve", "--autocreate", "-l", "127.0.0.1", "-p"])
                    .arg(self.port.to_string())
                    .arg("-d")
                    .arg(&data);
                if self.push {
                    c.arg("--webdav-push")
                        .arg("--state-dir")
                        .arg(self.dir.path().join("state"))
                        .env("XANDIKOS_ALLOW_INTERNAL_PUSH_RESOURCE", "1");
                }
                c
            }
            Kind::Sogo | Kind::Davical => unreachable!("started above"),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", self.kind));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{:?} exited at start ({status}):\n{}",
                    self.kind,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not listen on port {} within 60 s:\n{}",
                self.kind,
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.groupware = None;
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("server.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// `curl`-free raw HTTP for set-up: MKCOL/MKCALENDAR with Basic auth.
    fn raw(&self, method: &str, path: &str) -> u16 {
        raw_request(self.port, method, path, "0")
    }

    /// Deletes a collection and everything in it; returns the HTTP status.
    pub fn delete_collection(&self, path: &str) -> u16 {
        self.raw("DELETE", path)
    }

    /// Creates a calendar (and its parent collection, or its user, where the server needs one);
    /// returns its path. SOGo makes each user's `personal` calendar itself.
    pub fn make_calendar(&self, user: &str, name: &str) -> String {
        let path = self.calendar_path(user, name);
        if let Some(g) = &self.groupware {
            match self.kind {
                Kind::Sogo => super::groupware::sogo_user(g, user),
                _ => super::groupware::davical_user(g, user),
            }
        }
        if self.kind == Kind::Sogo && name == "personal" {
            let code = self.raw("PROPFIND", &path);
            assert_eq!(code, 207, "PROPFIND {path}\n{}", self.log());
            return path;
        }
        if self.kind == Kind::Radicale {
            let parent = format!("/{user}/");
            let code = self.raw("MKCOL", &parent);
            assert!(
                code == 201 || code == 405,
                "MKCOL {parent}: {code}\n{}",
                self.log()
            );
        }
        let code = self.raw("MKCALENDAR", &path);
        assert_eq!(code, 201, "MKCALENDAR {path}\n{}", self.log());
        path
    }

    /// A `[servers.NAME]` config section for this server.
    pub fn config_section(&self, name: &str, password_file: &Path) -> String {
        let auth = if self.needs_auth() {
            format!(
                "username = \"{USER}\"\npassword_file = \"{}\"\n",
                password_file.display()
            )
        } else {
            String::new()
        };
        format!(
            "[servers.{name}]\nkind = \"caldav\"\nurl = \"{}\"\n{auth}",
            self.url()
        )
    }
}

/// One request with the test credentials and no body; its HTTP status (0 if none came).
pub fn raw_request(port: u16, method: &str, path: &str, depth: &str) -> u16 {
    dav_request(port, method, path, depth, "").0
}

/// One request with the test credentials and an XML `body`: its HTTP status (0 if none came)
/// and the answer's text (headers included).
pub fn dav_request(port: u16, method: &str, path: &str, depth: &str, body: &str) -> (u16, String) {
    use base64::Engine as _;
    use std::io::Write;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    // One write: PHP's built-in server misreads a method split over two packets.
    let kind = match body {
        "" => "",
        _ => "Content-Type: application/xml; charset=utf-8\r\n",
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {auth}\r\n\
         Depth: {depth}\r\n{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = (answer.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

impl Drop for DavServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl DavServer {
    /// A store for this server as tandem would open it, with the test credentials.
    pub fn store(&self) -> std::sync::Arc<tandem::store::caldav::CaldavStore> {
        self.store_with(tandem::store::http::HttpSettings::default())
    }

    pub fn store_with(
        &self,
        settings: tandem::store::http::HttpSettings,
    ) -> std::sync::Arc<tandem::store::caldav::CaldavStore> {
        let password = secrecy::SecretString::from(PASSWORD.to_string());
        let creds = self.needs_auth().then_some((USER, &password));
        std::sync::Arc::new(
            tandem::store::caldav::CaldavStore::new(&self.url(), creds, settings)
                .expect("open the caldav store"),
        )
    }
}

/// Writes a password file and a config with one pair `alice` from `source:SCAL` to
/// `target:TCAL` (state in `dir`), plus `extra` TOML; returns the config's path.
pub fn pair_config(
    dir: &Path,
    source: &DavServer,
    target: &DavServer,
    scal: &str,
    tcal: &str,
    extra: &str,
) -> PathBuf {
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let config = dir.join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nurl = \"sqlite://{}\"\n\n{}\n{}\n{extra}\n[[pairs]]\nid = \"alice\"\nsource = \"source:{scal}\"\ntarget = \"target:{tcal}\"\n",
            dir.join("state.db").display(),
            source.config_section("source", &pw),
            target.config_section("target", &pw),
        ),
    )
    .unwrap();
    config
}

/// Starts `tandem sync` on `config` in the background (output captured).
pub fn spawn_sync(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(config)
        .arg("sync")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tandem sync")
}

/// Waits until `cal` holds at least `n` items while `sync` is still running.
pub async fn wait_for_items(
    store: &dyn tandem::store::CalendarStore,
    cal: &tandem::domain::types::CalendarPath,
    n: usize,
    sync: &mut Child,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.list(cal).await.map(|l| l.len()).unwrap_or(0) < n {
        assert!(Instant::now() < deadline, "the pass never got going");
        assert!(
            sync.try_wait().unwrap().is_none(),
            "the pass finished before {n} items landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The href and text of every item in `cal`.
pub async fn read_all(
    store: &dyn tandem::store::CalendarStore,
    cal: &tandem::domain::types::CalendarPath,
) -> Vec<(tandem::domain::types::Href, String)> {
    let hrefs: Vec<_> = store
        .list(cal)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.href)
        .collect();
    let mut out = Vec::with_capacity(hrefs.len());
    for chunk in hrefs.chunks(100) {
        for (href, got) in store.fetch(cal, chunk).await.unwrap() {
            let data = got.unwrap_or_else(|e| panic!("{href}: {e}")).data;
            out.push((href, data));
        }
    }
    out
}

/// Asserts `cal` holds `n` items, one per UID.
pub async fn assert_one_copy_each(
    store: &dyn tandem::store::CalendarStore,
    cal: &tandem::domain::types::CalendarPath,
    n: usize,
) {
    let items = read_all(store, cal).await;
    assert_eq!(items.len(), n, "one copy of every item");
    let mut uids = std::collections::BTreeSet::new();
    for (href, data) in items {
        let item = tandem::domain::item::Item::parse(&data).unwrap();
        assert!(
            uids.insert(item.uid().to_string()),
            "{href}: a second copy of {}",
            item.uid()
        );
    }
}

/// Two Radicale servers with a calendar for alice on each, `items` generated items in the source
/// calendar, and the pair's config (plus `extra` TOML) in a temporary folder.
pub struct SeededPair {
    pub source: DavServer,
    pub target: DavServer,
    pub scal: tandem::domain::types::CalendarPath,
    pub tcal: tandem::domain::types::CalendarPath,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub async fn seeded_pair(items: usize, extra: &str) -> SeededPair {
    seeded_pair_on(Kind::Radicale, Kind::Radicale, items, extra).await
}

/// [`seeded_pair`] from a server of kind `from` to one of kind `to`.
pub async fn seeded_pair_on(from: Kind, to: Kind, items: usize, extra: &str) -> SeededPair {
    use tandem::store::CalendarStore;
    let source = DavServer::start_new(from);
    let target = DavServer::start_new(to);
    let scal: tandem::domain::types::CalendarPath = source
        .make_calendar("alice", source.default_calendar())
        .parse()
        .unwrap();
    let tcal: tandem::domain::types::CalendarPath = target
        .make_calendar("alice", target.default_calendar())
        .parse()
        .unwrap();
    let src = source.store();
    for i in 0..items {
        let (name, body) = super::items::item(i, 0);
        src.create(&scal, &name, &body).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = pair_config(
        dir.path(),
        &source,
        &target,
        scal.as_str(),
        tcal.as_str(),
        extra,
    );
    SeededPair {
        source,
        target,
        scal,
        tcal,
        dir,
        config,
    }
}
