//! Bybit (`EXCHANGE=bybit`) end to end: the real binary loads candles of each Bybit market
//! (spot, linear, inverse) from the exchange simulator's Bybit venue into the real broker;
//! every record is the simulator's candle, exactly once, under keys no Binance record has;
//! `verify` (asking Bybit about gaps) passes, and finds a hole where there is one; bad settings
//! are refused naming the variable; a Bybit ban (HTTP 403) stops the job with exit 4 and a rerun
//! after the ban loads everything. The simulator's clock is set, never waited on.

mod support;

use std::time::Duration;

use exchange_sim::bybit::{self, BybitCategory};
use exchange_sim::bybit_archive;
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
            "TYPE api_trades: Bybit publishes no aggregate trades",
        ),
        (
            vec![("TYPE", "api_mark_price_candles_1m")],
            "is not loaded from Bybit yet",
        ),
        (
            vec![("TYPE", "api_raw_trades"), ("SOURCE", "rest")],
            "SOURCE=rest: Bybit's REST serves no trade history",
        ),
        (vec![("TYPE", "api_candles_1s")], "Bybit has no 1s candles"),
        (
            vec![("SOURCE", "archive")],
            "Bybit publishes no archive of candles",
        ),
        (
            vec![("EXCHANGE", "kraken")],
            "is not a venue this loader reads: expected binance, bybit or okx",
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
    let run = support::loader::terminate(child, &pid).await;
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

/// A trade spacing that keeps a day of trades to a few thousand (the default, 4 a second,
/// would be near a million a day on each market).
async fn trade_sim() -> SimServer {
    let sim = support::sim(SimConfig {
        agg_trade_spacing_ms: 20_000,
        ..SimConfig::default()
    })
    .await;
    sim.clock().set_now_ms(NOW);
    sim
}

fn trade_vars(sim: &SimServer, market: &str) -> Vec<(&'static str, String)> {
    let mut v = bybit_vars(sim, market);
    v.push(("BYBIT_ARCHIVE_URL", sim.bybit_archive_url()));
    v
}

/// The trades of `[start, end)` the archive holds, with the ordinal each must be keyed by
/// (millisecond × 10⁶ + its place among that millisecond's trades), oldest first.
fn archived_trades(
    sim: &SimServer,
    category: BybitCategory,
    symbol: &str,
    start: i64,
    end: i64,
) -> Vec<(i64, bybit_archive::BybitTrade)> {
    let data = sim.data();
    let mut out = Vec::new();
    let mut day = start - start.rem_euclid(DAY);
    while day < end {
        let mut last: Option<(i64, i64)> = None;
        for t in bybit_archive::trades(&data, category, symbol, day).unwrap() {
            let rank = match last {
                Some((ms, r)) if ms == t.time_ms => r + 1,
                _ => 0,
            };
            last = Some((t.time_ms, rank));
            if (start..end).contains(&t.time_ms) {
                out.push((t.time_ms * 1_000_000 + rank, t));
            }
        }
        day += DAY;
    }
    out
}

async fn load_trades(
    sim: &SimServer,
    m: &Market,
    topic: &str,
    range: &str,
    extra: &[(&'static str, &str)],
) -> Run {
    let mut env = job_env(&sim.base_url(), topic, m.symbol, "api_raw_trades", range);
    env.extend(trade_vars(sim, m.name));
    run_loader_async(with(env, extra), vec![]).await
}

/// Publishes `records` as they are, without keys.
fn produce_records(topic: &str, records: &[&Value]) {
    let bootstrap = support::broker::Broker::shared().bootstrap();
    let rs: Vec<(Option<Vec<u8>>, Vec<u8>)> = records
        .iter()
        .map(|r| (None, serde_json::to_vec(r).unwrap()))
        .collect();
    support::broker::produce_all(&bootstrap, topic, &rs);
}

fn verify_trades(sim: &SimServer, m: &Market, topic: &str, range: &str) -> (Run, Value) {
    let mut vars = trade_vars(sim, m.name);
    vars.push(("SYMBOL", m.symbol.into()));
    vars.push(("TYPE", "api_raw_trades".into()));
    let run = verify_topic(topic, range, &vars, &[]);
    let report = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, report)
}

/// Days of 2019 (files newest first) and of 2026 (oldest first), with partial days at both
/// edges: every trade of the range is published once, in time order, keyed by its millisecond
/// and rank, with the venue's own id (a UUID on derivatives, a number on spot); `verify`
/// compares the topic with the archive's files and passes. Bybit's REST is never asked for
/// trades.
#[tokio::test(flavor = "multi_thread")]
async fn bybit_trades_load_from_the_archive_exactly_once_and_verify_on_every_market() {
    let sim = trade_sim().await;
    const JUN_1_2019: i64 = 1_559_347_200_000;
    for (m, start) in MARKETS.iter().zip([MAR_14, JUN_1_2019, MAR_14]) {
        let (start, end) = (start + 6 * 3_600_000, start + 2 * DAY + 3 * 3_600_000);
        let range = format!("{}:{}", fmt(start), fmt(end));
        let topic = fresh_topic(&format!("bybit-trades-{}", m.name));
        let run = load_trades(&sim, m, &topic, &range, &[]).await;
        run.assert_ok();
        let want = archived_trades(&sim, m.category, m.symbol, start, end);
        assert!(want.len() > 10_000, "{}: {}", m.name, want.len());
        let records = read_topic(&topic);
        assert_eq!(records.len(), want.len(), "{}", m.name);
        let prefix = format!("bybit_{}_{}_trade_", m.name, m.symbol);
        let mut same_ms = 0;
        for ((_, r), (ordinal, t)) in records.iter().zip(&want) {
            assert_eq!(r["_key"], format!("{prefix}{ordinal}"), "{}", m.name);
            assert_eq!(r["exchange"], "bybit");
            assert_eq!(r["market"], m.name);
            let id = match m.category {
                BybitCategory::Spot => Value::from(t.id.parse::<u64>().unwrap()),
                _ => Value::from(t.id.clone()),
            };
            assert_eq!(r["trade_id"], id, "{}", m.name);
            assert_eq!(
                (r["price"].as_str(), r["quantity"].as_str()),
                (Some(t.price.as_str()), Some(t.size.as_str()))
            );
            assert_eq!(r["timestamp"].as_i64(), Some(t.time_ms));
            assert_eq!(r["is_buyer_maker"].as_bool(), Some(t.sell));
            same_ms += usize::from(ordinal % 1_000_000 > 0);
        }
        assert!(
            same_ms > 0,
            "{}: trades sharing a millisecond are ranked",
            m.name
        );
        let (v, report) = verify_trades(&sim, m, &topic, &range);
        assert_eq!(v.code, Some(0), "{}: {}{}", m.name, v.stdout, v.stderr);
        assert_eq!(
            report["groups"][0]["records"].as_u64(),
            Some(want.len() as u64)
        );
    }
    let stats = sim.stats();
    assert_eq!(
        stats.bybit.per_endpoint.get("/v5/market/recent-trade"),
        None
    );
    assert!(
        stats.bybit_archive.downloads >= 6,
        "{:?}",
        stats.bybit_archive
    );
}

/// `verify` finds a trade the topic lacks (against the archive's list, by its millisecond and
/// rank), and then a duplicate.
#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_missing_and_a_repeated_bybit_trade() {
    let sim = trade_sim().await;
    let m = &MARKETS[1];
    let (start, end) = (MAR_14, MAR_14 + DAY);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let topic = fresh_topic("bybit-trades-verify");
    load_trades(&sim, m, &topic, &range, &[]).await.assert_ok();
    let records = read_topic(&topic);
    // A copy without one record, then with one record twice.
    let holed = fresh_topic("bybit-trades-holed");
    let lost = records.len() / 2;
    let kept: Vec<&Value> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != lost)
        .map(|(_, (_, r))| r)
        .collect();
    produce_records(&holed, &kept);
    let (v, report) = verify_trades(&sim, m, &holed, &range);
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    assert_eq!(report["groups"][0]["missing"].as_u64(), Some(1), "{report}");
    let ordinal: i64 = records[lost].1["_key"]
        .as_str()
        .and_then(|k| k.rsplit('_').next())
        .and_then(|o| o.parse().ok())
        .unwrap();
    assert_eq!(
        report["groups"][0]["missing_ranges"][0],
        serde_json::json!([ordinal, ordinal]),
        "{report}"
    );
    // A record the archive does not list (a rank the millisecond never had): not the venue's.
    let forged = fresh_topic("bybit-trades-forged");
    let mut extra = records[lost].1.clone();
    extra["_key"] = Value::from(format!("bybit_linear_BTCUSDT_trade_{}", ordinal + 999));
    let mut with_extra: Vec<&Value> = records.iter().map(|(_, r)| r).collect();
    with_extra.push(&extra);
    produce_records(&forged, &with_extra);
    let (v, report) = verify_trades(&sim, m, &forged, &range);
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    assert_eq!(
        (
            report["groups"][0]["missing"].as_u64(),
            report["groups"][0]["unlisted"].as_u64()
        ),
        (Some(0), Some(1)),
        "{report}"
    );
    let doubled = fresh_topic("bybit-trades-doubled");
    let mut twice: Vec<&Value> = records.iter().map(|(_, r)| r).collect();
    twice.push(&records[lost].1);
    produce_records(&doubled, &twice);
    let (v, report) = verify_trades(&sim, m, &doubled, &range);
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    assert_eq!(
        (
            report["groups"][0]["missing"].as_u64(),
            report["groups"][0]["duplicates"].as_u64()
        ),
        (Some(0), Some(1)),
        "{report}"
    );
}

/// A day the archive lacks stops the job before anything of it is published, naming the file
/// and BYBIT_ARCHIVE_URL (REST has no trade history to stand in); a file whose download is
/// damaged once is downloaded again and published; SOURCE=archive never asks Bybit's REST.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bybit_day_fails_naming_the_file_and_a_damaged_download_is_retried() {
    let sim = trade_sim().await;
    let m = &MARKETS[2];
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + 2 * DAY));
    let mut faults = sim.archive_faults();
    faults.missing_days = vec!["2026-03-15".into()];
    sim.set_archive_faults(faults.clone());
    let topic = fresh_topic("bybit-trades-missing");
    let run = load_trades(&sim, m, &topic, &range, &[]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("BTCUSD2026-03-15.csv.gz")
            && run.stderr.contains("BYBIT_ARCHIVE_URL")
            && run.stderr.contains("no inverse trade history"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(
        support::loader::published(&topic),
        0,
        "nothing before the plan failed"
    );
    // The day appears; the first download of one file is damaged (its md5 ETag disagrees).
    faults.missing_days.clear();
    sim.set_archive_faults(faults);
    sim.corrupt_bybit_file("BTCUSD2026-03-14.csv.gz", 1);
    let before = sim.stats().bybit.requests;
    let run = load_trades(&sim, m, &topic, &range, &[("SOURCE", "archive")]).await;
    run.assert_ok();
    assert!(
        run.stderr.contains("downloading it again"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sim.stats().bybit.requests,
        before,
        "SOURCE=archive asks no REST"
    );
    assert_eq!(
        sim.stats().bybit_archive.per_file["BTCUSD2026-03-14.csv.gz"],
        2,
        "downloaded again once"
    );
    let want = archived_trades(&sim, m.category, m.symbol, MAR_14, MAR_14 + 2 * DAY);
    assert_eq!(read_topic(&topic).len(), want.len());
    let (v, _) = verify_trades(&sim, m, &topic, &range);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

/// An ETag of 32 hex digits that is not the file's md5 (some stores' encryption) does not fail
/// every download: with the size and gzip's CRCs right the file is published, said once per
/// file; a download damaged under such an ETag is still downloaded again.
#[tokio::test(flavor = "multi_thread")]
async fn an_etag_that_is_no_md5_falls_back_to_size_and_gzip_crcs() {
    let sim = trade_sim().await;
    sim.set_bybit_opaque_etags(true);
    sim.corrupt_bybit_file("BTCUSDT_2026-03-14.csv.gz", 1);
    let m = &MARKETS[0];
    let (start, end) = (MAR_14, MAR_14 + 2 * DAY);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let topic = fresh_topic("bybit-trades-etag");
    let run = load_trades(&sim, m, &topic, &range, &[]).await;
    run.assert_ok();
    assert!(
        run.stderr.contains("taking the ETag for no hash"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sim.stats().bybit_archive.per_file["BTCUSDT_2026-03-14.csv.gz"],
        2,
        "the damaged download was downloaded again"
    );
    let want = archived_trades(&sim, m.category, m.symbol, start, end);
    assert_eq!(read_topic(&topic).len(), want.len());
    let (v, _) = verify_trades(&sim, m, &topic, &range);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

/// A file the archive re-publishes between the plan's probe and its download (the same rows,
/// other bytes) is asked about again and the new one published, not failed after every attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_re_published_after_its_probe_is_asked_again_and_loaded() {
    let sim = trade_sim().await;
    let m = &MARKETS[1];
    sim.replace_bybit_file_after_head("BTCUSDT2026-03-14.csv.gz");
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + DAY));
    let topic = fresh_topic("bybit-trades-republished");
    let run = load_trades(&sim, m, &topic, &range, &[]).await;
    run.assert_ok();
    assert!(
        run.stderr.contains("re-published the file"),
        "{}",
        run.stderr
    );
    let stats = sim.stats().bybit_archive;
    assert_eq!(stats.per_file["BTCUSDT2026-03-14.csv.gz"], 2, "{stats:?}");
    let want = archived_trades(&sim, m.category, m.symbol, MAR_14, MAR_14 + DAY);
    assert_eq!(read_topic(&topic).len(), want.len());
    let (v, _) = verify_trades(&sim, m, &topic, &range);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

/// SIGTERM while a day's file is being published exits 143; the next attempt resumes after the
/// last trade it published (by millisecond and rank, which a UUID cannot give) and the range
/// verifies exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_bybit_trades_exits_143_and_the_next_attempt_resumes_exactly() {
    let sim = support::sim(SimConfig {
        agg_trade_spacing_ms: 4_000,
        ..SimConfig::default()
    })
    .await;
    sim.clock().set_now_ms(NOW);
    let m = &MARKETS[1];
    let (start, end) = (MAR_14, MAR_14 + 3 * DAY);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let topic = fresh_topic("bybit-trades-sigterm");
    let mut env = job_env(&sim.base_url(), &topic, m.symbol, "api_raw_trades", &range);
    env.extend(trade_vars(&sim, m.name));
    // One file at a time, so the stop lands inside the range.
    let env = with(env, &[("ARCHIVE_CONCURRENCY", "1")]);
    let child = support::loader::spawn_loader(&env);
    let pid = child.id().to_string();
    support::loader::wait_until("trades are published", Duration::from_secs(180), || {
        support::loader::published(&topic) >= 5_000
    })
    .await;
    let run = support::loader::terminate(child, &pid).await;
    let want = archived_trades(&sim, m.category, m.symbol, start, end);
    let first = support::loader::published(&topic);
    if run.code == Some(0) {
        // The whole range was out before the signal landed: nothing to resume, still exact.
        assert_eq!(first, want.len());
    } else {
        assert_eq!(run.code, Some(143), "{}", run.stderr);
        assert!(first < want.len(), "stopped before the end: {first}");
        let run = run_loader_async(env, vec![]).await;
        run.assert_ok();
        assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
    }
    let records = read_topic(&topic);
    assert_eq!(records.len(), want.len());
    for ((_, r), (ordinal, _)) in records.iter().zip(&want) {
        assert_eq!(r["_key"], format!("bybit_linear_BTCUSDT_trade_{ordinal}"));
    }
    let (v, _) = verify_trades(&sim, m, &topic, &range);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}
