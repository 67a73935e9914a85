//! The configuration file (TOML), validated once at the edge.
//!
//! Every problem is reported as `FILE: KEY: reason` so an operator editing a config for thousands
//! of pairs can go straight to the line. Paths inside the config are relative to the config file.
//! Reading ([`load`]) parses the raw form ([`raw`]) and validates it ([`validate`], with
//! [`servers`], [`pairs`] and [`mailboxes`], CSV files by [`csv`]) into the types below ([`types`]), defaults in [`defaults`].

mod csv;
mod defaults;
mod load;
mod mailboxes;
mod pairs;
mod raw;
mod servers;
mod types;
mod validate;

pub use defaults::*;
pub use types::*;
