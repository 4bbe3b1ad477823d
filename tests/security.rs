//! Production Kafka is SASL_SSL with SCRAM-SHA-512 and a custom CA. Against a real broker that
//! requires exactly that: a load succeeds and is read back; a wrong password, a CA that did not
//! sign the broker's certificate and a missing CA file each fail fast with a clear error and exit
//! 2 (a retry repeats them); credentials given in KAFKA_PRODUCER_CONFIG reach every Kafka client.

mod support;

use std::time::{Duration, Instant};

use exchange_sim::{SimConfig, SimServer};
use support::broker::{as_extra, consume_all, Broker, SecureBroker};
use support::loader::{run_loader_async, Run};

fn env(sim: &SimServer, b: &SecureBroker, password: &str, ca: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SYMBOL", "ETHUSDT".into()),
        ("TYPE", "api_candles_1h".into()),
        ("TIME_RANGE", "2024-01-01:2024-01-08".into()),
        ("KAFKA_TOPIC", "secure-candles".into()),
        ("KAFKA_BOOTSTRAP_SERVERS", b.bootstrap()),
        // The platform's alias names, as its manifests use them.
        ("KAFKA_USER", b.user.clone()),
        ("KAFKA_PASSWORD", password.into()),
        ("KAFKA_CA_PATH", ca.into()),
        ("KAFKA_CONNECT_TIMEOUT", "8".into()),
        ("BINANCE_API_URL", sim.base_url()),
        ("METRICS_PORT", "0".into()),
    ]
}

fn assert_fast_clear_failure(run: &Run, took: Duration, code: i32, needles: &[&str], secret: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    // Off a terminal the last words are one JSON log line, printed once.
    let last_line = run.stderr.lines().last().unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(last_line)
        .unwrap_or_else(|_| panic!("the last words are a JSON log line: {}", run.stderr));
    assert_eq!(line["level"], "ERROR", "{last_line}");
    let last_line = line["message"].as_str().unwrap_or_default();
    let error_lines = run
        .stderr
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") && l.contains(last_line))
        .count();
    assert_eq!(error_lines, 1, "the error is printed once: {}", run.stderr);
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("error: ")),
        "no second, plain copy: {}",
        run.stderr
    );
    for n in needles {
        assert!(
            last_line.contains(n),
            "expected {n:?} in {last_line}\nfull stderr:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains(secret) && !run.stdout.contains(secret),
        "the password leaked"
    );
    assert!(!run.stderr.contains("panicked"));
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}: it must fail fast, not hang"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_ssl_scram_sha_512_with_a_custom_ca() {
    let secure = tokio::task::spawn_blocking(|| Broker::secured("loader", "correct-horse-battery"))
        .await
        .unwrap();
    let sim = support::sim(SimConfig::default()).await;
    let ca = secure.ca_path.display().to_string();

    // The real thing: a load over SASL_SSL, read back with the same credentials.
    let run = run_loader_async(env(&sim, &secure, "correct-horse-battery", &ca), vec![]).await;
    run.assert_ok();
    assert!(
        !run.stderr.contains("correct-horse-battery")
            && !run.stdout.contains("correct-horse-battery")
    );
    let settings = secure.client_settings();
    let bootstrap = secure.bootstrap();
    let records = tokio::task::spawn_blocking(move || {
        consume_all(&bootstrap, "secure-candles", &as_extra(&settings))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 7 * 24);

    // Wrong password.
    let t = Instant::now();
    let run = run_loader_async(env(&sim, &secure, "wrong-password-123", &ca), vec![]).await;
    assert_fast_clear_failure(
        &run,
        t.elapsed(),
        2,
        &["Kafka", "KAFKA_PASSWORD_PRODUCER"],
        "wrong-password-123",
    );

    // A CA that did not sign the broker's certificate.
    let t = Instant::now();
    let other = secure.other_ca_path.display().to_string();
    let run = run_loader_async(env(&sim, &secure, "correct-horse-battery", &other), vec![]).await;
    assert_fast_clear_failure(
        &run,
        t.elapsed(),
        2,
        &["CA_PATH", "certificate"],
        "correct-horse-battery",
    );

    // The right password only in KAFKA_PRODUCER_CONFIG: it overrides the wrong one for every
    // client (data producer, admin, telemetry producer, control listener) and for verify.
    let mut overridden = env(&sim, &secure, "wrong-password-123", &ca);
    overridden.push((
        "KAFKA_PRODUCER_CONFIG",
        "sasl.password=correct-horse-battery".into(),
    ));
    // SASL settings are guarded: overriding them takes the explicit opt-in.
    overridden.push(("KAFKA_ALLOW_UNSAFE_CONFIG", "true".into()));
    overridden.push(("KAFKA_TOPIC", "secure-override".into()));
    overridden.retain(|(k, v)| *k != "KAFKA_TOPIC" || v == "secure-override");
    let run = run_loader_async(overridden.clone(), vec![]).await;
    run.assert_ok();
    assert!(
        !run.stderr
            .to_ascii_lowercase()
            .contains("authentication failed"),
        "a client ignored KAFKA_PRODUCER_CONFIG: {}",
        run.stderr
    );
    let settings = secure.client_settings();
    let bootstrap = secure.bootstrap();
    let events = tokio::task::spawn_blocking(move || {
        consume_all(&bootstrap, "queue-events", &as_extra(&settings))
    })
    .await
    .unwrap();
    let statuses: Vec<String> = events
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<serde_json::Value>(v).ok())
        .filter(|e| e["kafka_topic"] == "secure-override")
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        statuses,
        ["started", "finished"],
        "telemetry reached the secured broker"
    );
    let mut verify_env = overridden.clone();
    verify_env.retain(|(k, _)| {
        [
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_USER",
            "KAFKA_PASSWORD",
            "KAFKA_CA_PATH",
            "KAFKA_PRODUCER_CONFIG",
            "KAFKA_ALLOW_UNSAFE_CONFIG",
            "KAFKA_TOPIC",
            "TIME_RANGE",
        ]
        .contains(k)
    });
    let v = run_loader_async(verify_env, vec!["verify", "--offline"]).await;
    assert_eq!(
        v.code,
        Some(0),
        "verify with the override: {}{}",
        v.stdout,
        v.stderr
    );

    // A CA file that does not exist: a configuration error.
    let t = Instant::now();
    let run = run_loader_async(
        env(
            &sim,
            &secure,
            "correct-horse-battery",
            "/nonexistent/ca.pem",
        ),
        vec![],
    )
    .await;
    assert_fast_clear_failure(
        &run,
        t.elapsed(),
        2,
        &["CA_PATH", "/nonexistent/ca.pem"],
        "correct-horse-battery",
    );

    sim.shutdown().await;
}
