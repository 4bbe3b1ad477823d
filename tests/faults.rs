//! Faults survived with nothing lost and nothing doubled, against real processes: the loader
//! binary killed with SIGKILL and restarted with the same environment (as Kubernetes restarts a
//! Job's pod), the broker (nisshi with sqlite storage, which keeps what it acknowledged) stopped
//! and restarted, the exchange unreachable, a stop followed by a new job, two instances of one
//! job at once (the second waits for the job's lease, also when the first is killed); each ends with
//! `loader-producer verify` finding every record of the range exactly once.

mod support;

use support::sim;

use std::process::Child;
use std::time::Duration;

use exchange_sim::{Faults, SimConfig, SimServer, WsFaults};
use rand::Rng;
use serde_json::Value;
use support::broker::{group_members, message_count, Broker};
use support::loader::{fresh_topic, run_loader_async, wait_until, with, Run};

/// A REST load slow enough to be interrupted anywhere: one request at a time, 40 ms each.
fn slow_sim() -> SimConfig {
    slower_sim(40)
}

fn slower_sim(latency_ms: u64) -> SimConfig {
    SimConfig {
        faults: Faults {
            latency: Duration::from_millis(latency_ms),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

fn job_env(
    broker: &Broker,
    sim: &SimServer,
    topic: &str,
    symbols: &str,
    ty: &str,
    range: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("SYMBOL", symbols.into()),
        ("TYPE", ty.into()),
        ("TIME_RANGE", range.into()),
        ("KAFKA_TOPIC", topic.into()),
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("BINANCE_API_URL", sim.base_url()),
        ("BINANCE_WS_URL", sim.ws_url()),
        ("QUEUE_ID", format!("q-{topic}")),
        ("QUEUE_EVENTS_TOPIC", format!("{topic}-events")),
        ("QUEUE_CONTROL_TOPIC", format!("{topic}-control")),
        ("SOURCE", "rest".into()),
        ("FETCH_CONCURRENCY", "1".into()),
        ("METRICS_PORT", "0".into()),
        ("KAFKA_CONNECT_TIMEOUT", "5".into()),
    ]
}

fn spawn(env: &[(&'static str, String)]) -> Child {
    support::loader::spawn_loader(env)
}

/// Starts the job and waits until a third of its `total` records are in the topic.
async fn spawn_until_a_third(
    env: &[(&'static str, String)],
    broker: &Broker,
    topic: &str,
    total: i64,
) -> Child {
    let child = spawn(env);
    let b = broker.bootstrap();
    wait_until("a third loaded", Duration::from_secs(60), || {
        message_count(&b, topic) >= total / 3
    })
    .await;
    child
}

/// Runs the job again: it resumes after the earlier attempt, and the topic ends up holding
/// every candle of the range once.
async fn rerun_resumes(
    env: Vec<(&'static str, String)>,
    broker: &Broker,
    topic: &str,
    range: &str,
    symbol: &str,
    total: i64,
) {
    let run = run_loader_async(env, vec![]).await;
    run.assert_ok();
    assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
    verify_clean(broker, topic, range, "api_candles_1m", symbol, total as u64).await;
}

async fn finish_async(child: Child) -> Run {
    tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap()
}

fn finish(child: Child) -> Run {
    child.wait_with_output().expect("loader exits").into()
}

/// `verify` of the whole range on `broker`: every record once.
async fn verify_clean(
    broker: &Broker,
    topic: &str,
    range: &str,
    ty: &str,
    symbols: &str,
    expected: u64,
) {
    let env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", topic.to_string()),
        ("TIME_RANGE", range.to_string()),
        ("TYPE", ty.to_string()),
        ("SYMBOL", symbols.to_string()),
    ];
    let v = run_loader_async(env, vec!["verify", "--json", "--offline"]).await;
    assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(report["records"], expected, "{report}");
    for g in report["groups"].as_array().unwrap() {
        assert_eq!(
            (g["duplicates"].as_u64(), g["missing"].as_u64()),
            (Some(0), Some(0)),
            "{g}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_five_times_at_random_points_then_resumed_exactly_once() {
    let broker = Broker::durable();
    let sim = sim(slow_sim()).await;
    let topic = fresh_topic("killed");
    let (symbols, range) = ("BTCUSDT,ETHUSDT", "2024-01-01:2024-01-31");
    let total = 2 * 30 * 1440;
    // Three partitions: each symbol resumes from its own partition.
    let mut env = job_env(&broker, &sim, &topic, symbols, "api_candles_1m", range);
    env.push(("KAFKA_TOPIC_PARTITIONS", "3".into()));
    let mut rng = rand::rng();
    let seed_points: Vec<i64> = (0..5)
        .map(|i| (total / 7) * (i + 1) + rng.random_range(0..total / 14))
        .collect();
    println!("kill points: {seed_points:?}");
    let mut resumed = 0;
    for point in seed_points {
        let mut child = spawn(&env);
        let b = broker.bootstrap();
        wait_until(
            "the load passes the kill point",
            Duration::from_secs(60),
            || message_count(&b, &topic) >= point,
        )
        .await;
        // Memory stays flat whatever point the load has reached.
        let hwm_kb = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|st| {
                st.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        assert!(hwm_kb < 100 * 1024, "peak RSS {hwm_kb} kB");
        child.kill().expect("SIGKILL");
        let run = finish(child);
        assert_eq!(run.code, None, "killed by a signal");
        // Killed, it printed no summary; its log says whether it resumed.
        resumed += run
            .stderr
            .contains("resuming after what an earlier attempt published") as u32;
    }
    let run = finish(spawn(&env));
    run.assert_ok();
    assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
    assert!(resumed >= 3, "most restarts resumed: {resumed}");
    verify_clean(
        &broker,
        &topic,
        range,
        "api_candles_1m",
        symbols,
        total as u64,
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_restarting_mid_load_is_ridden_out_or_resumed_after() {
    let mut broker = Broker::durable();
    let sim = sim(slower_sim(150)).await;
    let range = "2024-01-01:2024-01-21";
    let total = 20 * 1440;

    // A short outage: the loader waits for the broker and finishes by itself.
    let topic = fresh_topic("broker-blip");
    let env = job_env(&broker, &sim, &topic, "BTCUSDT", "api_candles_1m", range);
    let child = spawn_until_a_third(&env, &broker, &topic, total).await;
    broker.stop();
    // The loader goes on fetching while Kafka is away (librdkafka holds the records), and waits.
    let pages = (total as u64).div_ceil(1000);
    wait_until(
        "every page fetched during the outage",
        Duration::from_secs(30),
        || {
            sim.stats()
                .per_endpoint
                .get("/api/v3/klines")
                .copied()
                .unwrap_or(0)
                >= pages
        },
    )
    .await;
    let mut child = child;
    if child.try_wait().unwrap().is_some() {
        let run = finish(child);
        panic!(
            "the loader did not ride the outage out: {}\n{}",
            run.stdout, run.stderr
        );
    }
    broker.restart();
    let run = finish_async(child).await;
    run.assert_ok();
    verify_clean(
        &broker,
        &topic,
        range,
        "api_candles_1m",
        "BTCUSDT",
        total as u64,
    )
    .await;

    // Longer than KAFKA_STALL_TIMEOUT: the job gives up (exit 1) without sending anything
    // more, and its restart resumes after what the broker holds.
    let topic = fresh_topic("broker-down");
    let mut env = job_env(&broker, &sim, &topic, "BTCUSDT", "api_candles_1m", range);
    env.push(("KAFKA_STALL_TIMEOUT", "3".into()));
    let child = spawn_until_a_third(&env, &broker, &topic, total).await;
    broker.stop();
    let run = finish_async(child).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    broker.restart();
    rerun_resumes(env, &broker, &topic, range, "BTCUSDT", total).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_exchange_is_retried_or_resumed_after() {
    let broker = Broker::durable();
    let sim = sim(slow_sim()).await;
    let range = "2024-02-01:2024-02-15";
    let total = 14 * 1440;
    let unreachable = |on: bool| Faults {
        latency: Duration::from_millis(40),
        // Every data request's connection is closed without an answer.
        drop_every: u32::from(on),
        ..Faults::default()
    };

    // Back within the retries: the load goes on.
    let topic = fresh_topic("sim-blip");
    let child = spawn_until_a_third(
        &job_env(&broker, &sim, &topic, "ETHUSDT", "api_candles_1m", range),
        &broker,
        &topic,
        total,
    )
    .await;
    sim.set_faults(unreachable(true));
    let dropped = sim.stats().dropped;
    wait_until("requests failing", Duration::from_secs(30), || {
        sim.stats().dropped >= dropped + 2
    })
    .await;
    sim.set_faults(unreachable(false));
    let run = finish_async(child).await;
    run.assert_ok();
    verify_clean(
        &broker,
        &topic,
        range,
        "api_candles_1m",
        "ETHUSDT",
        total as u64,
    )
    .await;

    // Away longer than MAX_RETRIES allows: exit 1, and the restart resumes.
    let topic = fresh_topic("sim-down");
    let mut env = job_env(&broker, &sim, &topic, "ETHUSDT", "api_candles_1m", range);
    env.push(("MAX_RETRIES", "1".into()));
    let child = spawn_until_a_third(&env, &broker, &topic, total).await;
    sim.set_faults(unreachable(true));
    let run = finish_async(child).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    sim.set_faults(unreachable(false));
    rerun_resumes(env, &broker, &topic, range, "ETHUSDT", total).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_job_is_continued_by_the_next_one_and_live_trades_resume_by_id() {
    let broker = Broker::durable();
    let sim = sim(slow_sim()).await;
    let range = "2024-03-01:2024-03-15";
    let total = 14 * 1440;
    let topic = fresh_topic("stopped");
    let env = job_env(&broker, &sim, &topic, "BNBUSDT", "api_candles_1m", range);
    let child = spawn_until_a_third(&env, &broker, &topic, total).await;
    // From here every answer takes a minute: the job cannot finish before the stop reaches it
    // however fast the machine (the rest of the range took under a second), so the stop has to
    // cancel the request in flight.
    sim.set_faults(Faults {
        latency: Duration::from_secs(60),
        ..Faults::default()
    });
    let stop = format!(r#"{{"command":"stop","queue_id":"q-{topic}"}}"#);
    support::broker::produce(&broker.bootstrap(), &format!("{topic}-control"), &stop);
    let run = finish_async(child).await;
    run.assert_ok();
    assert!(run.stdout.contains("Stopped on request"), "{}", run.stdout);
    sim.set_faults(slow_sim().faults);
    rerun_resumes(env, &broker, &topic, range, "BNBUSDT", total).await;

    // A live range that began in the past: backfilled from its start, killed, and resumed
    // from the last trade id published.
    let live = sim_live().await;
    let topic = fresh_topic("live-resume");
    let now = chrono::Utc::now().timestamp_millis();
    let (start, end) = (now - 20_000, (now / 1000 + 6) * 1000);
    let live_range = format!("{start}:{end}");
    let mut env = job_env(
        &broker,
        &live,
        &topic,
        "BTCUSDT",
        "ws_aggtrades",
        &live_range,
    );
    env.retain(|(k, _)| *k != "FETCH_CONCURRENCY");
    let child = spawn(&env);
    let b = broker.bootstrap();
    wait_until("the backfill published", Duration::from_secs(30), || {
        message_count(&b, &topic) >= 100
    })
    .await;
    let mut child = child;
    child.kill().unwrap();
    let _ = finish(child);
    let run = run_loader_async(env, vec![]).await;
    run.assert_ok();
    assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
    let expected = SimConfig {
        agg_trade_spacing_ms: 100,
        ..SimConfig::default()
    }
    .data()
    .trades_between("BTCUSDT", start, end - 1)
    .len() as u64;
    verify_clean(
        &broker,
        &topic,
        &live_range,
        "ws_aggtrades",
        "BTCUSDT",
        expected,
    )
    .await;
    live.shutdown().await;
    sim.shutdown().await;
}

async fn sim_live() -> SimServer {
    sim(SimConfig {
        agg_trade_spacing_ms: 100,
        ws: WsFaults::default(),
        ..SimConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_of_an_indexed_job_split_the_symbols_and_the_budget() {
    let broker = Broker::plain();
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("sharded");
    let (symbols, range) = ("BTCUSDT,ETHUSDT,BNBUSDT", "2024-01-01:2024-01-03");
    let mut outputs = Vec::new();
    for index in ["0", "1"] {
        let mut env = job_env(&broker, &sim, &topic, symbols, "api_candles_1h", range);
        env.push(("SHARD_COUNT", "2".into()));
        env.push(("JOB_COMPLETION_INDEX", index.into()));
        let run = run_loader_async(env, vec![]).await;
        run.assert_ok();
        outputs.push(run);
    }
    assert!(
        outputs[0].stdout.contains("BTCUSDT,BNBUSDT") && !outputs[0].stdout.contains("ETHUSDT"),
        "{}",
        outputs[0].stdout
    );
    assert!(
        outputs[1].stdout.contains("ETHUSDT") && !outputs[1].stdout.contains("BTCUSDT"),
        "{}",
        outputs[1].stdout
    );
    // Two pods share one IP: each takes half of the default share (1,500 of 6,000).
    assert!(
        outputs[0].stderr.contains("\"budget\":1500"),
        "{}",
        outputs[0].stderr
    );
    verify_clean(&broker, &topic, range, "api_candles_1h", symbols, 3 * 48).await;
    // More pods than symbols: the last one has nothing to do, and says so.
    let mut env = job_env(&broker, &sim, &topic, symbols, "api_candles_1h", range);
    env.push(("SHARD_COUNT", "4".into()));
    env.push(("JOB_COMPLETION_INDEX", "3".into()));
    let run = run_loader_async(env, vec![]).await;
    run.assert_ok();
    assert!(
        run.stdout.contains("published 0 records") && run.stderr.contains("no symbols"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    sim.shutdown().await;
}

/// A USDⓈ-M load killed mid-way resumes after its own last record, in a topic that also holds
/// the spot records of the same symbol (same partition, other keys): nothing of either market
/// is lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_futures_load_resumes_after_its_own_records_next_to_spot_ones() {
    let broker = Broker::durable();
    let sim = sim(slower_sim(100)).await;
    let topic = fresh_topic("killed-usdm");
    let range = "2024-01-01:2024-01-31";
    let per_market = 30 * 1440;
    let spot = job_env(&broker, &sim, &topic, "BTCUSDT", "api_candles_1m", range);
    run_loader_async(with(spot.clone(), &[("FETCH_CONCURRENCY", "8")]), vec![])
        .await
        .assert_ok();
    let mut usdm = spot;
    usdm.extend([
        ("MARKET", "usdm".to_string()),
        ("BINANCE_FAPI_URL", sim.fapi_url()),
    ]);
    let b = broker.bootstrap();
    let mut child = spawn(&usdm);
    wait_until(
        "a third of the futures loaded",
        Duration::from_secs(60),
        || message_count(&b, &topic) >= per_market + per_market / 3,
    )
    .await;
    child.kill().expect("SIGKILL");
    assert_eq!(finish(child).code, None, "killed by a signal");
    let run = run_loader_async(usdm, vec![]).await;
    run.assert_ok();
    assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
    let env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", topic.clone()),
        ("TIME_RANGE", range.to_string()),
    ];
    let v = run_loader_async(env, vec!["verify", "--json", "--offline"]).await;
    assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(report["records"], 2 * per_market, "{report}");
    let groups: Vec<(&str, u64)> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["market"].as_str().unwrap(),
                g["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [("spot", per_market as u64), ("usdm", per_market as u64)]
    );
    sim.shutdown().await;
}

/// The broker goes away while the load goes on producing, and stays away longer than the
/// delivery timeout loaders usually have (librdkafka's `message.timeout.ms`, 120 s here before):
/// records must not time out in the queue while later ones are written after them (a hole that
/// resume would never fill). The broker comes back before the loader's stall watchdog
/// (KAFKA_STALL_TIMEOUT, 300 s by default) gives up: the job finishes by itself and `verify`
/// finds every record once.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_past_the_old_delivery_timeout_leaves_no_hole() {
    let mut broker = Broker::durable();
    // About a page a second: the job is still fetching and producing throughout the outage.
    let sim = sim(slower_sim(1_000)).await;
    let range = "2024-04-01:2024-05-01";
    let total = 30 * 1440;
    let topic = fresh_topic("broker-outage");
    let env = job_env(&broker, &sim, &topic, "BTCUSDT", "api_candles_1m", range);
    let b = broker.bootstrap();
    let mut child = spawn(&env);
    wait_until("some candles published", Duration::from_secs(60), || {
        message_count(&b, &topic) >= 2_000
    })
    .await;
    broker.stop();
    let pages_at_stop = sim
        .stats()
        .per_endpoint
        .get("/api/v3/klines")
        .copied()
        .unwrap_or(0);
    // The outage's length is the scenario itself (longer than 120 s), not a wait for
    // something to happen.
    tokio::time::sleep(Duration::from_secs(125)).await;
    let pages_now = sim
        .stats()
        .per_endpoint
        .get("/api/v3/klines")
        .copied()
        .unwrap_or(0);
    assert!(
        pages_now > pages_at_stop,
        "the load went on fetching during the outage ({pages_at_stop} -> {pages_now} pages)"
    );
    if let Some(status) = child.try_wait().unwrap() {
        let run = finish(child);
        panic!(
            "the loader gave up during a 125 s outage ({status}): {}\n{}",
            run.stdout, run.stderr
        );
    }
    broker.restart();
    let run = finish_async(child).await;
    run.assert_ok();
    verify_clean(
        &broker,
        &topic,
        range,
        "api_candles_1m",
        "BTCUSDT",
        total as u64,
    )
    .await;
    sim.shutdown().await;
}

/// Two loads of one symbol and type into one topic are two jobs: the second resumes only from
/// its own records, so a January-February load after a February load loads January too
/// (February is then in the topic twice, once per job; nothing is skipped).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_load_on_the_same_topic_never_skips_what_another_job_loaded() {
    let broker = Broker::plain();
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("two-jobs");
    let feb = job_env(
        &broker,
        &sim,
        &topic,
        "BTCUSDT",
        "api_candles_1h",
        "2024-02-01:2024-03-01",
    );
    let run = run_loader_async(with(feb, &[("FETCH_CONCURRENCY", "4")]), vec![]).await;
    run.assert_ok();
    let jan_feb = job_env(
        &broker,
        &sim,
        &topic,
        "BTCUSDT",
        "api_candles_1h",
        "2024-01-01:2024-03-01",
    );
    let run = run_loader_async(with(jan_feb, &[("FETCH_CONCURRENCY", "4")]), vec![]).await;
    run.assert_ok();
    assert!(!run.stdout.contains("resumed after"), "{}", run.stdout);
    assert!(
        run.stdout.contains("published 1440 records"),
        "January and February, 60 days of hours: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("another job published"),
        "{}",
        run.stderr
    );
    assert_eq!(
        message_count(&broker.bootstrap(), &topic),
        29 * 24 + 60 * 24
    );
    sim.shutdown().await;
}

/// With transactions (librdkafka's mock cluster has them; nisshi refuses them), a load killed
/// mid-way resumes after what committed: the second attempt's `init_transactions` ends the first
/// one's open transaction, and the topic ends up with every record once.
#[tokio::test(flavor = "multi_thread")]
async fn a_transactional_load_killed_mid_way_resumes_after_what_committed() {
    let topic = fresh_topic("txn-killed");
    let mock = loader_producer::demo::MockKafka::start(&topic, 1).expect("mock cluster");
    let sim = sim(slower_sim(150)).await;
    let range = "2024-01-01:2024-01-21";
    let total = 20 * 1440;
    let env = vec![
        ("SYMBOL", "BTCUSDT".to_string()),
        ("TYPE", "api_candles_1m".into()),
        ("TIME_RANGE", range.into()),
        ("KAFKA_TOPIC", topic.clone()),
        ("KAFKA_BOOTSTRAP_SERVERS", mock.bootstrap.clone()),
        ("KAFKA_TRANSACTIONS", "on".into()),
        ("BINANCE_API_URL", sim.base_url()),
        ("QUEUE_ID", format!("q-{topic}")),
        ("SOURCE", "rest".into()),
        ("FETCH_CONCURRENCY", "1".into()),
        ("METRICS_PORT", "0".into()),
    ];
    let mut child = spawn(&env);
    let b = mock.bootstrap.clone();
    wait_until("a third loaded", Duration::from_secs(60), || {
        message_count(&b, &topic) >= total / 3
    })
    .await;
    child.kill().expect("SIGKILL");
    let first = finish(child);
    assert!(
        first.stderr.contains("\"mode\":\"transactional\""),
        "{}",
        first.stderr
    );
    let run = run_loader_async(env, vec![]).await;
    run.assert_ok();
    assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
    let verify = run_loader_async(
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS", mock.bootstrap.clone()),
            ("KAFKA_TOPIC", topic.clone()),
            ("TIME_RANGE", range.to_string()),
            ("TYPE", "api_candles_1m".to_string()),
            ("SYMBOL", "BTCUSDT".to_string()),
        ],
        vec!["verify", "--json", "--offline"],
    )
    .await;
    assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
    let report: Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(report["records"], total, "{report}");
    sim.shutdown().await;
}

/// nisshi refuses transactional ids: the default (`auto`) publishes with the idempotent producer
/// and says so; `KAFKA_TRANSACTIONS=on` makes it an error that names the variable.
#[tokio::test(flavor = "multi_thread")]
async fn without_transactions_the_default_says_it_is_idempotent_and_on_fails() {
    let broker = Broker::plain();
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("no-txn");
    let env = job_env(
        &broker,
        &sim,
        &topic,
        "BTCUSDT",
        "api_candles_1h",
        "2024-01-01:2024-01-02",
    );
    let run = run_loader_async(env.clone(), vec![]).await;
    run.assert_ok();
    assert!(
        run.stderr.contains("refused transactions"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("\"mode\":\"idempotent\""),
        "{}",
        run.stderr
    );
    let events = support::broker::consume_all(&broker.bootstrap(), &format!("{topic}-events"), &[]);
    let started: Value = events
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<Value>(v).ok())
        .find(|e| e["status"] == "started")
        .expect("a started event");
    assert_eq!(started["delivery_mode"], "idempotent", "{started}");
    let run = run_loader_async(with(env, &[("KAFKA_TRANSACTIONS", "on")]), vec![]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("KAFKA_TRANSACTIONS=on"),
        "{}",
        run.stderr
    );
    sim.shutdown().await;
}

/// Waits until the job's lease group (the broker holds one job's) is stable with `n` members.
async fn lease_members(broker: &Broker, n: usize) {
    let b = broker.bootstrap();
    wait_until(
        &format!("{n} member(s) in the job's stable lease group"),
        Duration::from_secs(60),
        || {
            group_members(&b, "loader-producer-lease-")
                .iter()
                .any(|(_, m, state)| *m == n && state == "Stable")
        },
    )
    .await;
}

/// Kubernetes may start a Job's program twice. Without transactions (nisshi) and with
/// `KAFKA_LEASE_TOPIC`, the second instance waits for the job's lease while the first publishes, then resumes after all of it:
/// the range is in the topic once, not "the rest of the range twice".
/// The range both lease tests load: 20 days of 1m candles.
const LEASE_RANGE: &str = "2024-01-01:2024-01-21";
const LEASE_TOTAL: i64 = 20 * 1440;

/// Two instances of one job with `KAFKA_LEASE_TOPIC`: the first loading (a third of the range
/// published, the lease held), the second started after it and a member of the lease group.
struct TwoInstances {
    broker: Broker,
    sim: SimServer,
    topic: String,
    first: Child,
    second: Child,
}

async fn two_instances_with_a_lease(name: &str) -> TwoInstances {
    let broker = Broker::plain();
    let sim = sim(slower_sim(150)).await;
    let topic = fresh_topic(name);
    let env = with(
        job_env(
            &broker,
            &sim,
            &topic,
            "BTCUSDT",
            "api_candles_1m",
            LEASE_RANGE,
        ),
        &[("KAFKA_LEASE_TOPIC", "loader-producer-leases")],
    );
    let first = spawn_until_a_third(&env, &broker, &topic, LEASE_TOTAL).await;
    lease_members(&broker, 1).await;
    let second = spawn(&env);
    lease_members(&broker, 2).await;
    TwoInstances {
        broker,
        sim,
        topic,
        first,
        second,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_at_once_never_both_publish() {
    let TwoInstances {
        broker,
        sim,
        topic,
        first,
        second,
    } = two_instances_with_a_lease("two-instances").await;
    let (range, total) = (LEASE_RANGE, LEASE_TOTAL);
    // The second has joined the group while the first still loads.
    assert!(
        message_count(&broker.bootstrap(), &topic) < total,
        "the first instance finished before the second joined: the test shows nothing"
    );
    let first = finish_async(first).await;
    first.assert_ok();
    // The first leaves the group when it is done: the second takes over at once, not after
    // the 10 s session timeout (the limit is for a loaded machine, far below it).
    let b = broker.bootstrap();
    wait_until(
        "the first left the lease group",
        Duration::from_secs(5),
        || {
            !group_members(&b, "loader-producer-lease-")
                .iter()
                .any(|(_, m, _)| *m == 2)
        },
    )
    .await;
    let second = finish_async(second).await;
    second.assert_ok();
    assert!(
        second.stderr.contains("waiting as a standby"),
        "{}",
        second.stderr
    );
    assert!(second.stdout.contains("resumed after"), "{}", second.stdout);
    verify_clean(
        &broker,
        &topic,
        range,
        "api_candles_1m",
        "BTCUSDT",
        total as u64,
    )
    .await;
    sim.shutdown().await;
}

/// The lease holder killed (SIGKILL: it never leaves the group) while a second instance waits:
/// the group gives the lease to the waiting one after the session timeout, and it resumes after
/// what the first published.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_lease_holder_is_taken_over_by_the_waiting_instance() {
    let TwoInstances {
        broker,
        sim,
        topic,
        mut first,
        second,
    } = two_instances_with_a_lease("lease-takeover").await;
    let (range, total) = (LEASE_RANGE, LEASE_TOTAL);
    first.kill().expect("SIGKILL");
    let first = finish_async(first).await;
    assert_eq!(first.code, None, "killed by a signal: {}", first.stderr);
    let published = message_count(&broker.bootstrap(), &topic);
    assert!(published < total, "{published}");
    let second = finish_async(second).await;
    second.assert_ok();
    assert!(
        second.stderr.contains("waiting as a standby"),
        "{}",
        second.stderr
    );
    assert!(second.stdout.contains("resumed after"), "{}", second.stdout);
    verify_clean(
        &broker,
        &topic,
        range,
        "api_candles_1m",
        "BTCUSDT",
        total as u64,
    )
    .await;
    sim.shutdown().await;
}
