//! A TCP proxy in front of a test server that can play the server dead: answering every request
//! `502 Bad Gateway` (as a load balancer before a dead backend does, counting the requests it
//! saw) or refusing connections (a killed process); switching cuts the connections open.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass = 0,
    BadGateway = 1,
    Refuse = 2,
}

pub struct Proxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    bad_gateway: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            mode: Arc::new(AtomicU8::new(Mode::Pass as u8)),
            bad_gateway: Arc::new(AtomicU64::new(0)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (mode, seen, open) = (
            proxy.mode.clone(),
            proxy.bad_gateway.clone(),
            proxy.open.clone(),
        );
        std::thread::spawn(move || accept_loop(listener, port, upstream, mode, seen, open));
        proxy
    }

    /// Switches how the "server" behaves; connections open so far are cut.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // The accept loop notices within its poll.
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Requests answered 502 so far.
    pub fn bad_gateway_requests(&self) -> u64 {
        self.bad_gateway.load(Ordering::SeqCst)
    }
}

fn accept_loop(
    listener: TcpListener,
    port: u16,
    upstream: u16,
    mode: Arc<AtomicU8>,
    seen: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<TcpStream>>>,
) {
    listener.set_nonblocking(true).unwrap();
    let mut listener = Some(listener);
    loop {
        let now = mode.load(Ordering::SeqCst);
        match (now == Mode::Refuse as u8, &listener) {
            // Closing the listening socket: connections are refused by the kernel.
            (true, Some(_)) => listener = None,
            (false, None) => {
                let l = loop {
                    match TcpListener::bind(("127.0.0.1", port)) {
                        Ok(l) => break l,
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                };
                l.set_nonblocking(true).unwrap();
                listener = Some(l);
            }
            _ => {}
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match l.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                if now == Mode::BadGateway as u8 {
                    let seen = seen.clone();
                    std::thread::spawn(move || bad_gateway(client, &seen));
                } else {
                    pipe(client, upstream, &open);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads each request's head on `client` and answers it 502, closing after the first.
fn bad_gateway(mut client: TcpStream, seen: &AtomicU64) {
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    seen.fetch_add(1, Ordering::SeqCst);
    let _ = client
        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = client.shutdown(Shutdown::Both);
}

/// Copies both ways between `client` and the upstream server.
fn pipe(client: TcpStream, upstream: u16, open: &Mutex<Vec<TcpStream>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    open.lock().unwrap().push(client.try_clone().unwrap());
    for (mut from, mut to) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
        (server, client),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}
