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

/// Runs the binary with exactly these variables (plus PATH), blocking. The exchange simulator
/// serves the archive too: a job pointed at one (BINANCE_API_URL) gets it as ARCHIVE_URL unless
/// the test names another.
pub fn run_loader(envs: &[(&str, String)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loader-producer"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let has = |name: &str| envs.iter().any(|(k, _)| *k == name);
    if let Some((_, url)) = envs.iter().find(|(k, _)| *k == "BINANCE_API_URL") {
        if !has("ARCHIVE_URL") && !args.contains(&"verify") {
            cmd.env("ARCHIVE_URL", url);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args)
        .output()
        .expect("the loader binary runs")
        .into()
}

/// Sends SIGTERM to the loader `child` (`pid`) and waits for it to exit.
pub async fn terminate(child: std::process::Child, pid: &str) -> Run {
    let ok = Command::new("kill")
        .args(["-TERM", pid])
        .status()
        .expect("kill runs");
    assert!(ok.success());
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("exits").into())
        .await
        .unwrap()
}

/// Starts the binary with exactly these variables (plus PATH), its output piped.
pub fn spawn_loader(envs: &[(&'static str, String)]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loader-producer"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the loader binary starts")
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

/// The variables of a history job against the simulator at `sim_url`, publishing `symbol`'s
/// `ty` for `range` to `topic` on the shared test broker.
pub fn job_env(
    sim_url: &str,
    topic: &str,
    symbol: &str,
    ty: &str,
    range: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("SYMBOL", symbol.into()),
        ("TYPE", ty.into()),
        ("TIME_RANGE", range.into()),
        ("KAFKA_TOPIC", topic.into()),
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            super::broker::Broker::shared().bootstrap(),
        ),
        ("BINANCE_API_URL", sim_url.into()),
        ("QUEUE_ID", format!("test-{topic}")),
        ("METRICS_PORT", "0".into()),
    ]
}

/// `env` with `extra` set (replacing what it had for those names).
pub fn with(
    mut env: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k, v.to_string()));
    }
    env
}

/// Every message of `topic` on the shared broker, parsed.
pub fn read_topic(topic: &str) -> Vec<(Option<String>, Value)> {
    parse_records(read_raw(topic))
}

/// Every message of `topic` on the shared broker, as bytes (key, payload), in order, each
/// payload without its `loader_job` field (which names the job, so it differs between two jobs
/// that publish the same records; [`read_tagged`] keeps it).
pub fn read_raw(topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    read_tagged(topic)
        .into_iter()
        .map(|(k, v)| (k, without_job(v)))
        .collect()
}

/// Every message of `topic` on the shared broker, exactly as published.
pub fn read_tagged(topic: &str) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    super::broker::consume_all(&super::broker::Broker::shared().bootstrap(), topic, &[])
}

/// `payload` without the `loader_job` field the sink appends last (unchanged without one).
pub fn without_job(mut payload: Vec<u8>) -> Vec<u8> {
    const FIELD: &[u8] = b",\"loader_job\":\"";
    let at = payload.windows(FIELD.len()).rposition(|w| w == FIELD);
    if let Some(at) = at.filter(|_| payload.ends_with(b"\"}")) {
        payload.truncate(at);
        payload.push(b'}');
    }
    payload
}

/// `loader-producer verify --json` on `topic` for `range`, with `extra` variables and `args`.
pub fn verify_topic(
    topic: &str,
    range: &str,
    extra: &[(&'static str, String)],
    args: &[&'static str],
) -> Run {
    let mut env = vec![
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            super::broker::Broker::shared().bootstrap(),
        ),
        ("KAFKA_TOPIC", topic.to_string()),
        ("TIME_RANGE", range.to_string()),
    ];
    env.extend(extra.iter().cloned());
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    run_loader(&env, &all)
}

/// How many records `topic` holds on the shared broker (0 before it exists).
pub fn published(topic: &str) -> usize {
    let bootstrap = super::broker::Broker::shared().bootstrap();
    if super::broker::topic_exists(&bootstrap, topic) {
        read_records(topic).len()
    } else {
        0
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every record of `topic` on the shared broker, parsed, without message keys.
pub fn read_records(topic: &str) -> Vec<Value> {
    read_topic(topic).into_iter().map(|(_, v)| v).collect()
}

/// A port nothing listens on (bound by the OS, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A live range starting shortly and lasting `secs` seconds, on whole seconds.
pub fn live_range(secs: i64) -> (i64, i64) {
    live_range_after(now_ms(), secs)
}

/// A live range starting shortly after `now` (epoch ms: the simulator's clock, for a test that
/// moves it) and lasting `secs` seconds, on whole seconds.
pub fn live_range_after(now: i64, secs: i64) -> (i64, i64) {
    let start = (now / 1000 + 2) * 1000;
    (start, start + secs * 1000)
}
