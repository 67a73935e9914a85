//! `tandem run` as a service: which pairs are this node's ([`nodes`]), agents pinned to
//! processors ([`pool`]), when each pair is due ([`scheduler`]) or waits on its server
//! ([`servers`]) or is woken by a push ([`push`]), and the operator's view of it all
//! ([`observe`], served by [`web`], over [`tls`] when given a certificate).

mod listen;
pub mod nodes;
pub mod observe;
pub mod pool;
pub mod push;
pub mod rollup;
pub mod scheduler;
mod servers;
pub mod tls;
pub mod web;
