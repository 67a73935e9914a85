//! tandem against vdirsyncer 0.21.0 on the same two Radicale servers and the same 1,000 items:
//! a first sync into an empty calendar, then a pass with nothing to do. Both run as their
//! command-line programs, so process start-up counts for both.
//!
//! `cargo bench --bench vs_vdirsyncer` (set `TANDEM_BENCH_ITEMS` for another size).

#[path = "../tests/it/common/dav.rs"]
#[allow(dead_code)]
mod dav;
#[path = "../tests/it/common/items.rs"]
#[allow(dead_code)]
mod items;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dav::{DavServer, PASSWORD, USER};
use futures_util::stream::{self, StreamExt};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

/// No-change passes timed per tool; the median is reported.
const QUIET_RUNS: usize = 5;

fn timed(what: &str, cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn tandem(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tandem"));
    c.arg("-c").arg(config).args(args).env_remove("RUST_LOG");
    c
}

fn main() {
    // `cargo bench` passes harness flags such as `--bench`; a name filter that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && !"vs_vdirsyncer".contains(a.as_str()))
    {
        return;
    }
    let n: usize = std::env::var("TANDEM_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let bin = dav::venv_bin();
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let scal = source.make_calendar("alice", "calendar");
    let t_tandem = target.make_calendar("alice", "tandem");
    let t_vdir = target.make_calendar("alice", "vdirsyncer");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let src = source.store();
    let cal: CalendarPath = scal.parse().unwrap();
    rt.block_on(async {
        let failed = stream::iter(0..n)
            .map(|i| {
                let (src, cal) = (&src, &cal);
                async move {
                    let (uid, body) = items::item(i, 0);
                    src.create(cal, &format!("{uid}.ics"), &body).await.err()
                }
            })
            .buffer_unordered(4)
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await;
        assert!(failed.is_empty(), "seeding: {:?}", failed.first());
    });

    let dir = tempfile::tempdir().unwrap();
    let config = dav::pair_config(dir.path(), &source, &target, &scal, &t_tandem, "");

    let vconfig = dir.path().join("vdirsyncer.conf");
    std::fs::write(
        &vconfig,
        format!(
            "[general]\nstatus_path = \"{}\"\n\n[pair alice]\na = \"src\"\nb = \"dst\"\ncollections = null\nconflict_resolution = \"a wins\"\n\n\
             [storage src]\ntype = \"caldav\"\nurl = \"{}{}\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
             [storage dst]\ntype = \"caldav\"\nurl = \"{}{}\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
            dir.path().join("vdirsyncer-status").display(),
            source.url().trim_end_matches('/'),
            scal,
            target.url().trim_end_matches('/'),
            t_vdir,
        ),
    )
    .unwrap();
    let vdirsyncer = |args: &[&str]| {
        let mut c = Command::new(bin.join("vdirsyncer"));
        c.arg("-c").arg(&vconfig).args(args);
        c
    };
    timed("vdirsyncer discover", &mut vdirsyncer(&["discover"]));

    let tandem_first = timed("tandem first sync", &mut tandem(&config, &["sync"]));
    let vdir_first = timed("vdirsyncer first sync", &mut vdirsyncer(&["sync"]));
    let tandem_quiet = median(
        (0..QUIET_RUNS)
            .map(|_| timed("tandem quiet pass", &mut tandem(&config, &["sync"])))
            .collect(),
    );
    let vdir_quiet = median(
        (0..QUIET_RUNS)
            .map(|_| timed("vdirsyncer quiet pass", &mut vdirsyncer(&["sync"])))
            .collect(),
    );

    // Both copies must be complete for the comparison to mean anything.
    rt.block_on(async {
        let tgt = target.store();
        for cal in [&t_tandem, &t_vdir] {
            let got = tgt.list(&cal.parse().unwrap()).await.unwrap().len();
            assert_eq!(got, n, "{cal} holds {got} of {n} items");
        }
    });

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("tandem vs vdirsyncer 0.21.0, Radicale 3.9.0 → Radicale 3.9.0, {n} items");
    println!(
        "{:<22} {:>12} {:>14} {:>10}",
        "", "tandem (ms)", "vdirsyncer (ms)", "speed-up"
    );
    for (what, t, v) in [
        ("first sync", tandem_first, vdir_first),
        ("no-change pass", tandem_quiet, vdir_quiet),
    ] {
        println!(
            "{what:<22} {:>12.0} {:>14.0} {:>9.1}×",
            ms(t),
            ms(v),
            v.as_secs_f64() / t.as_secs_f64()
        );
    }
}
