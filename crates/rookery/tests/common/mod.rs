//! Running the `rookery` binary as an operator would, with its configuration in the environment.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `rookery ARGS` on `data_dir` (host `localhost`), with `storage` or the default SQLite.
pub fn rookery(data_dir: &std::path::Path, storage: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rookery"));
    c.args(args)
        .env("ROOKERY_DATA_DIR", format!("\"{}\"", data_dir.display()))
        .env("ROOKERY_HOSTS", "[\"localhost\"]")
        .env_remove("ROOKERY_CONFIG")
        .env_remove("ROOKERY_STORAGE");
    if let Some(s) = storage {
        c.env("ROOKERY_STORAGE", format!("\"{s}\""));
    }
    c.output().expect("running rookery")
}

/// Standard output and error together, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
