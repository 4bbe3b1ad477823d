//! Bybit (`EXCHANGE=bybit`) end to end: the real binary loads candles of each Bybit market
//! (spot, linear, inverse) from the exchange simulator's Bybit venue into the real broker;
//! every record is the simulator's candle, exactly once, under keys no Binance record has;
//! `verify` (asking Bybit about gaps) passes, and finds a hole where there is one; bad settings
//! are refused naming the variable; a Bybit ban (HTTP 403) stops the job with exit 4 and a rerun
//! after the ban loads everything. The simulator's clock is set, never waited on.

mod support;

use std::time::Duration;

use exchange_sim::bybit::{self, BybitCategory};
use exchange_sim::data::Data;
use exchange_sim::{Interval, SimConfig, SimServer};
use serde_json::Value;
use support::loader::{
    fresh_topic, job_env, read_topic, run_loader_async, verify_topic, with, Run,
};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// The exchange's "today": 2026-03-17 12:00:30 UTC.
const NOW: i64 = 1_773_748_830_000;
const MAR_14: i64 = NOW - NOW.rem_euclid(DAY) - 3 * DAY;

struct Market {
    name: &'static str,
    category: BybitCategory,
    symbol: &'static str,
}

const MARKETS: [Market; 3] = [
    Market {
        name: "spot",
        category: BybitCategory::Spot,
        symbol: "BTCUSDT",
    },
    Market {
        name: "linear",
        category: BybitCategory::Linear,
        symbol: "BTCUSDT",
    },
    Market {
        name: "inverse",
        category: BybitCategory::Inverse,
        symbol: "BTCUSD",
    },
];

async fn sim() -> SimServer {
    let sim = support::sim(SimConfig::default()).await;
    sim.clock().set_now_ms(NOW);
    sim
}

fn bybit_vars(sim: &SimServer, market: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EXCHANGE", "bybit".into()),
        ("MARKET", market.into()),
        ("BYBIT_API_URL", sim.bybit_url()),
    ]
}

async fn load(sim: &SimServer, m: &Market, topic: &str, ty: &str, range: &str) -> Run {
    let mut env = job_env(&sim.base_url(), topic, m.symbol, ty, range);
    env.extend(bybit_vars(sim, m.name));
    run_loader_async(env, vec![]).await
}

fn verify(
    sim: &SimServer,
    m: &Market,
    topic: &str,
    range: &str,
    extra: &[(&'static str, &str)],
) -> (Run, Value) {
    let mut vars = bybit_vars(sim, m.name);
    vars.push(("SYMBOL", m.symbol.into()));
    for (k, v) in extra {
        vars.retain(|(e, _)| e != k);
        vars.push((k, v.to_string()));
    }
    let run = verify_topic(topic, range, &vars, &[]);
    let report = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, report)
}

fn fmt(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn bybit_candles_load_exactly_once_and_verify_on_every_market() {
    let sim = sim().await;
    let data = Data::default();
    // Three days and an hour of minutes: pages of 1000 candles, the last one short.
    let (start, end) = (MAR_14, MAR_14 + 3 * DAY + 60 * MIN);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let n = ((end - start) / MIN) as usize;
    for m in &MARKETS {
        let topic = fresh_topic(&format!("bybit-{}", m.name));
        let before = sim
            .stats()
            .bybit
            .per_endpoint
            .get("/v5/market/kline")
            .copied()
            .unwrap_or(0);
        load(&sim, m, &topic, "api_candles_1m", &range)
            .await
            .assert_ok();
        let records = read_topic(&topic);
        assert_eq!(records.len(), n, "{}", m.name);
        let prefix = format!("bybit_{}_{}_1m_", m.name, m.symbol);
        for (i, (key, r)) in records.iter().enumerate() {
            let open = start + i as i64 * MIN;
            let want = bybit::kline(&data, m.category, m.symbol, Interval::M1, open).unwrap();
            assert_eq!(
                key.as_deref(),
                Some(m.symbol),
                "message keys are the symbol"
            );
            assert_eq!(r["_key"], format!("{prefix}{open}"));
            assert_eq!(
                (r["exchange"].as_str(), r["market"].as_str()),
                (Some("bybit"), Some(m.name))
            );
            assert_eq!(
                (r["symbol"].as_str(), r["interval"].as_str()),
                (Some(m.symbol), Some("1m"))
            );
            assert_eq!(
                (r["open_time"].as_i64(), r["timestamp"].as_i64()),
                (Some(open), Some(open))
            );
            assert_eq!(r["close_time"].as_i64(), Some(open + MIN - 1));
            for (field, v) in [
                ("open", &want.open),
                ("high", &want.high),
                ("low", &want.low),
                ("close", &want.close),
                ("volume", &want.volume),
                ("quote_asset_volume", &want.quote_volume),
            ] {
                assert_eq!(
                    r[field].as_str(),
                    Some(v.as_str()),
                    "{} {field} at {open}",
                    m.name
                );
            }
            // Bybit does not count a candle's trades: the record does not pretend it does.
            assert!(
                r.get("number_of_trades").is_none()
                    && r.get("taker_buy_base_asset_volume").is_none()
            );
        }
        let st = sim.stats().bybit;
        assert_eq!(
            st.per_endpoint["/v5/market/kline"] - before,
            n.div_ceil(1000) as u64
        );
        let (v, report) = verify(&sim, m, &topic, &range, &[("TYPE", "api_candles_1m")]);
        assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
        let g = &report["groups"][0];
        assert_eq!(
            (g["exchange"].as_str(), g["market"].as_str()),
            (Some("bybit"), Some(m.name))
        );
        assert_eq!(
            (g["records"].as_u64(), g["missing"].as_u64()),
            (Some(n as u64), Some(0))
        );
        // verify reads the venue from the records when EXCHANGE is not given.
        let (v, _) = verify(&sim, m, &topic, &range, &[("EXCHANGE", ""), ("MARKET", "")]);
        assert_eq!(
            v.code,
            Some(0),
            "verify without EXCHANGE: {}{}",
            v.stdout,
            v.stderr
        );
    }
    let st = sim.stats();
    // Half of Bybit's IP limit at most (RATE_LIMIT_SHARE=0.5), no 403; Binance never asked.
    assert!(st.bybit.max_in_window <= 300, "{:?}", st.bybit);
    assert_eq!((st.bybit.responses_403, st.requests), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_hole_and_then_duplicates_in_a_bybit_topic() {
    let sim = sim().await;
    let m = &MARKETS[1];
    let topic = fresh_topic("bybit-hole");
    let (a, b, c) = (MAR_14, MAR_14 + 10 * MIN, MAR_14 + 20 * MIN);
    // Two loads into one topic leave [a+10, a+15) out.
    load(
        &sim,
        m,
        &topic,
        "api_candles_1m",
        &format!("{}:{}", fmt(a), fmt(b)),
    )
    .await
    .assert_ok();
    load(
        &sim,
        m,
        &topic,
        "api_candles_1m",
        &format!("{}:{}", fmt(b + 5 * MIN), fmt(c)),
    )
    .await
    .assert_ok();
    let whole = format!("{}:{}", fmt(a), fmt(c));
    let (v, report) = verify(&sim, m, &topic, &whole, &[("TYPE", "api_candles_1m")]);
    assert_eq!(
        v.code,
        Some(1),
        "the hole is found: {}{}",
        v.stdout,
        v.stderr
    );
    let g = &report["groups"][0];
    assert_eq!(g["missing"].as_u64(), Some(5), "{report}");
    assert_eq!(g["missing_ranges"][0], serde_json::json!([b, b + 4 * MIN]));
    // Loading the whole range again publishes it again under the same keys (a second job on
    // the topic does not resume another's): duplicates, which verify reports.
    load(&sim, m, &topic, "api_candles_1m", &whole)
        .await
        .assert_ok();
    let (v, report) = verify(&sim, m, &topic, &whole, &[("TYPE", "api_candles_1m")]);
    assert_eq!(v.code, Some(1));
    let g = &report["groups"][0];
    assert_eq!(
        (g["missing"].as_u64(), g["duplicates"].as_u64()),
        (Some(0), Some(15)),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_bybit_cannot_serve_are_refused_naming_the_variable() {
    let sim = sim().await;
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + 10 * MIN));
    let topic = fresh_topic("bybit-refused");
    let cases: Vec<(Vec<(&'static str, &str)>, &str)> = vec![
        (
            vec![("SYMBOL", "BTCUSDX")],
            "SYMBOL BTCUSDX is not a Bybit linear symbol",
        ),
        (
            vec![("MARKET", "inverse")],
            "SYMBOL BTCUSDT is not a Bybit inverse symbol",
        ),
        (
            vec![("MARKET", "usdm")],
            "is not a Bybit market: expected spot, linear",
        ),
        (
            vec![("TYPE", "api_trades")],
            "TYPE api_trades is not loaded from Bybit yet",
        ),
        (vec![("TYPE", "api_candles_1s")], "Bybit has no 1s candles"),
        (
            vec![("SOURCE", "archive")],
            "Bybit publishes no archive of candles",
        ),
        (
            vec![("EXCHANGE", "kraken")],
            "is not a venue this loader reads: expected binance or bybit",
        ),
    ];
    for (extra, message) in cases {
        let mut env = job_env(&sim.base_url(), &topic, "BTCUSDT", "api_candles_1m", &range);
        env.extend(bybit_vars(&sim, "linear"));
        let run = run_loader_async(with(env, &extra), vec![]).await;
        assert_eq!(run.code, Some(2), "{extra:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(message), "{extra:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    assert_eq!(sim.stats().bybit.per_endpoint.get("/v5/market/kline"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bybit_ban_stops_the_job_with_exit_4_and_a_rerun_after_it_loads_everything() {
    let sim = sim().await;
    let m = &MARKETS[0];
    // Another client on the same IP spends Bybit's whole limit: the IP is banned.
    let client = reqwest::Client::new();
    let url = format!("{}/v5/market/time", sim.bybit_url());
    let mut status = 200;
    while status == 200 {
        status = client.get(&url).send().await.unwrap().status().as_u16();
    }
    assert_eq!(status, 403);
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + 30 * MIN));
    let topic = fresh_topic("bybit-banned");
    let run = load(&sim, m, &topic, "api_candles_1m", &range).await;
    assert_eq!(run.code, Some(4), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("HTTP 403") && run.stderr.contains("10 minutes"),
        "{}",
        run.stderr
    );
    // Ten minutes on, the same job loads the range.
    sim.clock().advance(Duration::from_secs(601));
    load(&sim, m, &topic, "api_candles_1m", &range)
        .await
        .assert_ok();
    let (v, _) = verify(&sim, m, &topic, &range, &[("TYPE", "api_candles_1m")]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bybit_job_run_again_resumes_after_its_own_records() {
    let sim = sim().await;
    let m = &MARKETS[2];
    let topic = fresh_topic("bybit-resume");
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + DAY));
    load(&sim, m, &topic, "api_candles_5m", &range)
        .await
        .assert_ok();
    let pages = |sim: &SimServer| sim.stats().bybit.per_endpoint["/v5/market/kline"];
    let asked = pages(&sim);
    // The same job again (same QUEUE_ID, range, symbol): its last record is found under
    // Bybit's key, and nothing is left to load.
    let run = load(&sim, m, &topic, "api_candles_5m", &range).await;
    run.assert_ok();
    assert!(run.stderr.contains("resum"), "{}", run.stderr);
    assert_eq!(pages(&sim), asked, "nothing asked again");
    assert_eq!(read_topic(&topic).len(), 288);
    let (v, _) = verify(&sim, m, &topic, &range, &[("TYPE", "api_candles_5m")]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn bybit_funding_rates_load_exactly_once_and_verify_on_the_contract_markets() {
    let sim = sim().await;
    let eight = bybit::FUNDING_INTERVAL_MS;
    // A year: 1,095 settlements in 45 windows of 199 hours.
    let (start, end) = (MAR_14 - 365 * DAY, MAR_14);
    let range = format!("{}:{}", fmt(start), fmt(end));
    for m in &MARKETS[1..] {
        let topic = fresh_topic(&format!("bybit-funding-{}", m.name));
        load(&sim, m, &topic, "api_funding_rate", &range)
            .await
            .assert_ok();
        let records = read_topic(&topic);
        let want: Vec<(i64, String)> = (start / eight..end / eight)
            .map(|k| bybit::funding(m.category, m.symbol, k).unwrap())
            .collect();
        assert_eq!(records.len(), want.len(), "{}", m.name);
        for ((_, r), (time, rate)) in records.iter().zip(&want) {
            assert_eq!(
                r["_key"],
                format!("bybit_{}_{}_funding_{time}", m.name, m.symbol)
            );
            assert_eq!(
                (r["exchange"].as_str(), r["market"].as_str()),
                (Some("bybit"), Some(m.name))
            );
            assert_eq!(
                (r["funding_time"].as_i64(), r["timestamp"].as_i64()),
                (Some(*time), Some(*time))
            );
            assert_eq!(r["funding_rate"].as_str(), Some(rate.as_str()));
            assert!(
                r.get("mark_price").is_none(),
                "Bybit reports no mark price with funding"
            );
        }
        let (v, report) = verify(&sim, m, &topic, &range, &[("TYPE", "api_funding_rate")]);
        assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
        assert_eq!(
            report["groups"][0]["records"].as_u64(),
            Some(want.len() as u64)
        );
    }
    // Spot has no funding.
    let topic = fresh_topic("bybit-funding-spot");
    let run = load(&sim, &MARKETS[0], &topic, "api_funding_rate", &range).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("not offered on Bybit's spot market"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bybit_open_interest_loads_exactly_once_and_verifies_on_the_contract_markets() {
    let sim = sim().await;
    let five = 5 * MIN;
    // Two days of 5-minute rows: windows of 200 periods, the last one short.
    let (start, end) = (MAR_14, MAR_14 + 2 * DAY);
    let range = format!("{}:{}", fmt(start), fmt(end));
    for m in &MARKETS[1..] {
        let topic = fresh_topic(&format!("bybit-oi-{}", m.name));
        load(&sim, m, &topic, "api_open_interest_5m", &range)
            .await
            .assert_ok();
        let records = read_topic(&topic);
        assert_eq!(records.len(), 576, "{}", m.name);
        for (i, (_, r)) in records.iter().enumerate() {
            let t = start + i as i64 * five;
            let want = bybit::open_interest(m.category, m.symbol, t).unwrap();
            assert_eq!(
                r["_key"],
                format!("bybit_{}_{}_open_interest_5m_{t}", m.name, m.symbol)
            );
            assert_eq!(
                (r["exchange"].as_str(), r["period"].as_str()),
                (Some("bybit"), Some("5m"))
            );
            assert_eq!(r["timestamp"].as_i64(), Some(t));
            assert_eq!(r["sum_open_interest"].as_str(), Some(want.as_str()));
            assert!(
                r.get("sum_open_interest_value").is_none(),
                "Bybit reports no value"
            );
        }
        let (v, _) = verify(&sim, m, &topic, &range, &[("TYPE", "api_open_interest_5m")]);
        assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
    }
    for (m, ty, message) in [
        (
            &MARKETS[0],
            "api_open_interest_5m",
            "not offered on Bybit's spot market",
        ),
        (
            &MARKETS[1],
            "api_open_interest_2h",
            "Bybit has no 2h open interest",
        ),
        (
            &MARKETS[1],
            "api_long_short_ratio_5m",
            "is not loaded from Bybit yet",
        ),
    ] {
        let run = load(&sim, m, &fresh_topic("bybit-oi-refused"), ty, &range).await;
        assert_eq!(run.code, Some(2), "{ty}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{ty}: {}", run.stderr);
    }
}

/// SIGTERM (a node drain) mid-load: exit 143 with what was fetched published; the next attempt
/// resumes after it under Bybit's keys, and the topic holds the range exactly once. The job is
/// slowed by a tiny share of Bybit's limit (3 requests in any 5 s), which the simulator's
/// counter of the busiest 5 s proves was kept.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_bybit_load_exits_143_and_the_next_attempt_resumes_exactly() {
    let sim = sim().await;
    let m = &MARKETS[1];
    let topic = fresh_topic("bybit-sigterm");
    let (start, end) = (MAR_14, MAR_14 + 6 * 200 * MIN);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let mut env = job_env(&sim.base_url(), &topic, m.symbol, "api_candles_1m", &range);
    env.extend(bybit_vars(&sim, m.name));
    let env = with(env, &[("RATE_LIMIT_SHARE", "0.005"), ("PAGE_LIMIT", "200")]);
    let child = support::loader::spawn_loader(&env);
    let pid = child.id().to_string();
    support::loader::wait_until(
        "the first pages are published",
        Duration::from_secs(60),
        || support::loader::published(&topic) >= 200,
    )
    .await;
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(ok.success());
    let run: Run =
        tokio::task::spawn_blocking(move || child.wait_with_output().expect("exits").into())
            .await
            .unwrap();
    assert_eq!(run.code, Some(143), "{}", run.stderr);
    let first = support::loader::published(&topic);
    assert!(first < 1200, "stopped before the end: {first}");
    assert!(
        sim.stats().bybit.max_in_window <= 3,
        "{:?}",
        sim.stats().bybit
    );
    // The same job again, at the default share: it resumes and finishes.
    let run = run_loader_async(with(env, &[("RATE_LIMIT_SHARE", "0.5")]), vec![]).await;
    run.assert_ok();
    assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
    let records = read_topic(&topic);
    assert_eq!(records.len(), 1200);
    let (v, _) = verify(&sim, m, &topic, &range, &[("TYPE", "api_candles_1m")]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

/// The whole of Bybit's IP limit (`RATE_LIMIT_SHARE=1`) and more requests than it allows in 5 s
/// (a candle a request): the busiest 5 s the simulator saw holds 600 at most, and no 403. A
/// request holds its place until 5 s after its answer (counting send times alone once let 601
/// arrive within 5 s, found by the benchmark).
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_bybit_limit_is_used_and_never_exceeded() {
    let sim = sim().await;
    let m = &MARKETS[0];
    let topic = fresh_topic("bybit-whole-limit");
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + 700 * MIN));
    let mut env = job_env(&sim.base_url(), &topic, m.symbol, "api_candles_1m", &range);
    env.extend(bybit_vars(&sim, m.name));
    let env = with(env, &[("RATE_LIMIT_SHARE", "1"), ("PAGE_LIMIT", "1")]);
    run_loader_async(env, vec![]).await.assert_ok();
    let st = sim.stats().bybit;
    assert_eq!((st.max_in_window, st.responses_403), (600, 0), "{st:?}");
    assert_eq!(read_topic(&topic).len(), 700);
}
