//! Property: whatever the source history and whatever the target does wrong on the way (refused
//! calls, throttling, a "crash" between a remote write and recording its mapping), one clean pass
//! afterwards leaves the target equal to the rewritten source, with no duplicate and nothing lost.
//! State is real SQLite on disk; the stores are `memory` with sync tokens and fault injection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use tandem::domain::error::ErrorKind;
use tandem::domain::item::{Item, Rewriter};
use tandem::domain::pair::Pair;
use tandem::domain::types::CalendarPath;
use tandem::engine::{Engine, PassOptions};
use tandem::state::State;
use tandem::store::CalendarStore;
use tandem::store::memory::MemoryStore;

#[derive(Debug, Clone)]
enum Fault {
    None,
    Fail(usize, ErrorKind),
    Crash,
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        version: u8,
    },
    Delete {
        key: u8,
    },
    /// Someone edits the target copy of `key` behind tandem's back.
    Tamper {
        key: u8,
    },
    /// Someone deletes the target copy of `key`.
    Drop {
        key: u8,
    },
    Sync {
        target: Fault,
        source_fails: usize,
    },
}

fn fault() -> impl Strategy<Value = Fault> {
    let kind = prop_oneof![
        Just(ErrorKind::Transient),
        Just(ErrorKind::Throttled { retry_after: None }),
        Just(ErrorKind::Moving { retry_after: None }),
        Just(ErrorKind::PreconditionFailed),
        Just(ErrorKind::Permanent),
    ];
    prop_oneof![
        2 => Just(Fault::None),
        2 => (1usize..4, kind).prop_map(|(n, k)| Fault::Fail(n, k)),
        2 => Just(Fault::Crash),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 0u8..4).prop_map(|(key, version)| Op::Put { key, version }),
        1 => (0u8..8).prop_map(|key| Op::Delete { key }),
        1 => (0u8..8).prop_map(|key| Op::Tamper { key }),
        1 => (0u8..8).prop_map(|key| Op::Drop { key }),
        3 => (fault(), prop_oneof![3 => Just(0usize), 1 => 1usize..3]).prop_map(|(target, source_fails)| Op::Sync { target, source_fails }),
    ]
}

/// Item `key` at `version`; even keys are meetings organised in the old org.
fn body(key: u8, version: u8) -> String {
    let people = if key.is_multiple_of(2) {
        format!(
            "ORGANIZER;CN=\"Org, {key}\":mailto:org{key}@old.example\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:att@old.example\r\n"
        )
    } else {
        String::new()
    };
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:item-{key}\r\nDTSTAMP:2026010{version}T000000Z\r\n\
         DTSTART:20260110T10000{key}Z\r\nSUMMARY:item {key} version {version}\r\n{people}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn rewriter() -> Rewriter {
    Rewriter::new([("old.example".to_string(), "new.example".to_string())], [])
}

async fn scenario(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state.db")).await.unwrap();
    let (src, tgt) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let (scal, tcal): (CalendarPath, CalendarPath) =
        ("/src/".parse().unwrap(), "/tgt/".parse().unwrap());
    src.add_calendar(&scal);
    tgt.add_calendar(&tcal);
    // Somebody's own item in the target: never ours to touch.
    let extra = tgt.put(&tcal, "own.ics", &body(99, 0));
    let stores: BTreeMap<String, Arc<dyn CalendarStore>> = [
        ("s".to_string(), src.clone() as Arc<dyn CalendarStore>),
        ("t".to_string(), tgt.clone() as Arc<dyn CalendarStore>),
    ]
    .into();
    let engine = Engine::with_stores(state, stores, rewriter());
    let pair = Pair::new(
        "p".parse().unwrap(),
        "s:/src/".parse().unwrap(),
        "t:/tgt/".parse().unwrap(),
    );
    let opts = PassOptions {
        force_delete: true,
        ..Default::default()
    };

    for op in ops {
        match op {
            Op::Put { key, version } => {
                src.put(&scal, &format!("k{key}.ics"), &body(key, version));
            }
            Op::Delete { key } => {
                src.remove(&scal.join(&format!("k{key}.ics")));
            }
            Op::Tamper { key } | Op::Drop { key } => {
                let copy = tcal.join(&format!("item-{key}.ics"));
                if tgt.items(&tcal).iter().any(|(h, _)| *h == copy) {
                    if matches!(op, Op::Drop { .. }) {
                        tgt.remove(&copy);
                    } else {
                        // Same meeting (same identity), different content.
                        tgt.put(
                            &tcal,
                            copy.file_name(),
                            &body(key, 9).replace("old.example", "new.example"),
                        );
                    }
                }
            }
            Op::Sync {
                target,
                source_fails,
            } => {
                match target {
                    Fault::None => {}
                    Fault::Fail(n, kind) => tgt.fail_next(n, kind),
                    Fault::Crash => tgt.crash_after_next_write(),
                }
                if source_fails > 0 {
                    src.fail_next(source_fails, ErrorKind::Transient);
                }
                engine.sync_pair(&pair, opts).await.unwrap();
                tgt.clear_faults();
                src.clear_faults();
            }
        }
    }
    let clean = engine.sync_pair(&pair, opts).await.unwrap();
    prop_assert!(clean.ok(), "clean pass failed: {clean:?}");

    // Target (without the extra item) equals the rewritten source: same identities, same content.
    let rw = rewriter();
    let mut want: HashMap<String, u128> = HashMap::new();
    for (href, data) in src.items(&scal) {
        let mut item = Item::parse(&data).unwrap();
        item.rewrite(&rw);
        prop_assert!(
            want.insert(item.identity().to_string(), item.content_hash().0)
                .is_none(),
            "source duplicate at {href}"
        );
    }
    let mut have: HashMap<String, u128> = HashMap::new();
    let mut extra_seen = false;
    for (href, data) in tgt.items(&tcal) {
        if href == extra {
            extra_seen = true;
            continue;
        }
        let item = Item::parse(&data).unwrap();
        let id = item.identity().to_string();
        prop_assert!(
            have.insert(id.clone(), item.content_hash().0).is_none(),
            "duplicate of {id} in the target ({href})"
        );
    }
    prop_assert!(extra_seen, "the target's own item was touched");
    prop_assert_eq!(&have, &want);

    // And a further pass has nothing to do.
    let again = engine.sync_pair(&pair, opts).await.unwrap();
    prop_assert!(
        again.ok() && again.changes() == 0,
        "second clean pass still had work: {again:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn any_history_with_faults_converges(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(scenario(ops))?;
    }
}
