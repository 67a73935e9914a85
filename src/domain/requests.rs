//! How many requests tandem made to one server, and how they went: counted by the HTTP
//! transport, recorded per server by the state, shown by `status` and `/metrics`.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpCounts {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    pub retries: u64,
    /// Requests given up on (after retries), or answered with a moving/locked status.
    pub failures: u64,
    /// Requests that got no usable answer (an error status, no answer, a broken connection),
    /// retried ones included: the "failed requests" of `status` and `/metrics`.
    pub failed: u64,
    /// 429 and 503-with-Retry-After answers.
    pub throttled: u64,
}
