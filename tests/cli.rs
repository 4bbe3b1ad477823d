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
        // Set but empty (a template that did not resolve): the records or events would go
        // where the platform never looks.
        (
            with(&[("KAFKA_TOPIC", "")], &[]),
            "KAFKA_TOPIC",
            "set but empty",
        ),
        (
            with(&[("KAFKA_TOPIC", "  ")], &[]),
            "KAFKA_TOPIC",
            "set but empty",
        ),
        (with(&[("QUEUE_ID", "")], &[]), "QUEUE_ID", "set but empty"),
        (
            with(&[("QUEUE_CONTROL_TOPIC", "")], &[]),
            "QUEUE_CONTROL_TOPIC",
            "set but empty",
        ),
        (
            with(&[("CONTROL_TOPIC", " ")], &[]),
            "CONTROL_TOPIC",
            "set but empty",
        ),
        (
            with(&[("QUEUE_EVENTS_TOPIC", "")], &[]),
            "QUEUE_EVENTS_TOPIC",
            "set but empty",
        ),
        (
            with(&[("TELEMETRY_TOPIC", "")], &[]),
            "TELEMETRY_TOPIC",
            "set but empty",
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
        (with(&[("MARKET", "margin")], &[]), "MARKET", "coinm"),
        (
            with(&[("MARKET", "usdm"), ("TYPE", "ws_trades")], &[]),
            "MARKET=usdm",
            "MARKET=spot",
        ),
        (
            with(&[("MARKET", "spot"), ("TYPE", "api_funding_rate")], &[]),
            "TYPE api_funding_rate",
            "MARKET=usdm or coinm",
        ),
        (
            with(&[("MARKET", "coinm"), ("TYPE", "api_candles_1s")], &[]),
            "TYPE api_candles_1s",
            "exists on MARKET=spot",
        ),
        (
            with(&[("MARKET", "usdm"), ("TYPE", "api_open_interest_1m")], &[]),
            "the interval in TYPE",
            "5m 15m",
        ),
        (
            with(
                &[
                    ("MARKET", "usdm"),
                    ("TYPE", "ws_orderbook"),
                    ("ORDERBOOK_DEPTH", "5000"),
                ],
                &[],
            ),
            "ORDERBOOK_DEPTH",
            "1000",
        ),
        (
            with(
                &[("MARKET", "coinm"), ("WS_STREAMS_PER_CONNECTION", "1024")],
                &[],
            ),
            "WS_STREAMS_PER_CONNECTION",
            "200",
        ),
        (
            with(
                &[("MARKET", "usdm"), ("BINANCE_FAPI_URL", "fapi.binance.com")],
                &[],
            ),
            "BINANCE_FAPI_URL",
            "http",
        ),
        (
            with(
                &[
                    ("MARKET", "coinm"),
                    ("BINANCE_DWS_URL", "dstream.binance.com"),
                ],
                &[],
            ),
            "BINANCE_DWS_URL",
            "ws(s)",
        ),
        (
            with(&[("MARKET", "usdm"), ("LIMIT", "1501")], &[]),
            "PAGE_LIMIT",
            "1500",
        ),
        // Every number has bounds: a tiny interval would round to a zero timer, a huge wait would
        // overflow the clock.
        (
            with(
                &[
                    ("TYPE", "ws_orderbook"),
                    ("ORDERBOOK_SNAPSHOT_INTERVAL", "0.000000001"),
                ],
                &[],
            ),
            "ORDERBOOK_SNAPSHOT_INTERVAL",
            "from 0.1 to 86400",
        ),
        (
            with(&[("WS_ROTATE_AFTER", "1e30")], &[]),
            "WS_ROTATE_AFTER",
            "86400",
        ),
        (
            with(&[("MAX_RETRY_AFTER", "18446744073709551615")], &[]),
            "MAX_RETRY_AFTER",
            "259200",
        ),
        (
            with(&[("MAX_RETRIES", "4294967295")], &[]),
            "MAX_RETRIES",
            "between 0 and 100",
        ),
        (
            with(&[("KAFKA_TOPIC_PARTITIONS", "100000")], &[]),
            "KAFKA_TOPIC_PARTITIONS",
            "10000",
        ),
        (
            with(
                &[("SHARD_COUNT", "5000"), ("JOB_COMPLETION_INDEX", "1")],
                &[],
            ),
            "SHARD_COUNT",
            "1000",
        ),
        // Futures historicalTrades needs a key: found out at start, not on every retry.
        (
            with(&[("MARKET", "usdm"), ("TYPE", "api_raw_trades")], &[]),
            "BINANCE_API_KEY",
            "SOURCE=archive",
        ),
        // COIN-M keeps ratios per pair: two contracts of one pair would publish one series twice.
        (
            with(
                &[
                    ("MARKET", "coinm"),
                    ("TYPE", "api_long_short_ratio_1h"),
                    ("SYMBOL", "BTCUSD_PERP,BTCUSD_250926"),
                ],
                &[],
            ),
            "SYMBOL BTCUSD_250926",
            "per pair",
        ),
        // Plain text only to this machine, unless the user opts in.
        (
            with(&[("BINANCE_API_URL", "http://10.0.0.5:8080")], &[]),
            "BINANCE_API_URL",
            "ALLOW_INSECURE_URLS=true",
        ),
        (
            with(&[("ARCHIVE_URL", "http://data.binance.vision")], &[]),
            "ARCHIVE_URL",
            "https://data.binance.vision",
        ),
        (
            with(
                &[
                    ("TYPE", "ws_trades"),
                    ("BINANCE_WS_URL", "ws://stream.binance.com:9443"),
                ],
                &[],
            ),
            "BINANCE_WS_URL",
            "wss://",
        ),
        // A sharded pod that does not know its index would load shard 0 again.
        (
            with(&[("SHARD_COUNT", "2")], &[]),
            "JOB_COMPLETION_INDEX",
            "completionMode: Indexed",
        ),
        (
            with(&[("SHARD_COUNT", "2")], &[]),
            "SHARD_COUNT=2",
            "JOB_COMPLETION_INDEX is not set",
        ),
        // Overrides of what the exactly-once guarantees rest on need the opt-in.
        (
            with(
                &[(
                    "KAFKA_PRODUCER_CONFIG",
                    "linger.ms=5,enable.idempotence=false",
                )],
                &[],
            ),
            "KAFKA_PRODUCER_CONFIG item 2",
            "enable.idempotence",
        ),
        (
            with(&[("KAFKA_PRODUCER_CONFIG", "acks=1")], &[]),
            "KAFKA_PRODUCER_CONFIG",
            "KAFKA_ALLOW_UNSAFE_CONFIG=true",
        ),
        (
            with(&[("KAFKA_PRODUCER_CONFIG", "sasl.password=s3cret-pw")], &[]),
            "KAFKA_PRODUCER_CONFIG",
            "sasl.password",
        ),
        (
            with(
                &[("KAFKA_CONSUMER_CONFIG", "isolation.level=read_uncommitted")],
                &[],
            ),
            "KAFKA_CONSUMER_CONFIG",
            "isolation.level",
        ),
        (
            with(
                &[
                    ("KAFKA_PRODUCER_CONFIG", "acks=1"),
                    ("KAFKA_ALLOW_UNSAFE_CONFIG", "maybe"),
                ],
                &[],
            ),
            "KAFKA_ALLOW_UNSAFE_CONFIG",
            "--kafka-allow-unsafe-config",
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

/// Environment, arguments, and what the message must say.
type Run = (
    Vec<(&'static str, &'static str)>,
    &'static [&'static str],
    &'static str,
);

#[test]
fn kafka_overrides_are_refused_without_echoing_any_value() {
    let secret = "s3cret-pw";
    let cases: Vec<Run> = vec![
        // A password with a comma: its second half is an item without '='.
        (
            with(
                &[(
                    "KAFKA_PRODUCER_CONFIG",
                    "linger.ms=5,sasl.password=ab,s3cret-pw",
                )],
                &[],
            ),
            &[],
            "KAFKA_PRODUCER_CONFIG item 3 has no '='",
        ),
        (
            with(
                &[
                    ("KAFKA_PRODUCER_CONFIG", "sasl.password=ab,s3cret-pw"),
                    ("KAFKA_ALLOW_UNSAFE_CONFIG", "true"),
                ],
                &[],
            ),
            &[],
            "KAFKA_PRODUCER_CONFIG item 2 has no '='",
        ),
        // A name librdkafka does not know may be a fragment of a secret too.
        (
            with(
                &[("KAFKA_PRODUCER_CONFIG", "no.such.s3cret-pw=s3cret-pw")],
                &[],
            ),
            &[],
            "KAFKA_PRODUCER_CONFIG item 1: librdkafka does not accept this property",
        ),
        (
            with(
                &[("KAFKA_CONSUMER_CONFIG", "fetch.wait.max.ms=s3cret-pw")],
                &[],
            ),
            &[],
            "fetch.wait.max.ms",
        ),
        // verify reads the same settings.
        (
            vec![
                ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
                ("KAFKA_PRODUCER_CONFIG", "linger.ms=5,s3cret-pw"),
            ],
            &["verify", "--kafka-topic", "candles"],
            "KAFKA_PRODUCER_CONFIG item 2 has no '='",
        ),
        (
            vec![
                ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
                ("KAFKA_CONSUMER_CONFIG", "isolation.level=read_uncommitted"),
            ],
            &["verify", "--kafka-topic", "candles"],
            "KAFKA_CONSUMER_CONFIG item 1 sets isolation.level",
        ),
    ];
    for (env, args, says) in cases {
        let out = loader(&env, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(says), "{env:?}: should say {says:?}: {err}");
        let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
        assert!(!all.contains(secret), "a value leaked: {all}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_unsafe_opt_in_gets_past_configuration_with_one_warning() {
    let sim = SimServer::start(SimConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url: &'static str = Box::leak(sim.base_url().into_boxed_str());
    let out = tokio::task::spawn_blocking(move || {
        loader(
            &with(
                &[
                    ("BINANCE_API_URL", url),
                    (
                        "KAFKA_PRODUCER_CONFIG",
                        "linger.ms=5,message.timeout.ms=300000",
                    ),
                    ("KAFKA_CONSUMER_CONFIG", "isolation.level=read_committed"),
                    ("KAFKA_ALLOW_UNSAFE_CONFIG", "true"),
                    ("KAFKA_CONNECT_TIMEOUT", "1"),
                ],
                &[],
            ),
            &[],
        )
    })
    .await
    .unwrap();
    let err = stderr(&out);
    // Past configuration, the job fails where it should: nothing answers on 127.0.0.1:1.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach Kafka"), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("KAFKA_ALLOW_UNSAFE_CONFIG=true"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("message.timeout.ms")
            && warnings[0].contains("isolation.level")
            && !warnings[0].contains("linger.ms")
            && !warnings[0].contains("300000"),
        "the warning names the guarded keys allowed, no value: {}",
        warnings[0]
    );
    sim.shutdown().await;
}

/// Every environment variable the configuration defines, from the configuration itself.
fn all_variables() -> Vec<(String, String)> {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
        for a in cmd.get_arguments() {
            if let (Some(env), Some(long)) = (a.get_env(), a.get_long()) {
                let pair = (env.to_string_lossy().into_owned(), long.to_string());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(
        &<loader_producer::config::Cli as clap::CommandFactory>::command(),
        &mut out,
    );
    out
}

#[test]
fn help_and_readme_document_every_variable_and_hide_secret_values() {
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
    let verify_help =
        String::from_utf8_lossy(&loader(&[], &["verify", "--help"]).stdout).into_owned();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let vars = all_variables();
    assert!(
        vars.len() > 40,
        "the configuration defines {} variables",
        vars.len()
    );
    for (var, _) in &vars {
        assert!(
            help.contains(var.as_str()) || verify_help.contains(var.as_str()),
            "--help does not mention {var}"
        );
        assert!(
            readme.contains(&format!("`{var}`")),
            "the README does not document {var}"
        );
    }
    // Every data type and every source is described, not only the REST ones.
    for word in [
        "api_raw_trades",
        "ws_orderbook",
        "ws_bookticker",
        "data.binance.vision",
        "Exit codes",
    ] {
        assert!(help.contains(word), "--help does not mention {word}");
    }
    for secret in ["hunter2-secret", "api-secret-value", "zzz-secret"] {
        assert!(!help.contains(secret), "--help shows a secret value");
    }
}

#[test]
fn a_malformed_value_names_the_variable_the_user_set() {
    let vars = all_variables();
    let outcomes: Vec<(String, String, Output)> = std::thread::scope(|s| {
        let runs: Vec<_> = vars
            .iter()
            .map(|(var, flag)| {
                s.spawn(move || {
                    // "soon" is no number, boolean or duration: every typed setting must refuse
                    // it by name. Nothing answers on port 1: a setting that passes fails fast at
                    // connecting instead.
                    let fast = [
                        ("BINANCE_API_URL", "http://127.0.0.1:1"),
                        ("MAX_RETRIES", "0"),
                        ("SOURCE", "rest"),
                        ("KAFKA_CONNECT_TIMEOUT", "1"),
                    ];
                    let mut env: Vec<(&str, &str)> = VALID
                        .iter()
                        .chain(&fast)
                        .copied()
                        .filter(|(k, _)| *k != var)
                        .collect();
                    env.push((var.as_str(), "soon"));
                    (var.clone(), flag.clone(), loader(&env, &[]))
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut rejected = 0;
    for (var, flag, out) in outcomes {
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{var}: {err}");
        if out.status.code() == Some(2) && err.contains(&format!("--{flag}")) {
            rejected += 1;
            assert!(
                err.contains(&format!("{var}=\"soon\"")),
                "{var}: the message must name the variable, not only --{flag}: {err}"
            );
        }
    }
    assert!(
        rejected >= 15,
        "only {rejected} settings refused a malformed value"
    );
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
fn the_offline_demo_loads_and_verifies_both_rest_types_futures_and_bybit() {
    for args in [
        &[
            "demo",
            "--exchange",
            "bybit",
            "--market",
            "inverse",
            "--days",
            "2",
        ][..],
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
        &["demo", "--market", "usdm", "--days", "1"][..],
        &[
            "demo",
            "--market",
            "coinm",
            "--type",
            "api_open_interest_15m",
            "--days",
            "2",
        ][..],
        // A live type streams the next seconds; Bybit lists its trades only in its archive, so
        // verify asks the simulator once it has lived through the day.
        &["demo", "--exchange", "bybit", "--type", "ws_trades"][..],
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
