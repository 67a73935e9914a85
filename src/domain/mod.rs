//! The values the rest of tandem passes around, with no I/O: iCalendar items and their rewriting,
//! identity keys, the sync window, hrefs and etags, pair states, leases and error kinds.
//! Everything above (config, stores, state, planner, engine, service, command line) builds on
//! these; nothing here imports from those layers.

pub mod direction;
pub mod error;
pub mod identity;
pub mod item;
pub mod lease;
pub mod mailbox;
pub mod mapping;
pub mod pair;
pub mod pairstate;
pub mod requests;
pub mod run;
pub mod time;
pub mod types;
pub mod window;
