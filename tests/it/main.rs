//! The integration tests, one binary (one build and one link on a 2-core machine instead of one
//! per file). Each module is one subject; `common` holds the harness: real CalDAV servers, the
//! .ics corpus, the independent iCalendar reference, vdir set-ups and scripted HTTP answers.

mod common;

mod adaptive;
mod adoption;
mod architecture;
mod caldav_end_to_end;
mod caldav_faults;
mod config_errors;
mod convergence;
mod dedupe;
mod end_to_end;
mod fidelity;
mod fuzz;
mod hostile;
mod leases;
mod mailboxes;
mod nodes;
mod operator;
mod postgres;
mod promises;
mod push;
mod race;
mod repair;
mod rewriting;
mod servers;
mod service;
mod state_contract;
mod state_store;
mod store_contract;
mod two_way;
mod window;
