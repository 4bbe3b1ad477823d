//! The Job protocol against a real broker: telemetry events, control commands, signals, exit
//! codes and metrics, observed from outside the process like queue-manager and Kubernetes do.

mod support;

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use exchange_sim::{Faults, SimConfig, SimServer, Storm};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use support::broker::{client_config, consume_all, create_topic, Broker};
use support::loader::fresh_topic;

/// One job's topics and environment.
struct Setup {
    queue_id: String,
    data_topic: String,
    events_topic: String,
    control_topic: String,
    env: Vec<(&'static str, String)>,
}

fn setup(sim: &SimServer, range: &str, extra: &[(&'static str, &str)]) -> Setup {
    let bootstrap = Broker::shared().bootstrap();
    let queue_id = fresh_topic("queue");
    let (data_topic, events_topic, control_topic) = (
        format!("{queue_id}-data"),
        format!("{queue_id}-events"),
        format!("{queue_id}-control"),
    );
    create_topic(&bootstrap, &control_topic, 1);
    create_topic(&bootstrap, &events_topic, 1);
    let mut env: Vec<(&'static str, String)> = vec![
        ("QUEUE_ID", queue_id.clone()),
        ("SYMBOL", "BTCUSDT".into()),
        ("TYPE", "api_candles_1m".into()),
        ("TIME_RANGE", range.into()),
        ("KAFKA_TOPIC", data_topic.clone()),
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("BINANCE_API_URL", sim.base_url()),
        ("QUEUE_EVENTS_TOPIC", events_topic.clone()),
        ("CONTROL_TOPIC", control_topic.clone()),
        ("TELEMETRY_PRODUCER_ID", format!("{queue_id}__abc123")),
        ("TELEMETRY_INTERVAL", "0.3".into()),
        ("METRICS_PORT", "0".into()),
    ];
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k, v.to_string()));
    }
    Setup {
        queue_id,
        data_topic,
        events_topic,
        control_topic,
        env,
    }
}

fn spawn(env: &[(&'static str, String)]) -> Child {
    support::loader::spawn_loader(env)
}

struct Exit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn wait(mut child: Child, limit: Duration) -> Exit {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = String::new();
            let mut stderr = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return Exit {
                code: status.code(),
                stdout,
                stderr,
                took: started.elapsed(),
            };
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the loader did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(s: &Setup) -> Vec<Value> {
    consume_all(&Broker::shared().bootstrap(), &s.events_topic, &[])
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(
                k.as_deref(),
                Some(s.queue_id.as_bytes()),
                "events are keyed by queue_id"
            );
            serde_json::from_slice(&v).expect("events are JSON")
        })
        .collect()
}

fn wait_for_event(s: &Setup, status: &str, limit: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let ev = events(s);
        if ev.iter().any(|e| e["status"] == status) {
            return ev;
        }
        assert!(
            started.elapsed() < limit,
            "no {status} event within {limit:?}: {ev:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_control(s: &Setup, payload: &str) {
    let producer: BaseProducer = client_config(&Broker::shared().bootstrap(), &[])
        .create()
        .unwrap();
    producer
        .send(BaseRecord::<(), str>::to(&s.control_topic).payload(payload))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn statuses(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["status"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn data_count(s: &Setup) -> u64 {
    consume_all(&Broker::shared().bootstrap(), &s.data_topic, &[]).len() as u64
}

/// Checks the fields every reader of queue-events needs, with their types.
fn assert_event_shape(e: &Value, s: &Setup) {
    assert_eq!(e["queue_id"], s.queue_id);
    assert_eq!(e["symbol"], "BTCUSDT");
    assert_eq!(e["type"], "api_candles_1m");
    assert_eq!(e["producer"], format!("{}__abc123", s.queue_id));
    assert_eq!(e["telemetry_id"], e["producer"]);
    assert_eq!(e["event"], e["status"]);
    assert!(e["message"].is_string());
    assert!(e["records_written"].is_u64());
    assert!(e["finished"].is_boolean());
    assert!(e["timestamp"].is_f64() && e["timestamp"].as_f64().unwrap() > 1.6e9);
    assert!(e["sent_at"].is_number());
    assert_eq!(e["kafka_topic"], s.data_topic);
    assert!(e["time_range"].is_string());
    let p = e["progress"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    assert!(e["records_per_second"].is_number());
    let terminal = ["finished", "interrupted", "error"].contains(&e["status"].as_str().unwrap());
    assert_eq!(e["finished"], terminal);
    assert_eq!(e.get("finished_at").is_some(), terminal);
}

async fn slow_sim() -> SimServer {
    // 150 ms per response and one request at a time: a month of 1m candles takes several seconds.
    let faults = Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    };
    support::sim(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_load_reports_started_loading_and_one_finished() {
    let sim = slow_sim().await;
    let s = setup(
        &sim,
        "2024-01-01:2024-01-11",
        &[("FETCH_CONCURRENCY", "1"), ("SOURCE", "rest")],
    );
    let env = s.env.clone();
    let exit = tokio::task::spawn_blocking(move || wait(spawn(&env), Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    let ev = tokio::task::spawn_blocking({
        let s2 = Setup { env: vec![], ..s };
        move || (events(&s2), data_count(&s2), s2)
    })
    .await
    .unwrap();
    let (ev, count, s) = ev;
    let st = statuses(&ev);
    assert_eq!(st.first().map(String::as_str), Some("started"), "{st:?}");
    assert_eq!(st.last().map(String::as_str), Some("finished"), "{st:?}");
    assert!(st.iter().filter(|x| *x == "loading").count() >= 2, "{st:?}");
    assert_eq!(
        st.iter()
            .filter(|x| ["finished", "interrupted", "error"].contains(&x.as_str()))
            .count(),
        1
    );
    for e in &ev {
        assert_event_shape(e, &s);
    }
    assert_eq!(count, 14_400);
    let last = ev.last().unwrap();
    assert_eq!(
        last["records_written"], count,
        "finished counts exactly what is in the topic"
    );
    assert_eq!(last["progress"], 1.0);
    assert_eq!(last["message"], "Loaded and published 14400 records");
    assert!(last["rate_limit_weight"]["budget"].is_u64());
    // records_written never decreases and never exceeds the final count.
    let counts: Vec<u64> = ev
        .iter()
        .map(|e| e["records_written"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    sim.shutdown().await;
}

fn scrape(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port answers");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_command_ends_the_job_quickly_with_interrupted_and_exit_0() {
    let sim = slow_sim().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let s = setup(
        &sim,
        "2024-01-01:2024-03-01",
        &[("FETCH_CONCURRENCY", "1"), ("SOURCE", "rest")],
    );
    let mut env = s.env.clone();
    env.retain(|(k, _)| *k != "METRICS_PORT");
    env.push(("METRICS_PORT", port.clone()));
    let (exit, ev, count, metrics, health) = tokio::task::spawn_blocking(move || {
        let child = spawn(&env);
        wait_for_event(&s, "loading", Duration::from_secs(60));
        let metrics = scrape(port.parse().unwrap(), "/metrics");
        let health = scrape(port.parse().unwrap(), "/healthz");
        // Other queues' commands and garbage are ignored.
        send_control(&s, r#"{"command":"stop","queue_id":"someone-else"}"#);
        send_control(&s, "this is not json");
        send_control(&s, r#"{"command":"launch","queue_id":"all"}"#);
        send_control(
            &s,
            &format!(
                r#"{{"command":"ping","queue_id":"{}","timestamp":1234.5}}"#,
                s.queue_id
            ),
        );
        wait_for_event(&s, "pong", Duration::from_secs(20));
        let before_stop = Instant::now();
        send_control(
            &s,
            &format!(r#"{{"command":"stop","queue_id":"{}"}}"#, s.queue_id),
        );
        let exit = wait(child, Duration::from_secs(60));
        assert!(
            before_stop.elapsed() < Duration::from_secs(10),
            "took {:?} to stop",
            before_stop.elapsed()
        );
        (exit, events(&s), data_count(&s), metrics, health)
    })
    .await
    .unwrap();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    assert!(
        exit.stdout.contains("Stopped on request"),
        "{}",
        exit.stdout
    );
    let st = statuses(&ev);
    assert_eq!(st.last().map(String::as_str), Some("interrupted"), "{st:?}");
    assert_eq!(
        st.iter()
            .filter(|x| ["finished", "interrupted", "error"].contains(&x.as_str()))
            .count(),
        1,
        "{st:?}"
    );
    assert_eq!(ev.last().unwrap()["reason"], "stop_command");
    let pong = ev.iter().find(|e| e["status"] == "pong").unwrap();
    assert_eq!(pong["ping_timestamp"], 1234.5);
    let last = ev.last().unwrap();
    assert_eq!(
        last["records_written"], count,
        "interrupted reports exactly what reached the topic"
    );
    assert!(count > 0 && count < 86_400, "stopped mid-load: {count}");
    assert!(
        metrics.contains("loader_records_published_total")
            && metrics.contains("loader_rest_requests_total"),
        "{metrics}"
    );
    assert!(
        // Every metric names the job's market and type.
        metrics.contains(
            "loader_status{exchange=\"binance\",market=\"spot\",type=\"api_candles_1m\",status=\"loading\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        health.starts_with("HTTP/1.1 200") && health.contains("loading"),
        "{health}"
    );
    sim.shutdown().await;
}

/// A stop addressed to every queue is the platform's word: exit 0. SIGTERM (a node drain, an
/// eviction, a preemption) is not: the job publishes what it fetched, reports `interrupted`
/// with the reason, exits 143 (so a `restartPolicy: Never` Job does not count the load as done),
/// and the next attempt resumes and finishes the range, every record once.
#[tokio::test(flavor = "multi_thread")]
async fn stop_addressed_to_all_exits_0_and_sigterm_exits_143_then_the_rerun_finishes() {
    let sim = slow_sim().await;
    for how in ["all", "sigterm"] {
        let s = setup(
            &sim,
            "2024-01-01:2024-03-01",
            &[("FETCH_CONCURRENCY", "1"), ("SOURCE", "rest")],
        );
        let env = s.env.clone();
        let (exit, ev, s) = tokio::task::spawn_blocking(move || {
            let child = spawn(&env);
            wait_for_event(&s, "loading", Duration::from_secs(60));
            if how == "all" {
                send_control(&s, r#"{"command":"stop","queue_id":"all"}"#);
            } else {
                let ok = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
            let exit = wait(child, Duration::from_secs(30));
            let ev = events(&s);
            (exit, ev, s)
        })
        .await
        .unwrap();
        assert!(
            exit.took < Duration::from_secs(15),
            "{how}: took {:?}",
            exit.took
        );
        let last = ev.last().unwrap();
        assert_eq!(last["status"], "interrupted", "{how}: {ev:?}");
        if how == "all" {
            assert_eq!(exit.code, Some(0), "{how}: {}", exit.stderr);
            assert_eq!(last["reason"], "stop_command", "{last}");
            continue;
        }
        assert_eq!(exit.code, Some(143), "{how}: {}", exit.stderr);
        assert_eq!(last["reason"], "signal", "{last}");
        assert_eq!(last["signal"], "SIGTERM", "{last}");
        let published = tokio::task::spawn_blocking({
            let s2 = Setup {
                env: vec![],
                queue_id: s.queue_id.clone(),
                data_topic: s.data_topic.clone(),
                events_topic: s.events_topic.clone(),
                control_topic: s.control_topic.clone(),
            };
            move || data_count(&s2)
        })
        .await
        .unwrap();
        assert_eq!(
            last["records_written"], published,
            "interrupted reports exactly what reached the topic"
        );
        assert!(published > 0 && published < 86_400, "mid-load: {published}");
        // Kubernetes starts the pod again with the same environment: it resumes and finishes.
        let env = s.env.clone();
        let rerun = tokio::task::spawn_blocking(move || {
            let mut env = env;
            env.retain(|(k, _)| *k != "FETCH_CONCURRENCY");
            wait(spawn(&env), Duration::from_secs(120))
        })
        .await
        .unwrap();
        assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
        assert!(rerun.stdout.contains("resumed after"), "{}", rerun.stdout);
        let verify = support::loader::verify_topic(
            &s.data_topic,
            "2024-01-01:2024-03-01",
            &[
                ("TYPE", "api_candles_1m".to_string()),
                ("SYMBOL", "BTCUSDT".to_string()),
            ],
            &["--offline"],
        );
        assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
        let report: Value = serde_json::from_str(&verify.stdout).unwrap();
        assert_eq!(report["records"], 86_400, "{report}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ban_that_outlasts_the_retry_budget_ends_in_one_error_event_and_exit_4() {
    let sim = slow_sim().await;
    let s = setup(
        &sim,
        "2024-01-01:2024-03-01",
        &[
            ("MAX_RETRY_AFTER", "10"),
            ("FETCH_CONCURRENCY", "1"),
            ("SOURCE", "rest"),
        ],
    );
    let env = s.env.clone();
    let child = spawn(&env);
    let s = tokio::task::spawn_blocking(move || {
        wait_for_event(&s, "loading", Duration::from_secs(60));
        s
    })
    .await
    .unwrap();
    // Mid-load, Binance bans the IP for 15 minutes: longer than the job may wait.
    sim.set_faults(Faults {
        latency: Duration::from_millis(150),
        storm: Some(Storm {
            status: 418,
            count: 1000,
            retry_after_secs: 900,
            code: None,
        }),
        ..Faults::default()
    });
    let (exit, ev) =
        tokio::task::spawn_blocking(move || (wait(child, Duration::from_secs(60)), events(&s)))
            .await
            .unwrap();
    assert_eq!(exit.code, Some(4), "{}", exit.stderr);
    assert!(!exit.stderr.contains("panicked"));
    // The last words are the error, as one JSON log line (off a terminal).
    let last: Value = serde_json::from_str(exit.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR", "{}", exit.stderr);
    assert!(last["message"].as_str().unwrap().contains("418"), "{last}");
    let st = statuses(&ev);
    assert_eq!(st.first().map(String::as_str), Some("started"), "{st:?}");
    assert_eq!(st.last().map(String::as_str), Some("error"), "{st:?}");
    assert_eq!(
        st.iter()
            .filter(|x| ["finished", "interrupted", "error"].contains(&x.as_str()))
            .count(),
        1,
        "{st:?}"
    );
    let err = ev.last().unwrap();
    assert!(
        err["error_message"].as_str().unwrap().contains("418"),
        "{err}"
    );
    assert_eq!(err["finished"], true);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_symbol_is_reported_as_an_error_event_with_exit_2() {
    let sim = support::sim(SimConfig::default()).await;
    let s = setup(
        &sim,
        "2024-01-01:2024-01-02",
        &[("SYMBOL", "NOSUCHCOIN"), ("KAFKA_PASSWORD_PRODUCER", "")],
    );
    let env = s.env.clone();
    let (exit, ev) = tokio::task::spawn_blocking(move || {
        (wait(spawn(&env), Duration::from_secs(60)), events(&s))
    })
    .await
    .unwrap();
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert_eq!(statuses(&ev).last().map(String::as_str), Some("error"));
    assert!(ev.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("NOSUCHCOIN"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_that_creates_the_control_topic_is_still_obeyed() {
    // The control topic does not exist when the job starts; the stop sent after `started`
    // creates it. The listener must read it from its start, not from after that stop.
    let sim = slow_sim().await;
    let mut s = setup(
        &sim,
        "2024-01-01:2024-03-01",
        &[("FETCH_CONCURRENCY", "1"), ("SOURCE", "rest")],
    );
    s.control_topic = fresh_topic("control-not-yet");
    s.env.retain(|(k, _)| *k != "CONTROL_TOPIC");
    s.env.push(("CONTROL_TOPIC", s.control_topic.clone()));
    let (exit, ev) = tokio::task::spawn_blocking(move || {
        let child = spawn(&s.env);
        wait_for_event(&s, "started", Duration::from_secs(30));
        send_control(
            &s,
            &format!(r#"{{"command":"stop","queue_id":"{}"}}"#, s.queue_id),
        );
        (wait(child, Duration::from_secs(60)), events(&s))
    })
    .await
    .unwrap();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    let st = statuses(&ev);
    assert_eq!(
        st.last().map(String::as_str),
        Some("interrupted"),
        "the stop was missed: {st:?}"
    );
    assert!(exit.took < Duration::from_secs(30), "took {:?}", exit.took);
    sim.shutdown().await;
}
