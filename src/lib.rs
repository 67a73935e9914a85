//! tandem keeps each mailbox pair's calendars in step during a mail migration.
//!
//! Data flows one way: [`config`] → stores ([`store`]) and state ([`state`]) → [`sync::plan`]
//! (pure) → [`engine`] (executes, records mappings only after remote writes succeed).

pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod identity;
pub mod item;
pub mod lease;
pub mod logging;
pub mod observe;
pub mod pairstate;
pub mod pool;
pub mod progress;
pub mod repair;
pub mod report;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod sync;
pub mod types;
pub mod web;
pub mod window;
