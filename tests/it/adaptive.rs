//! Adaptive write concurrency against a scripted server whose latency grows with the writes in
//! flight beyond four (so four is the best number): the limit settles near four, and a 429
//! halves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;
use tandem::store::caldav::CaldavStore;
use tandem::store::http::HttpSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Writes in flight the server handles without slowing down.
const BEST: usize = 4;
const BASE: Duration = Duration::from_millis(20);

struct Server {
    port: u16,
    in_flight: Arc<AtomicUsize>,
    throttle_next: Arc<AtomicBool>,
}

/// Answers every PUT 201 after `BASE`, stretched by (in flight / BEST)² beyond BEST; a PUT
/// while `throttle_next` is set is answered 429 (once).
async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let throttle_next = Arc::new(AtomicBool::new(false));
    let (flight, throttle) = (in_flight.clone(), throttle_next.clone());
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            let (flight, throttle) = (flight.clone(), throttle.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Head and body (the test's bodies are small and sent at once).
                loop {
                    let Ok(k) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    let text = String::from_utf8_lossy(&buf);
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len = text[..i]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            break;
                        }
                    }
                }
                let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
                let status = if throttle.swap(false, Ordering::SeqCst) {
                    "429 Too Many Requests"
                } else {
                    let stretch = (now as f64 / BEST as f64).max(1.0).powi(2);
                    tokio::time::sleep(BASE.mul_f64(stretch)).await;
                    "201 Created"
                };
                flight.fetch_sub(1, Ordering::SeqCst);
                let out = format!(
                    "HTTP/1.1 {status}\r\nETag: \"e{n}\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Server {
        port,
        in_flight,
        throttle_next,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_limit_settles_near_the_best_and_a_429_halves_it() {
    let s = server().await;
    let store = Arc::new(
        CaldavStore::new(
            &format!("http://127.0.0.1:{}/", s.port),
            None,
            HttpSettings {
                max_concurrency: 16,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    assert_eq!(store.write_limit(), 1, "starts low");
    let cal: CalendarPath = "/cal/".parse().unwrap();
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writes = 600;
    stream::iter(0..writes)
        .for_each_concurrent(16, |i| {
            let (store, cal, samples) = (store.clone(), cal.clone(), samples.clone());
            async move {
                store
                    .create(
                        &cal,
                        &format!("{i}.ics"),
                        "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                    )
                    .await
                    .unwrap();
                samples.lock().unwrap().push(store.write_limit());
            }
        })
        .await;
    assert_eq!(s.in_flight.load(Ordering::SeqCst), 0);
    let samples = samples.lock().unwrap().clone();
    let late = &samples[writes / 2..];
    let mean = late.iter().sum::<usize>() as f64 / late.len() as f64;
    eprintln!(
        "write limit over the second half: mean {mean:.1}, max {:?}",
        late.iter().max()
    );
    assert!(
        (3.0..=6.0).contains(&mean),
        "the limit settled at {mean:.1} (best {BEST}): {samples:?}"
    );
    assert!(samples.iter().all(|l| *l <= 16));

    // A 429 halves it.
    let before = store.write_limit();
    s.throttle_next.store(true, Ordering::SeqCst);
    store
        .create(
            &cal,
            "throttled.ics",
            "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        )
        .await
        .unwrap();
    let after = store.write_limit();
    assert_eq!(after, (before / 2).max(1), "{before} → {after}");
}
