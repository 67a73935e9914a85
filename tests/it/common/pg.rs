//! A throwaway PostgreSQL for tests and benches: Debian's server binaries, a cluster made in a
//! temporary folder owned by the `postgres` user (PostgreSQL refuses to run as root), on a free
//! loopback port, trusting local connections. One cluster serves a test process (each test gets
//! a database of its own) and stops when that process exits; a test that restarts or kills the
//! database starts one of its own. A missing package fails the test with the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The database superuser. Over TCP it signs in with [`PASSWORD`] (scram-sha-256), as a
/// deployed database would ask; the harness itself uses the cluster's socket.
pub const SUPERUSER: &str = "postgres";
pub const PASSWORD: &str = "pg-pass-7d41c9e0b3a2";

pub struct Pg {
    pub port: u16,
    /// Server settings beyond the harness's own (`-c NAME=VALUE` each).
    settings: Vec<String>,
    dir: PathBuf,
    _home: tempfile::TempDir,
    server: Option<Child>,
}

/// Debian's server binaries (`/usr/lib/postgresql/VERSION/bin`), the newest installed.
fn bin(name: &str) -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: the PostgreSQL tests need Debian's `postgresql` package (.ci/run installs it)",
                root.display()
            )
        })
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    root.join(v.to_string()).join("bin").join(name)
}

/// Runs `cmd` as the `postgres` user; panics with its output on failure.
fn as_postgres(program: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{}{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pg {
    /// A new cluster, started.
    pub fn start_new() -> Pg {
        Pg::start_new_with(&[])
    }

    /// A new cluster started with extra `NAME=VALUE` settings.
    pub fn start_new_with(settings: &[&str]) -> Pg {
        let home = tempfile::tempdir().expect("a temporary folder");
        let dir = home.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(home.path())
            .status()
            .expect("chown");
        assert!(chown.success(), "chown to postgres failed");
        let data = dir.to_str().unwrap();
        as_postgres(
            &bin("initdb"),
            &[
                "-D",
                data,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        std::fs::write(home.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        let mut pg = Pg {
            port: super::dav::free_port(),
            settings: settings.iter().map(|s| format!("-c {s}")).collect(),
            dir,
            _home: home,
            server: None,
        };
        pg.start();
        pg.sql(
            "postgres",
            &format!("ALTER USER {SUPERUSER} PASSWORD '{PASSWORD}'"),
        );
        pg
    }

    /// A file holding the superuser's password, for `password_file`.
    pub fn password_file(&self) -> PathBuf {
        self._home.path().join("password")
    }

    /// Starts the server (again) on its port; waits until it answers.
    pub fn start(&mut self) {
        let data = self.dir.to_str().unwrap().to_string();
        // A watcher stops the server and removes its files when the test process is gone,
        // however it ended.
        let script = format!(
            "runuser -u postgres -- {postgres} -D {data} -p {port} -k {data} \
             -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400 {settings} &\n\
             server=$!\n\
             while kill -0 {parent} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 1; done\n\
             if ! kill -0 {parent} 2>/dev/null; then\n\
               kill -INT $(head -1 {data}/postmaster.pid) 2>/dev/null\n\
               wait $server\n\
               rm -rf {home}\n\
             fi\n",
            postgres = bin("postgres").display(),
            port = self.port,
            settings = self.settings.join(" "),
            parent = std::process::id(),
            home = self._home.path().display(),
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postgres");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server at once (`immediate`: no clean shutdown, as a crash would).
    pub fn stop(&mut self) {
        as_postgres(
            &bin("pg_ctl"),
            &[
                "-D",
                self.dir.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        if let Some(mut c) = self.server.take() {
            let _ = c.wait();
        }
    }

    /// Runs one SQL statement as the superuser in `database`.
    pub fn sql(&self, database: &str, statement: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                self.dir.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(statement)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {statement:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new, empty database; its URL for tandem.
    pub fn database(&self) -> String {
        self.url(&self.new_database())
    }

    /// A new, empty database; its name.
    pub fn new_database(&self) -> String {
        let name = unique_name();
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The server's data folder (its `postmaster.pid` names the server process).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.server.is_some() {
            let data = self.dir.to_str().unwrap().to_string();
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                .output();
            if let Some(mut c) = self.server.take() {
                let _ = c.wait();
            }
        }
    }
}

/// A database name no other in this test process has.
pub fn unique_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The cluster this test process shares (started on first use).
pub fn shared() -> &'static Pg {
    static SHARED: OnceLock<Pg> = OnceLock::new();
    SHARED.get_or_init(Pg::start_new)
}
