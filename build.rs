//! Rebuilds when a migration changes: `sqlx::migrate!` embeds the migrations folder, and Cargo
//! does not track it on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
