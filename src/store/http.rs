//! The HTTP layer under the CalDAV client: one per server, with its limits, timeouts, retries
//! and request counters.
//!
//! libdav calls `Service::call` without `poll_ready`, so limits cannot be readiness-based tower
//! layers; everything a request needs (a concurrency slot, the rate limiter, a timeout, retries)
//! happens inside the future `call` returns. Bodies are buffered, so a retry resends the same
//! request and an error answer can be inspected ("mailbox being moved").
//!
//! Retrying is safe because every write is conditional: a PUT that landed before its answer was
//! lost comes back as 412 on the retry, which the engine resolves by re-reading.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tracing::debug;

use super::adaptive::WriteLimit;
use super::health::{ServerHealth, resource_of};
use super::quirks::Quirks;
use crate::domain::error::ErrorKind;
use crate::domain::requests::HttpCounts;

/// How hard to try before giving up on a request.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` waited out inside a pass; a longer one fails the request with
    /// its kind (throttled or moving) so the pair is paused instead of holding a worker.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_wait: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub requests_per_second: Option<u32>,
    pub max_concurrency: usize,
    /// Writes (PUT, DELETE) in flight: fixed, or `None` to find the best number up to
    /// `max_concurrency` ([`super::adaptive`]).
    pub write_concurrency: Option<usize>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The largest answer body read, in bytes; a larger one fails the request ([`OverLimit`]).
    pub max_answer: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            requests_per_second: None,
            max_concurrency: DEFAULT_CONCURRENCY,
            write_concurrency: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_answer: 64 << 20,
        }
    }
}

/// Requests in flight per server when the config sets no `max_concurrency`.
pub(crate) const DEFAULT_CONCURRENCY: usize = 4;

/// Counters per server, read by tests, `status` and metrics.
#[derive(Debug, Default)]
pub struct HttpStats {
    requests: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    failed: AtomicU64,
    throttled: AtomicU64,
}

/// The requests one pass made, whichever server they went to: the engine sets one around each
/// pass (`PASS_TALLY.scope`) so a pair's failed-request percentage is its own.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: AtomicU64,
    pub failed: AtomicU64,
    pub throttled: AtomicU64,
}

tokio::task_local! {
    pub static PASS_TALLY: Arc<Tally>;
}

fn tally(f: impl FnOnce(&Tally)) {
    let _ = PASS_TALLY.try_with(|t| f(t));
}

impl HttpStats {
    pub fn counts(&self) -> HttpCounts {
        HttpCounts {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }
}

/// A request that failed for good, with the kind the engine branches on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct HttpFault {
    pub kind: ErrorKind,
    pub message: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type HttpsClient = Client<HttpsConnector<HttpConnector>, String>;

struct Inner {
    client: HttpsClient,
    /// Basic credentials; the header value is marked sensitive so hyper never logs it.
    auth: Option<HeaderValue>,
    rate: Option<DefaultDirectRateLimiter>,
    slots: Semaphore,
    settings: HttpSettings,
    stats: Arc<HttpStats>,
    health: Arc<ServerHealth>,
    /// How many writes may be in flight (within `slots`).
    writes: WriteLimit,
    /// Per calendar path, the `Push-Dont-Notify` value tandem's writes there carry.
    quiet: std::sync::RwLock<std::collections::HashMap<String, HeaderValue>>,
    /// The server's software, from its first answer.
    quirks: Arc<Quirks>,
}

/// The `Service` libdav drives. Cheap to clone; clones share limits and counters.
#[derive(Clone)]
pub(crate) struct Transport(Arc<Inner>);

impl Transport {
    /// `tls`: load the system's root certificates (only `https://` servers need them; reading
    /// them costs a few milliseconds per process).
    pub(crate) fn new(
        credentials: Option<(&str, &SecretString)>,
        settings: HttpSettings,
        tls: bool,
    ) -> Result<Transport, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if tls {
            builder
                .with_native_roots()
                .map_err(|e| format!("loading the system's TLS root certificates: {e}"))?
        } else {
            let config = rustls::ClientConfig::builder_with_provider(
                rustls::crypto::ring::default_provider().into(),
            )
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            builder.with_tls_config(config)
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let auth = credentials.map(|(user, password)| {
            let raw = format!("{user}:{}", password.expose_secret());
            let mut v = HeaderValue::try_from(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ))
            .expect("base64 is a valid header value");
            v.set_sensitive(true);
            v
        });
        Ok(Transport(Arc::new(Inner {
            client,
            auth,
            rate: settings
                .requests_per_second
                .and_then(NonZeroU32::new)
                .map(|r| RateLimiter::direct(Quota::per_second(r))),
            slots: Semaphore::new(settings.max_concurrency.max(1)),
            writes: match settings.write_concurrency {
                Some(n) => WriteLimit::fixed(n.min(settings.max_concurrency.max(1))),
                None => WriteLimit::adaptive(settings.max_concurrency.max(1)),
            },
            settings,
            stats: Arc::new(HttpStats::default()),
            health: Arc::new(ServerHealth::default()),
            quiet: Default::default(),
            quirks: Arc::default(),
        })))
    }

    pub(crate) fn stats(&self) -> Arc<HttpStats> {
        self.0.stats.clone()
    }

    pub(crate) fn health(&self) -> Arc<ServerHealth> {
        self.0.health.clone()
    }

    /// What the server does differently, as its answers so far tell.
    pub(crate) fn quirks(&self) -> &Quirks {
        &self.0.quirks
    }

    /// One `OPTIONS` request to `uri`, not retried: whether the server answered (any status but
    /// a server-level failure), or why not.
    pub(crate) async fn probe(&self, uri: &str) -> Result<(), String> {
        let inner = &self.0;
        let mut req = Request::options(uri)
            .body(String::new())
            .map_err(|e| format!("OPTIONS {uri}: {e}"))?;
        if let Some(auth) = &inner.auth {
            req.headers_mut().insert(AUTHORIZATION, auth.clone());
        }
        inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(inner.settings.timeout, inner.client.request(req)).await;
        let fault = match answer {
            Err(_) => Some("no answer".to_string()),
            Ok(Err(e)) => Some(root_cause(&e)),
            Ok(Ok(resp)) if server_fault(&resp.status(), resp.headers()) => {
                Some(resp.status().to_string())
            }
            Ok(Ok(_)) => None,
        };
        match fault {
            None => Ok(()),
            Some(f) => {
                inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                Err(format!("OPTIONS {uri}: {f}"))
            }
        }
    }

    /// Writes to the calendar at `path` carry `Push-Dont-Notify` for the subscription at
    /// `location` (`None`: no longer).
    pub(crate) fn set_quiet(&self, path: &str, location: Option<&str>) {
        let mut quiet = self.0.quiet.write().unwrap_or_else(|p| p.into_inner());
        match location.and_then(|l| HeaderValue::try_from(format!("\"{l}\"")).ok()) {
            Some(v) => quiet.insert(path.to_string(), v),
            None => quiet.remove(path),
        };
    }

    /// Writes allowed in flight now.
    pub(crate) fn write_limit(&self) -> usize {
        self.0.writes.limit()
    }

    pub(crate) fn max_concurrency(&self) -> usize {
        self.0.settings.max_concurrency.max(1)
    }
}

impl tower_service::Service<Request<String>> for Transport {
    type Response = Response<Full<Bytes>>;
    type Error = HttpFault;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, HttpFault>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HttpFault>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<String>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.send(req).await })
    }
}

/// What to do with one attempt's outcome.
enum Verdict {
    Done(Response<Full<Bytes>>),
    /// Worth another try after `wait` while fewer than `tries` attempts were made; otherwise
    /// fail with `fault`.
    Retry {
        wait: Duration,
        fault: HttpFault,
        tries: u32,
    },
    Fail(HttpFault),
}

impl Inner {
    async fn send(&self, req: Request<String>) -> Result<Response<Full<Bytes>>, HttpFault> {
        let (parts, body) = req.into_parts();
        let what = format!("{} {}", parts.method, parts.uri);
        let policy = self.settings.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let req = self.prepared(&parts, &body);
            let write = matches!(parts.method, http::Method::PUT | http::Method::DELETE);
            let write_slot = match write {
                true => Some(self.writes.acquire().await),
                false => None,
            };
            let outcome = {
                let _slot = self
                    .slots
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                if let Some(rate) = &self.rate {
                    rate.until_ready().await;
                }
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                tally(|t| {
                    t.requests.fetch_add(1, Ordering::Relaxed);
                });
                tokio::time::timeout(self.settings.timeout, async {
                    let resp = self.client.request(req).await?;
                    let (head, body) = resp.into_parts();
                    let bytes = read_limited(&head, body, self.settings.max_answer).await?;
                    Ok::<_, BoxError>((head, bytes))
                })
                .await
            };
            if let Some(slot) = write_slot {
                let throttled = matches!(&outcome, Ok(Ok((head, _)))
                    if matches!(head.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE));
                self.writes.release(slot, throttled);
            }
            // No connection or no answer: the server's trouble, whatever the kind says.
            let unanswered = matches!(&outcome, Err(_) | Ok(Err(_)));
            let verdict = match outcome {
                Err(_) => Verdict::Retry {
                    wait: backoff(&policy, attempt),
                    fault: HttpFault {
                        kind: ErrorKind::Transient,
                        message: format!(
                            "{what}: no answer within {}",
                            humantime::format_duration(self.settings.timeout)
                        ),
                    },
                    tries: policy.attempts,
                },
                Ok(Err(e)) if e.is::<OverLimit>() => Verdict::Fail(HttpFault {
                    kind: ErrorKind::Permanent,
                    message: format!("{what}: {e}"),
                }),
                Ok(Err(e)) => classify_io(&what, &*e, &policy, attempt),
                Ok(Ok((head, bytes))) => {
                    self.quirks.notice(&parts.method, &head.headers);
                    classify_status(&what, head, bytes, &policy, attempt, &self.stats)
                }
            };
            self.tell(&verdict, unanswered, parts.uri.path());
            match verdict {
                Verdict::Done(resp) => return Ok(resp),
                // A server found down stops retries: its pairs wait on it instead.
                Verdict::Retry { wait, fault, tries }
                    if attempt < tries && wait <= policy.max_wait && !self.health.is_down() =>
                {
                    debug!(request = %what, attempt, wait_ms = wait.as_millis() as u64, reason = %fault.message, "retrying");
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
                Verdict::Retry { fault, .. } | Verdict::Fail(fault) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(fault);
                }
            }
        }
    }

    /// One try of a request: its credentials, user agent and, for tandem's own writes, the
    /// header that keeps their push from coming back to tandem.
    fn prepared(&self, parts: &http::request::Parts, body: &str) -> Request<String> {
        let mut req = Request::from_parts(parts.clone(), body.to_string());
        if let Some(auth) = &self.auth {
            req.headers_mut().insert(AUTHORIZATION, auth.clone());
        }
        req.headers_mut().insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tandem/", env!("CARGO_PKG_VERSION"))),
        );
        if matches!(parts.method, http::Method::PUT | http::Method::DELETE) {
            // tandem's own write: not pushed back to tandem's subscription.
            let quiet = self.quiet.read().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = quiet.get(resource_of(parts.uri.path())) {
                req.headers_mut().insert("push-dont-notify", v.clone());
            }
        }
        req
    }

    /// Counts a try that got no usable answer (a refused login too) as failed, and tells the
    /// server's health what the try says of it.
    fn tell(&self, verdict: &Verdict, unanswered: bool, path: &str) {
        // A refused login is an answer the caller sees, and a failed request all the same.
        let refused = matches!(verdict, Verdict::Done(r) if r.status() == StatusCode::UNAUTHORIZED);
        if refused || !matches!(verdict, Verdict::Done(_)) {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            tally(|t| {
                t.failed.fetch_add(1, Ordering::Relaxed);
            });
        }
        // Every try tells the server's health; a `server_fault` is the only answer classified
        // transient, and a mailbox-level answer says the server itself is up.
        match verdict {
            Verdict::Retry { fault, .. } | Verdict::Fail(fault)
                if unanswered || matches!(fault.kind, ErrorKind::Transient) =>
            {
                self.health.failed(resource_of(path), &fault.message)
            }
            _ => self.health.answered(),
        }
    }
}

/// An answer larger than the server's `max_answer_size`.
#[derive(Debug, thiserror::Error)]
#[error("the answer is over {0} bytes, the server's max_answer_size; not read")]
pub(crate) struct OverLimit(usize);

/// The answer's body, unless it is larger than `max` bytes: a server cannot make tandem hold
/// more than that per request, whatever it sends or announces.
async fn read_limited(
    head: &http::response::Parts,
    body: hyper::body::Incoming,
    max: usize,
) -> Result<Bytes, BoxError> {
    let announced = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(Box::new(OverLimit(max)));
    }
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Box::new(OverLimit(max))),
        Err(e) => Err(e),
    }
}

/// Exponential backoff with jitter: a random delay in [d/2, d], d = base·2^(attempt-1), capped.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let d = policy
        .base_delay
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(policy.max_delay);
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

/// An answer that says the server itself is in trouble, worth retrying: a 5xx, but for 501/505
/// ("never", not "not now") and a 503 with Retry-After (one mailbox unavailable for a while).
fn server_fault(status: &StatusCode, headers: &http::HeaderMap) -> bool {
    status.is_server_error()
        && *status != StatusCode::NOT_IMPLEMENTED
        && *status != StatusCode::HTTP_VERSION_NOT_SUPPORTED
        && !(*status == StatusCode::SERVICE_UNAVAILABLE && headers.contains_key(RETRY_AFTER))
}

/// The innermost cause of an error (the OS's "connection refused", say).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .last()
        .map(|root| root.to_string())
        .unwrap_or_else(|| e.to_string())
}

fn classify_io(
    what: &str,
    e: &(dyn std::error::Error + 'static),
    policy: &RetryPolicy,
    attempt: u32,
) -> Verdict {
    let refused = std::iter::successors(Some(e), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    let reason = root_cause(e);
    // A refused connection is a server that is down or being moved: the pair pauses (rule 3).
    let kind = if refused {
        ErrorKind::Moving { retry_after: None }
    } else {
        ErrorKind::Transient
    };
    let fault = HttpFault {
        kind,
        message: format!("{what}: {reason}"),
    };
    Verdict::Retry {
        wait: backoff(policy, attempt),
        fault,
        tries: policy.attempts,
    }
}

fn classify_status(
    what: &str,
    head: http::response::Parts,
    body: Bytes,
    policy: &RetryPolicy,
    attempt: u32,
    stats: &HttpStats,
) -> Verdict {
    let status = head.status;
    let retry_after = head
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let said = |extra: &str| {
        let after = retry_after.map_or(String::new(), |d| {
            format!(", Retry-After {}", humantime::format_duration(d))
        });
        format!("{what}: {status}{after}{extra}")
    };
    if status.is_client_error() || status.is_server_error() {
        let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
        if text.contains("being moved") || text.contains("mailbox move") {
            return Verdict::Fail(HttpFault {
                kind: ErrorKind::Moving { retry_after },
                message: said(" (mailbox being moved)"),
            });
        }
        // Some servers lock briefly around each write (Xandikos' repository lock, which
        // concurrent writes contend for): worth twice the usual retries before the pair is
        // paused as locked.
        if status == StatusCode::LOCKED {
            return Verdict::Retry {
                wait: retry_after.unwrap_or_else(|| backoff(policy, attempt)),
                fault: HttpFault {
                    kind: ErrorKind::Moving { retry_after },
                    message: said(" (locked)"),
                },
                tries: policy.attempts.saturating_mul(2),
            };
        }
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            stats.throttled.fetch_add(1, Ordering::Relaxed);
            tally(|t| {
                t.throttled.fetch_add(1, Ordering::Relaxed);
            });
            Verdict::Retry {
                wait: retry_after.unwrap_or_else(|| backoff(policy, attempt)),
                fault: HttpFault {
                    kind: ErrorKind::Throttled { retry_after },
                    message: said(" (throttled)"),
                },
                tries: policy.attempts,
            }
        }
        StatusCode::SERVICE_UNAVAILABLE if retry_after.is_some() => {
            stats.throttled.fetch_add(1, Ordering::Relaxed);
            tally(|t| {
                t.throttled.fetch_add(1, Ordering::Relaxed);
            });
            Verdict::Retry {
                wait: retry_after.unwrap_or_default(),
                fault: HttpFault {
                    kind: ErrorKind::Moving { retry_after },
                    message: said(" (unavailable)"),
                },
                tries: policy.attempts,
            }
        }
        s if server_fault(&s, &head.headers) => Verdict::Retry {
            wait: backoff(policy, attempt),
            fault: HttpFault {
                kind: ErrorKind::Transient,
                message: said(""),
            },
            tries: policy.attempts,
        },
        _ => Verdict::Done(Response::from_parts(head, Full::new(body))),
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let secs = at.as_second() - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a past date means now"
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        let header = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        let d = parse_retry_after(&header).unwrap();
        assert!(
            d > Duration::from_secs(3500) && d <= Duration::from_secs(3600),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        for attempt in 1..=10 {
            let d = backoff(&p, attempt);
            let full = Duration::from_millis(100 << (attempt - 1)).min(Duration::from_secs(1));
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
