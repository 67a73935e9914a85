//! `tandem run` as a service: which pairs are this node's ([`nodes`]), agents pinned to
//! processors ([`pool`]), when each pair is due ([`scheduler`]), and the operator's view of it
//! all ([`observe`], served by [`web`]).

pub mod nodes;
pub mod observe;
pub mod pool;
pub mod scheduler;
pub mod web;
