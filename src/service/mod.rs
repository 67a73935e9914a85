//! `tandem run` as a service: agents pinned to processors ([`pool`]), when each pair is due
//! ([`scheduler`]), and the operator's view of it all ([`observe`], served by [`web`]).

pub mod observe;
pub mod pool;
pub mod scheduler;
pub mod web;
