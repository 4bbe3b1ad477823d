//! Configuration errors, `--help` and secrets, through the real binary: every bad input exits
//! with code 2 (or 1 for an unreachable broker) and a message naming the variable, before
//! anything is published.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use exchange_sim::{SimConfig, SimServer};

fn loader(envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loader-producer"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("the loader binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const VALID: &[(&str, &str)] = &[
    ("SYMBOL", "BTCUSDT"),
    ("TYPE", "api_candles_1m"),
    ("TIME_RANGE", "2024-01-01:2024-01-02"),
    ("KAFKA_TOPIC", "candles"),
    ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
    ("METRICS_PORT", "0"),
];

fn with(
    overrides: &[(&'static str, &'static str)],
    drop: &[&str],
) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = VALID
        .iter()
        .copied()
        .filter(|(k, _)| !drop.contains(k) && !overrides.iter().any(|(o, _)| o == k))
        .collect();
    v.extend_from_slice(overrides);
    v
}

/// Environment, the variable the message must name, and a hint it must give.
type Case = (
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

#[test]
fn each_bad_setting_exits_2_naming_its_variable() {
    let cases: Vec<Case> = vec![
        (with(&[], &["SYMBOL"]), "SYMBOL", "BTCUSDT"),
        (with(&[("SYMBOL", "BTC/USDT")], &[]), "SYMBOL", "BTCUSDT"),
        (with(&[], &["TYPE"]), "TYPE", "api_trades"),
        (
            with(&[("TYPE", "candles_1m")], &[]),
            "TYPE",
            "api_candles_<interval>",
        ),
        (with(&[("TYPE", "api_candles_7m")], &[]), "interval", "1M"),
        (
            with(&[("TYPE", "api_candles")], &[]),
            "INTERVAL",
            "api_candles_1m",
        ),
        (with(&[], &["TIME_RANGE"]), "TIME_RANGE", "START:END"),
        (
            with(&[("TIME_RANGE", "yesterday")], &[]),
            "TIME_RANGE",
            "YYYY-MM-DD",
        ),
        (
            with(&[("TIME_RANGE", "2024-02-01:2024-01-01")], &[]),
            "TIME_RANGE",
            "ends before it starts",
        ),
        (
            with(&[("TIME_RANGE", "1704067200000:1704067200000")], &[]),
            "TIME_RANGE",
            "empty",
        ),
        (
            with(&[], &["KAFKA_BOOTSTRAP_SERVERS"]),
            "KAFKA_BOOTSTRAP_SERVERS",
            "host:port",
        ),
        (
            with(&[("KAFKA_TOPIC", "bad topic!")], &[]),
            "KAFKA_TOPIC",
            "topic name",
        ),
        (
            with(&[("RATE_LIMIT_SHARE", "1.5")], &[]),
            "RATE_LIMIT_SHARE",
            "at most 1",
        ),
        (
            with(&[("RATE_LIMIT_SHARE", "0")], &[]),
            "RATE_LIMIT_SHARE",
            "greater than 0",
        ),
        (with(&[("LIMIT", "5000")], &[]), "PAGE_LIMIT", "1000"),
        (
            with(&[("KAFKA_MESSAGE_KEY", "random")], &[]),
            "KAFKA_MESSAGE_KEY",
            "symbol, record or none",
        ),
        (
            with(&[("KAFKA_USER", "loader")], &[]),
            "KAFKA_PASSWORD_PRODUCER",
            "both",
        ),
        (
            with(&[("KAFKA_PASSWORD_PRODUCER", "s3cret-pw")], &[]),
            "KAFKA_USER_PRODUCER",
            "both",
        ),
        (
            with(
                &[
                    ("KAFKA_USER", "loader"),
                    ("KAFKA_PASSWORD", "s3cret-pw"),
                    ("KAFKA_CA_PATH", "/nonexistent/ca.crt"),
                ],
                &[],
            ),
            "CA_PATH",
            "/nonexistent/ca.crt",
        ),
        (
            with(&[("KAFKA_PRODUCER_CONFIG", "linger.ms")], &[]),
            "KAFKA_PRODUCER_CONFIG",
            "key=value",
        ),
        (
            with(&[("BINANCE_API_URL", "api.binance.com")], &[]),
            "BINANCE_API_URL",
            "http",
        ),
        (
            with(&[("TELEMETRY_INTERVAL", "-1")], &[]),
            "TELEMETRY_INTERVAL",
            "positive",
        ),
    ];
    for (env, var, hint) in cases {
        let out = loader(&env, &[]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{env:?}: expected exit 2, got {:?}; stderr: {err}",
            out.status
        );
        assert!(
            err.contains(var) && err.contains(hint),
            "{env:?}: message should name {var} and say {hint:?}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
        assert!(!err.contains("s3cret-pw"), "a secret leaked: {err}");
    }
}

#[test]
fn help_documents_every_variable_and_hides_secret_values() {
    let out = loader(
        &[
            ("KAFKA_PASSWORD_PRODUCER", "hunter2-secret"),
            ("BINANCE_API_SECRET", "api-secret-value"),
            ("KAFKA_PRODUCER_CONFIG", "sasl.password=zzz-secret"),
        ],
        &["--help"],
    );
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "QUEUE_ID",
        "SYMBOL",
        "TYPE",
        "TIME_RANGE",
        "INTERVAL",
        "KAFKA_TOPIC",
        "TELEMETRY_PRODUCER_ID",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_USER_PRODUCER",
        "KAFKA_PASSWORD_PRODUCER",
        "CA_PATH",
        "QUEUE_CONTROL_TOPIC",
        "QUEUE_EVENTS_TOPIC",
        "BINANCE_API_URL",
        "BINANCE_WS_URL",
        "BINANCE_API_KEY",
        "BINANCE_API_SECRET",
        "TELEMETRY_INTERVAL",
        "DEBUG",
        "KAFKA_PRODUCER_CONFIG",
        "RATE_LIMIT_SHARE",
        "KAFKA_USER",
        "KAFKA_PASSWORD",
        "KAFKA_CA_PATH",
        "CONTROL_TOPIC",
        "TELEMETRY_TOPIC",
        "Exit codes",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
    for secret in ["hunter2-secret", "api-secret-value", "zzz-secret"] {
        assert!(!help.contains(secret), "--help shows a secret value");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_symbol_is_a_config_error_and_an_unreachable_broker_fails_fast() {
    let sim = SimServer::start(SimConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = sim.base_url();
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            loader(
                &with(
                    &[
                        ("SYMBOL", "NOSUCHCOIN"),
                        ("BINANCE_API_URL", Box::leak(url.into_boxed_str())),
                    ],
                    &[],
                ),
                &[],
            )
        }
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SYMBOL NOSUCHCOIN") && err.contains("-1121"),
        "{err}"
    );

    // A closed port: the job must give up within KAFKA_CONNECT_TIMEOUT, not hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let bootstrap: &'static str = Box::leak(closed.to_string().into_boxed_str());
        let url: &'static str = Box::leak(url.into_boxed_str());
        loader(
            &with(
                &[
                    ("BINANCE_API_URL", url),
                    ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
                    ("KAFKA_CONNECT_TIMEOUT", "2"),
                ],
                &[],
            ),
            &[],
        )
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach Kafka") && err.contains("KAFKA_BOOTSTRAP_SERVERS"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    sim.shutdown().await;
}

#[test]
fn the_offline_demo_loads_and_verifies_both_rest_types() {
    for args in [
        &["demo", "--days", "2"][..],
        &[
            "demo",
            "--type",
            "api_trades",
            "--days",
            "1",
            "--symbol",
            "ETHUSDT",
        ][..],
    ] {
        let out = loader(&[], args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {stdout}\n{}",
            stderr(&out)
        );
        assert!(
            stdout.contains("verdict: OK") && stdout.contains("demo OK"),
            "{stdout}"
        );
    }
}
