//! `verify` of id-ordered topics (trades) up to the range's edges, against real processes: the
//! loader binary publishes a complete topic from the exchange simulator to the shared broker, a
//! copy of it loses records at its head, its tail or in between, and `verify` must find what
//! the exchange has and the copy lacks; what the exchange cannot answer (older than its REST
//! serves, unreachable, failing) must fail the verdict as unchecked, never pass as an exchange
//! gap.

mod support;

use support::sim;

use exchange_sim::{Faults, SimConfig};
use serde_json::Value;
use support::broker::{create_topic, message_count, produce_all, Broker, Record};
use support::loader::{
    closed_port, fresh_topic, job_env, read_raw, run_loader, run_loader_async, verify_topic, with,
    Run,
};

/// 2024-01-01T00:00:00Z.
const JAN1_2024: i64 = 1_704_067_200_000;
/// 2024-03-01T00:00:00Z: more than a year before the tests' present.
const MAR1_2024: i64 = 1_709_251_200_000;
const MIN: i64 = 60_000;

/// A record's id.
fn trade_id(payload: &[u8]) -> i64 {
    let v: Value = serde_json::from_slice(payload).expect("a JSON record");
    v["trade_id"].as_i64().expect("trade_id")
}

/// `topic`'s records sorted by id.
fn records_by_id(topic: &str) -> Vec<(i64, Record)> {
    let mut records: Vec<(i64, Record)> = read_raw(topic)
        .into_iter()
        .map(|r| (trade_id(&r.1), r))
        .collect();
    records.sort_by_key(|r| r.0);
    records
}

/// A new topic holding `records` but the first `head`, the last `tail` and those at `drop`
/// (indexes), published in order.
fn trimmed_copy(records: &[(i64, Record)], head: usize, tail: usize, drop: &[usize]) -> String {
    let kept: Vec<Record> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= head && *i + tail < records.len() && !drop.contains(i))
        .map(|(_, (_, r))| r.clone())
        .collect();
    let topic = fresh_topic("verify-edges-trimmed");
    let bootstrap = Broker::shared().bootstrap();
    create_topic(&bootstrap, &topic, 1);
    produce_all(&bootstrap, &topic, &kept);
    assert_eq!(message_count(&bootstrap, &topic), kept.len() as i64);
    topic
}

fn report(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no report ({e}): {}{}",
            run.stdout, run.stderr
        )
    })
}

/// The range of ids a report entry names, `[first, last]`.
fn ids(v: &Value) -> (i64, i64) {
    (v[0].as_i64().unwrap(), v[1].as_i64().unwrap())
}

/// A complete topic passes; the same records without the first 7 and the last 5 fail with
/// exactly those ids missing (today's verify saw only the ids between the first and last
/// record, and passed it); offline, the edges cannot be checked and are only noted.
#[tokio::test(flavor = "multi_thread")]
async fn records_missing_at_the_edges_of_the_range_are_found() {
    let sim = sim(SimConfig::default()).await;
    let start = JAN1_2024 + 3 * MIN + 123;
    let range = format!("{start}:{}", start + 5 * MIN);
    for ty in ["api_trades", "api_raw_trades"] {
        let topic = fresh_topic(&format!("verify-edges-{}", ty.replace('_', "-")));
        run_loader_async(
            job_env(&sim.base_url(), &topic, "BTCUSDT", ty, &range),
            vec![],
        )
        .await
        .assert_ok();
        let records = records_by_id(&topic);
        assert!(records.len() > 100, "{ty}: {} records", records.len());
        let asked = [("BINANCE_API_URL", sim.base_url())];

        let v = verify_topic(&topic, &range, &asked, &[]);
        assert_eq!(v.code, Some(0), "{ty}, complete: {}{}", v.stdout, v.stderr);
        let r = report(&v);
        assert_eq!(
            (
                r["groups"][0]["missing"].as_u64(),
                r["groups"][0]["unchecked"].as_u64()
            ),
            (Some(0), Some(0)),
            "{r}"
        );

        let trimmed = trimmed_copy(&records, 7, 5, &[]);
        let v = verify_topic(&trimmed, &range, &asked, &[]);
        assert_eq!(v.code, Some(1), "{ty}, trimmed: {}{}", v.stdout, v.stderr);
        let g = &report(&v)["groups"][0];
        let (first, last) = (records[0].0, records[records.len() - 1].0);
        assert_eq!(g["missing"], 12, "{ty}: {g}");
        assert_eq!(g["exchange_gaps"], 0, "{ty}: {g}");
        assert_eq!(g["unchecked"], 0, "{ty}: {g}");
        let ranges: Vec<(i64, i64)> = g["missing_ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        assert_eq!(ranges, [(first, first + 6), (last - 4, last)], "{ty}: {g}");

        // Offline nothing can be said about the edges: noted, not failed.
        let v = verify_topic(&trimmed, &range, &[], &["--offline"]);
        assert_eq!(v.code, Some(0), "{ty}, offline: {}{}", v.stdout, v.stderr);
        assert!(
            report(&v)["notes"].to_string().contains("offline"),
            "{}",
            v.stdout
        );
    }
    sim.shutdown().await;
}

/// USDⓈ-M aggregate trades of March 2024 are older than the year Binance's REST serves: a gap
/// among them, and the range's head and tail, are unchecked (a failure) without a request to
/// the exchange, never exchange gaps.
#[tokio::test(flavor = "multi_thread")]
async fn futures_trades_older_than_a_year_are_unchecked_not_exchange_gaps() {
    let sim = sim(SimConfig {
        agg_trade_spacing_ms: 10_000,
        ..SimConfig::default()
    })
    .await;
    let range = format!("{MAR1_2024}:{}", MAR1_2024 + 60 * MIN);
    let topic = fresh_topic("verify-edges-usdm");
    let futures = [
        ("MARKET", "usdm".to_string()),
        ("BINANCE_FAPI_URL", sim.fapi_url()),
    ];
    let mut env = job_env(&sim.base_url(), &topic, "BTCUSDT", "api_trades", &range);
    env.extend(futures.iter().cloned());
    // Older than REST serves: from the archive's daily file, filtered to the hour.
    run_loader_async(with(env, &[("SOURCE", "archive")]), vec![])
        .await
        .assert_ok();
    let records = records_by_id(&topic);
    assert!(records.len() > 200, "{} records", records.len());
    let trimmed = trimmed_copy(&records, 2, 2, &[100]);
    let lost = records[100].0;

    let before = sim
        .stats()
        .per_endpoint
        .get("/usdm/fapi/v1/aggTrades")
        .copied();
    let v = verify_topic(&trimmed, &range, &futures, &[]);
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    let g = &report(&v)["groups"][0];
    assert_eq!(g["market"], "usdm");
    assert_eq!(
        (g["missing"].as_u64(), g["exchange_gaps"].as_u64()),
        (Some(0), Some(0)),
        "{g}"
    );
    assert_eq!(g["unchecked"], 3, "the gap, the head and the tail: {g}");
    let spans = g["unchecked_ranges"].as_array().unwrap();
    assert!(
        spans.iter().all(|u| u["reason"]
            == "Binance's REST serves USDⓈ-M aggregate trades of the last year only"),
        "{g}"
    );
    let gap = spans
        .iter()
        .find(|u| u["first"].is_i64() && u["last"].is_i64())
        .expect("the inner gap");
    assert_eq!(
        (gap["first"].as_i64(), gap["last"].as_i64()),
        (Some(lost), Some(lost))
    );
    assert_eq!(
        sim.stats()
            .per_endpoint
            .get("/usdm/fapi/v1/aggTrades")
            .copied(),
        before,
        "nothing older than the horizon is asked"
    );

    // The text report says why.
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", Broker::shared().bootstrap()),
        ("KAFKA_TOPIC", trimmed.clone()),
        ("TIME_RANGE", range.clone()),
    ];
    env.extend(futures.iter().cloned());
    let text = tokio::task::spawn_blocking(move || run_loader(&env, &["verify"]))
        .await
        .unwrap();
    assert_eq!(text.code, Some(1));
    assert!(
        text.stdout.contains(&format!(
            "Binance's REST serves USDⓈ-M aggregate trades of the last year only; ids {lost}..{lost} (at "
        )) && text.stdout.contains("cannot be checked"),
        "{}",
        text.stdout
    );
    sim.shutdown().await;
}

/// An exchange that cannot be reached, or that fails every lookup, leaves the gap and the edges
/// unchecked: verify still prints its report and fails, and counts nothing as an exchange gap.
#[tokio::test(flavor = "multi_thread")]
async fn gaps_the_exchange_cannot_answer_are_unchecked() {
    let sim = sim(SimConfig::default()).await;
    let start = JAN1_2024 + 7 * MIN;
    let range = format!("{start}:{}", start + 2 * MIN);
    let topic = fresh_topic("verify-edges-unreachable");
    run_loader_async(
        job_env(&sim.base_url(), &topic, "BTCUSDT", "api_trades", &range),
        vec![],
    )
    .await
    .assert_ok();
    let records = records_by_id(&topic);
    let trimmed = trimmed_copy(&records, 3, 0, &[50]);

    let unreachable = format!("http://127.0.0.1:{}", closed_port());
    // Every data request fails (HTTP 503, retried, then given up); time and exchangeInfo answer.
    let failing = || {
        sim.set_faults(Faults {
            error_5xx_every: 1,
            ..Faults::default()
        })
    };
    for (case, url) in [("unreachable", unreachable), ("failing", sim.base_url())] {
        if case == "failing" {
            failing();
        }
        let v = verify_topic(&trimmed, &range, &[("BINANCE_API_URL", url)], &[]);
        assert_eq!(v.code, Some(1), "{case}: {}{}", v.stdout, v.stderr);
        let g = &report(&v)["groups"][0];
        assert_eq!(
            (g["missing"].as_u64(), g["exchange_gaps"].as_u64()),
            (Some(0), Some(0)),
            "{case}: {g}"
        );
        assert_eq!(
            g["unchecked"], 3,
            "{case}: the gap, the head, the tail: {g}"
        );
        assert!(
            g["unchecked_ranges"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("Binance could not be asked"),
            "{case}: {g}"
        );
    }
    assert!(sim.stats().responses_5xx > 0);
    sim.shutdown().await;
}
