//! WebDAV-Push: `tandem run` over two pairs on Xandikos servers that push and one pair on
//! Radicale (no push), serving https with a certificate from a throwaway CA that Xandikos
//! trusts. Pushes reach tandem through a proxy, so the test can lose them.
//!
//! What must hold: a change is in the target within seconds although the push-driven pairs are
//! polled only every safety interval; a burst of changes makes few passes; a quiet push-driven
//! pair is not polled while the Radicale pair is, at the normal interval; a forged push changes
//! nothing; subscriptions are renewed before they expire; pushes lost while the server restarts
//! are caught up by the safety poll; a pair removed from the config loses its subscription.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem::domain::types::CalendarPath;
use tandem::state::{PushSubscription, State};
use tandem::store::CalendarStore;

use crate::common::dav::{self, DavServer};
use crate::common::proxy::{Mode, Proxy};
use crate::common::{event, https, wait_until};

/// The poll interval of pairs without push, and the safety poll of pairs with it.
const INTERVAL_S: u64 = 4;
const SAFETY_S: u64 = 45;
/// Subscriptions asked for 20 s: renewed every 10 s or so.
const LIFETIME_S: u64 = 20;

struct Run {
    child: Child,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, file: &Path, port: u16, log: &str) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .current_dir(dir)
        .arg("-c")
        .arg(file)
        .args(["-v", "run"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .expect("start tandem run");
    wait_until("the service to answer", 60, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Run { child }
}

fn stop(mut run: Run) {
    let pid = run.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tandem run did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pair(port: u16, id: &str) -> Value {
    let (code, body) = https(port, &dav::test_ca(), "GET", &format!("/api/pairs/{id}"));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["pair"].clone()
}

async fn passes(state: &State, id: &str) -> usize {
    state.passes(id, 10_000).await.unwrap().len()
}

async fn subscription(state: &State, id: &str, side: &str) -> Option<PushSubscription> {
    state
        .push_subscriptions()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.pair == id && s.side == side)
}

/// How long until `name` is in `cal`; fails after `secs`.
async fn arrives(store: &dyn CalendarStore, cal: &CalendarPath, name: &str, secs: u64) -> Duration {
    let started = Instant::now();
    loop {
        let items = store.list(cal).await.unwrap();
        let fetched = store
            .fetch(
                cal,
                &items.iter().map(|i| i.href.clone()).collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        if fetched
            .iter()
            .any(|(_, r)| r.as_ref().is_ok_and(|r| r.data.contains(name)))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{name} not in {cal} after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_drive_passes_within_seconds_and_the_safety_poll_catches_what_they_lose() {
    let (mut xs, xt) = (DavServer::xandikos_push(), DavServer::xandikos_push());
    let (rs, rt) = (DavServer::radicale(), DavServer::radicale());
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", dav::PASSWORD)).unwrap();
    let (cert, key) = dav::leaf_certificate(dir.path());
    let port = dav::free_port();
    let proxy = Proxy::start(port);
    let mut cals = Vec::new();
    let mut pairs = String::new();
    for (id, s, t, sname, tname) in [
        ("x1", &xs, &xt, "xsource", "xtarget"),
        ("x2", &xs, &xt, "xsource", "xtarget"),
        ("r1", &rs, &rt, "rsource", "rtarget"),
    ] {
        let sc: CalendarPath = s.make_calendar(id, "calendar").parse().unwrap();
        let tc: CalendarPath = t.make_calendar(id, "calendar").parse().unwrap();
        pairs.push_str(&format!(
            "\n[[pairs]]\nid = \"{id}\"\nsource = \"{sname}:{sc}\"\ntarget = \"{tname}:{tc}\"\n"
        ));
        cals.push((sc, tc));
    }
    let head = format!(
        "[state]\nurl = \"sqlite://state/tandem.db\"\n\n{}\n{}\n{}\n{}\n\
         [sync]\ninterval = \"{INTERVAL_S}s\"\nsafety_interval = \"{SAFETY_S}s\"\npush_lifetime = \"{LIFETIME_S}s\"\n\
         [agents]\ncount = 1\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
         public_url = \"https://127.0.0.1:{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        xs.config_section("xsource", &pw),
        xt.config_section("xtarget", &pw),
        rs.config_section("rsource", &pw),
        rt.config_section("rtarget", &pw),
        proxy.port,
        cert.display(),
        key.display(),
    );
    let file = dir.path().join("tandem.toml");
    std::fs::write(&file, format!("{head}{pairs}")).unwrap();
    let run = start(dir.path(), &file, port, "run.log");
    let log = || std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    let (src, tgt) = (xs.store(), xt.store());

    // Both Xandikos pairs subscribe and become push-driven; the Radicale pair is polled.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(pair(port, "x1")["push_driven"] == true && pair(port, "x2")["push_driven"] == true) {
        assert!(
            Instant::now() < deadline,
            "the Xandikos pairs are not push-driven after 30 s\n{}\n{}",
            log(),
            xs.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(pair(port, "r1")["push_driven"], false);
    let state = State::open(&dir.path().join("state/tandem.db"))
        .await
        .unwrap();
    let first = subscription(&state, "x1", "source").await.unwrap();
    assert!(
        first
            .push_url
            .starts_with(&format!("https://127.0.0.1:{}/push/", proxy.port))
    );
    // The first passes ran before the subscriptions existed: let one pass see them.
    tokio::time::sleep(Duration::from_secs(INTERVAL_S + 2)).await;

    // A change is in the target within seconds, though the next poll is minutes away.
    src.create(&cals[0].0, "pushed.ics", &event("pushed", "Pushed", None))
        .await
        .unwrap();
    let took = arrives(&*tgt, &cals[0].1, "Pushed", 20).await;
    eprintln!("change → target by push: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "a push took {took:?}\n{}",
        log()
    );
    assert!(pair(port, "x1")["last_push_at"].is_i64());
    // tandem's own write to the target carried Push-Dont-Notify: no push came back for it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target = subscription(&state, "x1", "target").await.unwrap();
    assert_eq!(target.last_push_at, None, "tandem was pushed its own write");

    // A burst of 10 changes makes few passes.
    let before = passes(&state, "x2").await;
    for i in 0..10 {
        src.create(
            &cals[1].0,
            &format!("burst{i}.ics"),
            &event(&format!("burst{i}"), &format!("Burst {i}"), None),
        )
        .await
        .unwrap();
    }
    arrives(&*tgt, &cals[1].1, "Burst 9", 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tgt.list(&cals[1].1).await.unwrap().len(), 10);
    let burst = passes(&state, "x2").await - before;
    eprintln!("10 pushed changes: {burst} passes");
    assert!((1..=5).contains(&burst), "{burst} passes for a burst of 10");

    // Quiet: the push-driven pairs are not polled; the Radicale pair is, every few seconds.
    let quiet = [
        passes(&state, "x1").await,
        passes(&state, "x2").await,
        passes(&state, "r1").await,
    ];
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL_S)).await;
    assert_eq!(
        passes(&state, "x1").await,
        quiet[0],
        "x1 polled while push-driven"
    );
    assert_eq!(
        passes(&state, "x2").await,
        quiet[1],
        "x2 polled while push-driven"
    );
    let polled = passes(&state, "r1").await - quiet[2];
    assert!(
        polled >= 2,
        "r1 (no push) passed {polled} times in {} s",
        3 * INTERVAL_S
    );

    // A forged push is refused and makes no pass.
    let (code, _) = https(port, &dav::test_ca(), "POST", "/push/forged-token");
    assert_eq!(code, 404);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(passes(&state, "x1").await, quiet[0]);

    // Renewed before expiry: the same subscription, a later expiry.
    let renewed = subscription(&state, "x1", "source").await.unwrap();
    assert_eq!(renewed.location, first.location);
    assert!(
        renewed.expires_at > first.expires_at,
        "{first:?} → {renewed:?}"
    );
    assert!(
        renewed.renewed_at > first.renewed_at + 5_000,
        "not renewed: {first:?} → {renewed:?}"
    );

    // Pushes lost (the receiver unreachable) while the source server restarts: the safety poll
    // catches up, and pushes flow again afterwards.
    proxy.set(Mode::Refuse);
    xs.kill();
    xs.start();
    let pushed_at = pair(port, "x1")["last_push_at"].clone();
    src.create(&cals[0].0, "lost.ics", &event("lost", "Lost push", None))
        .await
        .unwrap();
    let took = arrives(&*tgt, &cals[0].1, "Lost push", SAFETY_S + 20).await;
    eprintln!("change with its push lost → target by the safety poll: {took:?}");
    assert_eq!(
        pair(port, "x1")["last_push_at"],
        pushed_at,
        "a push got through"
    );
    proxy.set(Mode::Pass);
    src.create(
        &cals[0].0,
        "again.ics",
        &event("again", "Pushed again", None),
    )
    .await
    .unwrap();
    let took = arrives(&*tgt, &cals[0].1, "Pushed again", 20).await;
    assert!(
        took < Duration::from_secs(5),
        "after the restart a push took {took:?}\n{}",
        log()
    );
    wait_until("x1 to be push-driven again", 5, || {
        pair(port, "x1")["push_driven"] == true
    });

    // A pair removed from the config: its subscriptions end on the server and in the state.
    let gone = subscription(&state, "x2", "source").await.unwrap();
    stop(run);
    let without: String = pairs
        .split("\n[[pairs]]")
        .filter(|p| !p.contains("\"x2\""))
        .collect::<Vec<_>>()
        .join("\n[[pairs]]");
    std::fs::write(&file, format!("{head}{without}")).unwrap();
    let _run = start(dir.path(), &file, port, "run2.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while subscription(&state, "x2", "source").await.is_some()
        || subscription(&state, "x2", "target").await.is_some()
    {
        assert!(
            Instant::now() < deadline,
            "x2's subscriptions are still kept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let path = url::Url::parse(&gone.location).unwrap().path().to_string();
    assert_eq!(
        xs.delete_collection(&path),
        404,
        "{path} still on the server"
    );
    let token = gone.push_url.rsplit('/').next().unwrap();
    let (code, _) = https(port, &dav::test_ca(), "POST", &format!("/push/{token}"));
    assert_eq!(code, 404);
    let text = std::fs::read_to_string(dir.path().join("run2.log")).unwrap();
    assert!(text.contains("push subscription ended"), "{text}");
    assert!(!text.contains(token), "a push token in the log");
}

/// With the default subscription lifetime (the keeper's rounds a minute apart), a pair's
/// calendars are subscribed within seconds of its first pass, not at the keeper's next round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendars_are_subscribed_within_seconds_of_the_first_pass() {
    let (xs, xt) = (DavServer::xandikos_push(), DavServer::xandikos_push());
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", dav::PASSWORD)).unwrap();
    let (cert, key) = dav::leaf_certificate(dir.path());
    let port = dav::free_port();
    let sc = xs.make_calendar("x1", "calendar");
    let tc = xt.make_calendar("x1", "calendar");
    let file = dir.path().join("tandem.toml");
    std::fs::write(
        &file,
        format!(
            "[state]\nurl = \"sqlite://state/tandem.db\"\n\n{}\n{}\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{port}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n\n\
             [[pairs]]\nid = \"x1\"\nsource = \"xsource:{sc}\"\ntarget = \"xtarget:{tc}\"\n",
            xs.config_section("xsource", &pw),
            xt.config_section("xtarget", &pw),
            cert.display(),
            key.display(),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let run = start(dir.path(), &file, port, "run.log");
    let log = || std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    wait_until("x1's first pass", 30, || {
        pair(port, "x1")["last_success_at"].is_i64()
    });
    let passed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(15);
    while pair(port, "x1")["push_driven"] != true {
        assert!(
            Instant::now() < deadline,
            "x1 not push-driven 15 s after its first pass\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "first pass after {passed:?}; push-driven after {:?}",
        started.elapsed()
    );
    stop(run);
}
