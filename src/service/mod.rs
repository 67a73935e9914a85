//! `tandem run` as a service: which pairs are this node's ([`nodes`]), agents pinned to
//! processors ([`pool`]), when each pair is due ([`scheduler`]) or waits on its server
//! ([`servers`]), and the operator's view of it all ([`observe`], served by [`web`]).

pub mod nodes;
pub mod observe;
pub mod pool;
pub mod scheduler;
pub mod servers;
pub mod web;
