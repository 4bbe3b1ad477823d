//! Running the real `loader-producer` binary from integration tests, and reading what it
//! published back as typed records.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// The binary's outcome.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "loader failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs the binary with exactly these variables (plus PATH), blocking.
pub fn run_loader(envs: &[(&str, String)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loader-producer"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args)
        .output()
        .expect("the loader binary runs")
        .into()
}

/// Runs the binary without blocking the async test's runtime (the simulator lives on it).
pub async fn run_loader_async(envs: Vec<(&'static str, String)>, args: Vec<&'static str>) -> Run {
    tokio::task::spawn_blocking(move || run_loader(&envs, &args))
        .await
        .expect("loader thread")
}

/// A topic name no other test uses.
pub fn fresh_topic(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Payloads parsed as JSON objects, with their message keys.
pub fn parse_records(messages: Vec<(Option<Vec<u8>>, Vec<u8>)>) -> Vec<(Option<String>, Value)> {
    messages
        .into_iter()
        .map(|(k, v)| {
            let key = k.map(|k| String::from_utf8(k).expect("utf-8 key"));
            let value: Value =
                serde_json::from_slice(&v).expect("every message is one JSON object");
            assert!(value.is_object(), "message is not a JSON object: {value}");
            (key, value)
        })
        .collect()
}
