//! SOGo and DAViCal, the groupware servers organizations run, as private instances on loopback
//! (Debian's `sogo`, `davical` and `memcached` packages; `.ci/run` installs them). Each instance
//! has its own database in the test process's PostgreSQL cluster, its own users (rows of the
//! server's own user tables, as its admin pages write them) and, for SOGo, its own memcached and
//! an SMTP capture the tests read: no mail leaves the machine. Every process is stopped when the
//! test process is gone, however it ended (SOGo's workers ignore SIGTERM: they get SIGKILL).
//!
//! The service account (`dav::USER`) may write every user's calendars: SOGo's super user,
//! DAViCal's Admin role. Users' addresses are `USER@MAIL_DOMAIN`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dav::{PASSWORD, USER, free_port};
use super::pg;

/// The domain of every user's address on a groupware server.
pub const MAIL_DOMAIN: &str = "example.org";

/// The tables SOGo makes on first use; made first, or its workers race to make them.
const SOGO_TABLES: &str = "
CREATE TABLE sogo_folder_info (c_folder_id SERIAL, c_path VARCHAR(255) PRIMARY KEY,
  c_path1 VARCHAR(255) NOT NULL, c_path2 VARCHAR(255), c_path3 VARCHAR(255), c_path4 VARCHAR(255),
  c_foldername VARCHAR(255) NOT NULL, c_location VARCHAR(2048), c_quick_location VARCHAR(2048),
  c_acl_location VARCHAR(2048), c_folder_type VARCHAR(255) NOT NULL);
CREATE TABLE sogo_sessions_folder (c_id VARCHAR(255) PRIMARY KEY, c_value VARCHAR(4096) NOT NULL,
  c_creationdate INTEGER NOT NULL, c_lastseen INTEGER NOT NULL);
CREATE TABLE sogo_user_profile (c_uid VARCHAR(255) PRIMARY KEY, c_defaults TEXT, c_settings TEXT);
CREATE TABLE sogo_users (c_uid VARCHAR(128) PRIMARY KEY, c_name VARCHAR(128),
  c_password VARCHAR(128), c_cn VARCHAR(128), mail VARCHAR(128));";

/// A running groupware server's processes and database.
pub struct Groupware {
    pub database: String,
    /// Mail the server sent (SOGo), whole SMTP transactions.
    pub mail: Arc<Mutex<Vec<String>>>,
    children: Vec<Child>,
}

impl Drop for Groupware {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

/// A folder other users (`sogo`, `www-data`) may enter and read.
pub fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    dir
}

/// Runs `script` (which starts a server and sets `$server` to its PID) under `sh` beside the
/// test process. The server and every process under it get SIGKILL once the test process is
/// gone or the `sh` gets SIGTERM ([`Groupware`]'s drop).
fn watched(script: &str, log: &Path) -> Child {
    let full = format!(
        "tree() {{ for c in $(pgrep -P $1); do tree $c; done; kill -KILL $1 2>/dev/null; }}\n\
         trap 'tree $server; exit 0' TERM\n{script}\n\
         while kill -0 {parent} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.2; done\n\
         tree $server\n",
        parent = std::process::id()
    );
    let log = std::fs::File::create(log).unwrap();
    Command::new("sh")
        .args(["-c", &full])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start sh")
}

/// An SMTP server that answers everything and keeps each message.
fn smtp_capture() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mail = Arc::new(Mutex::new(Vec::new()));
    let kept = mail.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let _ = smtp_session(conn, &kept);
            });
        }
    });
    (port, mail)
}

fn smtp_session(conn: TcpStream, kept: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut lines = BufReader::new(conn);
    out.write_all(b"220 capture ESMTP\r\n")?;
    let mut message = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.trim_end().to_ascii_uppercase();
        message.push_str(&line);
        if verb == "DATA" {
            out.write_all(b"354 go on\r\n")?;
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 || line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(&line);
            }
            kept.lock().unwrap().push(std::mem::take(&mut message));
            out.write_all(b"250 kept\r\n")?;
        } else if verb == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if verb.starts_with("EHLO") {
            out.write_all(b"250-capture\r\n250 8BITMIME\r\n")?;
        } else {
            out.write_all(b"250 ok\r\n")?;
        }
    }
}

/// Why a server did not start: its port was taken between choosing and binding it (another
/// test's server got there first), or something else, with the server's log.
pub enum NotStarted {
    PortTaken,
    Failed(String),
}

/// Waits until `ready` holds, for 60 s at most; a server that says its port is taken fails at
/// once.
fn wait(what: &str, log: &Path, mut ready: impl FnMut() -> bool) -> Result<(), NotStarted> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if said.contains("unable to listen on specified port")
            || said.contains("Address already in use")
        {
            return Err(NotStarted::PortTaken);
        }
        if Instant::now() >= deadline {
            return Err(NotStarted::Failed(format!(
                "{what} did not answer within 60 s:\n{said}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Starts SOGo on `port` with its files in `dir`.
pub fn start_sogo(port: u16, dir: &Path) -> Result<Groupware, NotStarted> {
    let cluster = pg::shared();
    let db = cluster.new_database();
    cluster.sql(&db, SOGO_TABLES);
    cluster.sql(
        &db,
        &format!(
            "INSERT INTO sogo_users VALUES ('{USER}', '{USER}', '{PASSWORD}', 'tandem', '{USER}@{MAIL_DOMAIN}')"
        ),
    );
    let memcached = free_port();
    let (smtp, mail) = smtp_capture();
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let chown = Command::new("chown")
        .arg("sogo")
        .arg(&run)
        .status()
        .unwrap();
    assert!(chown.success(), "chown to sogo");
    let url = format!(
        "postgresql://{}:{}@127.0.0.1:{}/{db}",
        pg::SUPERUSER,
        pg::PASSWORD,
        cluster.port
    );
    let sources = format!(
        "({{type = sql; id = users; viewURL = \"{url}/sogo_users\"; canAuthenticate = YES; \
         isAddressBook = NO; userPasswordAlgorithm = plain;}})"
    );
    let args = [
        ("WONoDetach", "YES".to_string()),
        ("WOPort", format!("127.0.0.1:{port}")),
        ("WOLogFile", "-".into()),
        ("WOPidFile", run.join("sogo.pid").display().to_string()),
        ("WOWorkersCount", "3".into()),
        ("SOGoProfileURL", format!("{url}/sogo_user_profile")),
        ("OCSFolderInfoURL", format!("{url}/sogo_folder_info")),
        (
            "OCSSessionsFolderURL",
            format!("{url}/sogo_sessions_folder"),
        ),
        ("SOGoMemcachedHost", format!("127.0.0.1:{memcached}")),
        ("SOGoMailDomain", MAIL_DOMAIN.into()),
        ("SOGoMailingMechanism", "smtp".into()),
        ("SOGoSMTPServer", format!("smtp://127.0.0.1:{smtp}")),
        ("SOGoAppointmentSendEMailNotifications", "YES".into()),
        ("SOGoTimeZone", "UTC".into()),
        ("SOGoSuperUsernames", format!("({USER})")),
        ("SOGoUserSources", sources),
    ];
    let quoted: Vec<String> = args
        .iter()
        .map(|(k, v)| format!("-{k} '{}'", v.replace('\'', "'\\''")))
        .collect();
    let log = dir.join("server.log");
    let cache = watched(
        &format!("memcached -u nobody -l 127.0.0.1 -p {memcached} &\nserver=$!"),
        &dir.join("memcached.log"),
    );
    let sogo = watched(
        &format!(
            "runuser -u sogo -- env HOME={} /usr/sbin/sogod {} &\nserver=$!",
            run.display(),
            quoted.join(" ")
        ),
        &log,
    );
    let g = Groupware {
        database: db,
        mail,
        children: vec![sogo, cache],
    };
    // Its port opens before its workers answer.
    wait("SOGo", &log, || {
        super::dav::raw_request(port, "PROPFIND", &format!("/SOGo/dav/{USER}/"), "0") == 207
    })?;
    Ok(g)
}

/// Adds a SOGo user (a row of its user table); its default calendar is `personal`.
pub fn sogo_user(g: &Groupware, user: &str) {
    pg::shared().sql(
        &g.database,
        &format!(
            "INSERT INTO sogo_users VALUES ('{user}', '{user}', '{PASSWORD}', '{user}', '{user}@{MAIL_DOMAIN}') \
             ON CONFLICT DO NOTHING"
        ),
    );
}

/// Starts DAViCal (PHP's own server) on `port` with its files in `dir`.
pub fn start_davical(port: u16, dir: &Path) -> Result<Groupware, NotStarted> {
    let cluster = pg::shared();
    let db = pg::unique_name();
    // DAViCal's own schema script, which also makes its two roles (once per cluster).
    let lock = std::fs::File::create(std::env::temp_dir().join("tandem-davical-schema.lock"))
        .expect("create the schema lock");
    lock.lock().expect("lock");
    // Its roles sign in over TCP, as the cluster asks, with the superuser's password.
    for role in ["davical_dba", "davical_app"] {
        if cluster.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
        ) == "0"
        {
            cluster.sql(
                "postgres",
                &format!("CREATE ROLE {role} LOGIN PASSWORD '{}'", pg::PASSWORD),
            );
        }
    }
    let out = Command::new("sh")
        .arg("/usr/share/davical/dba/create-database.sh")
        .arg(&db)
        .arg(PASSWORD)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", pg::SUPERUSER)
        .env("PGPASSWORD", pg::PASSWORD)
        .output()
        .expect("run DAViCal's create-database.sh (Debian's davical package)");
    drop(lock);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("has been set"),
        "DAViCal's create-database.sh failed:\n{said}"
    );
    // The service account is the admin DAViCal made, renamed.
    cluster.sql(
        &db,
        &format!("UPDATE usr SET username = '{USER}', password = '**{PASSWORD}', email = '{USER}@{MAIL_DOMAIN}' WHERE user_no = 1"),
    );
    let name = dir.join("instance");
    std::fs::write(
        dir.join("instance-conf.php"),
        format!(
            "<?php\n$c->pg_connect[] = 'host=127.0.0.1 port={} dbname={db} user={} password={}';\n\
             $c->admin_email = 'admin@{MAIL_DOMAIN}';\n$c->system_name = 'DAViCal';\n\
             $_SERVER['SERVER_NAME'] = '127.0.0.1';\n$c->domain_name = '127.0.0.1';\n",
            cluster.port,
            pg::SUPERUSER,
            pg::PASSWORD
        ),
    )
    .unwrap();
    // DAViCal takes its config from /etc/davical/<SERVER_NAME>-conf.php: a relative name leads
    // it here. It takes the path from REQUEST_URI, not PATH_INFO.
    std::fs::write(
        dir.join("front.php"),
        format!(
            "<?php\n$_SERVER['SCRIPT_NAME'] = '/caldav.php';\n$_SERVER['SERVER_NAME'] = '../..{}';\n\
             unset($_SERVER['PATH_INFO']);\nchdir('/usr/share/davical/htdocs');\n\
             require '/usr/share/davical/htdocs/caldav.php';\n",
            name.display()
        ),
    )
    .unwrap();
    let log = dir.join("server.log");
    let php = watched(
        &format!(
            "cd {}\nrunuser -u www-data -- env PHP_CLI_SERVER_WORKERS=4 php -S 127.0.0.1:{port} front.php &\nserver=$!",
            dir.display()
        ),
        &log,
    );
    let g = Groupware {
        database: db,
        mail: Arc::default(),
        children: vec![php],
    };
    wait("DAViCal", &log, || {
        super::dav::raw_request(port, "PROPFIND", &format!("/caldav.php/{USER}/"), "0") == 207
    })?;
    Ok(g)
}

/// Adds a DAViCal user and its principal (as DAViCal's admin pages do).
pub fn davical_user(g: &Groupware, user: &str) {
    let cluster = pg::shared();
    let known = cluster.sql(
        &g.database,
        &format!("SELECT count(*) FROM usr WHERE username = '{user}'"),
    );
    if known == "0" {
        cluster.sql(
            &g.database,
            &format!(
                "INSERT INTO usr (username, password, fullname, email) VALUES ('{user}', '**{PASSWORD}', '{user}', '{user}@{MAIL_DOMAIN}');\
                 INSERT INTO principal (type_id, user_no, displayname, default_privileges) \
                 VALUES (1, currval('usr_user_no_seq'), '{user}', '000000000000000000000000')"
            ),
        );
    }
}
