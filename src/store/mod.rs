//! The `CalendarStore` trait: what the engine needs from a calendar server.
//!
//! Shaped after CalDAV (RFC 4791) and WebDAV sync (RFC 6578) so every backend speaks the same
//! terms: list `(href, etag)`, changes since a sync-token, fetch many, create with
//! `If-None-Match: *`, update and delete with `If-Match`. Backends: `vdir` (a folder of `.ics`
//! files) and `memory` (tests and benches, with fault injection).

mod adaptive;
pub mod caldav;
mod calendar;
mod dav;
pub mod health;
mod homes;
pub mod http;
pub mod limit;
mod listing;
pub mod memory;
mod open;
pub mod push;
mod quirks;
pub mod vdir;

pub use calendar::{CalendarStore, Changes, Fetched, ItemVersion, Resource};
pub use open::{Endpoint, Location, open};
