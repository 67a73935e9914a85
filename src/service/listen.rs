//! The status server's connections, bounded: at most [`MAX_CONNECTIONS`] open at once, each
//! given [`HEADER_TIMEOUT`] to send a request's headers and [`HANDSHAKE`] for TLS. When all are
//! taken, a new connection makes room by closing the oldest one that has not sent a whole
//! request yet. A flood of clients that connect and never finish a request then holds a bounded
//! number of descriptors and bytes, `/healthz` and the page keep answering, and the pairs'
//! own connections to their servers never meet "too many open files".

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// Connections served at once.
pub(super) const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send a request's headers (the first one, or the next on a kept-alive
/// connection).
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to finish a TLS handshake.
pub(super) const HANDSHAKE: Duration = Duration::from_secs(10);

/// One open connection: whether it has sent a whole request, and how to close it.
struct Open {
    served: Arc<AtomicBool>,
    abort: Option<AbortHandle>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Open>,
}

impl Table {
    /// Numbers a new connection; when all places are taken, the one to close to make room: the
    /// oldest that has not sent a whole request, else the oldest.
    fn admit(&mut self, served: Arc<AtomicBool>) -> (u64, Option<Open>) {
        let victim = (self.open.len() >= MAX_CONNECTIONS)
            .then(|| {
                let id = self
                    .open
                    .iter()
                    .find(|(_, o)| !o.served.load(Ordering::Relaxed))
                    .or_else(|| self.open.iter().next())
                    .map(|(id, _)| *id)?;
                self.open.remove(&id)
            })
            .flatten();
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Open {
                served,
                abort: None,
            },
        );
        (id, victim)
    }
}

/// Takes a connection off the table when its task ends, however it ends.
struct Leave(Arc<Mutex<Table>>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        lock(&self.0).open.remove(&self.1);
    }
}

fn lock(t: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stop` resolves, then lets the
/// requests in progress finish.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let table: Arc<Mutex<Table>> = Arc::default();
    let (stopping, stop_rx) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, say: wait for some to close instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let served = Arc::new(AtomicBool::new(false));
        let (id, victim) = lock(&table).admit(served.clone());
        if let Some(abort) = victim.and_then(|v| v.abort) {
            abort.abort();
        }
        let leave = Leave(table.clone(), id);
        let (tls, app, stop_rx) = (tls.clone(), app.clone(), stop_rx.clone());
        let task = tokio::spawn(async move {
            let _leave = leave;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => connection(tcp, app, served, stop_rx).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await
                {
                    Ok(Ok(stream)) => connection(stream, app, served, stop_rx).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
        if let Some(open) = lock(&table).open.get_mut(&id) {
            open.abort = Some(task.abort_handle());
        }
    }
    drop((listener, stop_rx));
    let _ = stopping.send(true);
    stopping.closed().await;
    Ok(())
}

/// One HTTP/1 connection, until the client closes it, it times out, or the server stops.
async fn connection<S>(
    stream: S,
    app: Router,
    served: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        served.store(true, Ordering::Relaxed);
        let mut app = app.clone();
        // A Router is always ready: `call` needs no `poll_ready` first.
        tower_service::Service::call(&mut app, req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                debug!(error = %e, "connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        debug!(error = %e, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_closes_the_oldest_connection_without_a_request() {
        let mut t = Table::default();
        let flags: Vec<Arc<AtomicBool>> = (0..MAX_CONNECTIONS)
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        for f in &flags {
            assert!(t.admit(f.clone()).1.is_none());
        }
        flags[0].store(true, Ordering::Relaxed);
        let (_, victim) = t.admit(Arc::default());
        assert!(!victim.unwrap().served.load(Ordering::Relaxed));
        assert!(t.open.contains_key(&0) && !t.open.contains_key(&1));
        assert_eq!(t.open.len(), MAX_CONNECTIONS);
        for f in &flags {
            f.store(true, Ordering::Relaxed);
        }
        t.open
            .values()
            .for_each(|o| o.served.store(true, Ordering::Relaxed));
        let (_, victim) = t.admit(Arc::default());
        assert!(victim.is_some() && !t.open.contains_key(&0));
    }
}
