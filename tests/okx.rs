//! OKX (`EXCHANGE=okx`), the third venue, end to end: the real binary loads candles of each
//! OKX market (spot, swap with a linear and an inverse perpetual, futures) from the exchange
//! simulator's OKX venue into the real broker; every record is the simulator's candle, exactly
//! once, under keys no other venue's record has; `verify` (asking OKX about gaps) passes; bad
//! settings are refused naming the variable; OKX's limit of history-candles is used whole and
//! never exceeded, and a `50011` caused by another client on the IP is waited out with nothing
//! lost. The simulator's clock is set, never waited on.

mod support;

use exchange_sim::data::Data;
use exchange_sim::okx;
use exchange_sim::{Interval, SimConfig, SimServer};
use serde_json::Value;
use std::time::Duration;
use support::loader::{
    fresh_topic, job_env, read_topic, run_loader_async, verify_topic, with, Run,
};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// The exchange's "today": 2026-03-17 12:00:30 UTC.
const NOW: i64 = 1_773_748_830_000;
const MAR_14: i64 = NOW - NOW.rem_euclid(DAY) - 3 * DAY;
const CANDLES: &str = "/api/v5/market/history-candles";

/// A market and an instrument of it.
struct Inst {
    market: &'static str,
    inst_id: &'static str,
}

const INSTS: [Inst; 4] = [
    Inst {
        market: "spot",
        inst_id: "BTC-USDT",
    },
    Inst {
        market: "swap",
        inst_id: "BTC-USDT-SWAP",
    },
    Inst {
        market: "swap",
        inst_id: "ETH-USD-SWAP",
    },
    Inst {
        market: "futures",
        inst_id: "BTC-USD-260327",
    },
];

async fn sim() -> SimServer {
    let sim = support::sim(SimConfig::default()).await;
    sim.clock().set_now_ms(NOW);
    sim
}

fn okx_vars(sim: &SimServer, market: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EXCHANGE", "okx".into()),
        ("MARKET", market.into()),
        ("OKX_API_URL", sim.okx_url()),
    ]
}

fn env(
    sim: &SimServer,
    i: &Inst,
    topic: &str,
    ty: &str,
    range: &str,
) -> Vec<(&'static str, String)> {
    let mut env = job_env(&sim.base_url(), topic, i.inst_id, ty, range);
    env.extend(okx_vars(sim, i.market));
    env
}

fn verify(
    sim: &SimServer,
    i: &Inst,
    topic: &str,
    range: &str,
    extra: &[(&'static str, &str)],
) -> (Run, Value) {
    let mut vars = okx_vars(sim, i.market);
    vars.push(("SYMBOL", i.inst_id.into()));
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

fn candle_requests(sim: &SimServer) -> u64 {
    sim.stats()
        .okx
        .per_endpoint
        .get(CANDLES)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn okx_candles_load_exactly_once_and_verify_on_every_market() {
    let sim = sim().await;
    let data = Data::default();
    // A day and 30 minutes of minutes: pages of 100 candles, the last one short.
    let (start, end) = (MAR_14, MAR_14 + DAY + 30 * MIN);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let n = ((end - start) / MIN) as usize;
    for i in &INSTS {
        let topic = fresh_topic(&format!("okx-{}", i.market));
        let before = candle_requests(&sim);
        run_loader_async(env(&sim, i, &topic, "api_candles_1m", &range), vec![])
            .await
            .assert_ok();
        let records = read_topic(&topic);
        assert_eq!(records.len(), n, "{}", i.inst_id);
        let prefix = format!("okx_{}_{}_1m_", i.market, i.inst_id);
        for (k, (key, r)) in records.iter().enumerate() {
            let open = start + k as i64 * MIN;
            let want = okx::kline(&data, i.inst_id, Interval::M1, open).unwrap();
            assert_eq!(
                key.as_deref(),
                Some(i.inst_id),
                "message keys are the symbol"
            );
            assert_eq!(r["_key"], format!("{prefix}{open}"));
            assert_eq!(
                (r["exchange"].as_str(), r["market"].as_str()),
                (Some("okx"), Some(i.market))
            );
            assert_eq!(
                (r["symbol"].as_str(), r["interval"].as_str()),
                (Some(i.inst_id), Some("1m"))
            );
            assert_eq!(
                (r["open_time"].as_i64(), r["close_time"].as_i64()),
                (Some(open), Some(open + MIN - 1))
            );
            // volCcyQuote: the quote coin's volume (USD on inverse contracts, which are of 1
            // USD each in the simulator, so as many as the contracts).
            let quote = if i.inst_id.split('-').nth(1) == Some("USD") {
                &want.volume
            } else {
                &want.quote_volume
            };
            for (field, v) in [
                ("open", &want.open),
                ("high", &want.high),
                ("low", &want.low),
                ("close", &want.close),
                ("volume", &want.volume),
                ("quote_asset_volume", quote),
            ] {
                assert_eq!(
                    r[field].as_str(),
                    Some(v.as_str()),
                    "{} {field} at {open}",
                    i.inst_id
                );
            }
            assert!(r.get("number_of_trades").is_none());
        }
        assert_eq!(
            candle_requests(&sim) - before,
            n.div_ceil(100) as u64,
            "pages of 100, each asked once"
        );
        let (v, report) = verify(&sim, i, &topic, &range, &[("TYPE", "api_candles_1m")]);
        assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
        let g = &report["groups"][0];
        assert_eq!(
            (g["exchange"].as_str(), g["market"].as_str()),
            (Some("okx"), Some(i.market))
        );
        assert_eq!(
            (g["records"].as_u64(), g["missing"].as_u64()),
            (Some(n as u64), Some(0))
        );
        // verify reads the venue from the records when EXCHANGE is not given.
        let (v, _) = verify(&sim, i, &topic, &range, &[("EXCHANGE", ""), ("MARKET", "")]);
        assert_eq!(
            v.code,
            Some(0),
            "verify without EXCHANGE: {}{}",
            v.stdout,
            v.stderr
        );
    }
    let st = sim.stats();
    // Each job takes half of the endpoint's limit (RATE_LIMIT_SHARE=0.5); one job's last
    // requests and the next one's first can share a window, so within the whole limit, and no
    // 429. Binance never asked.
    assert!(st.okx.max_in_window[CANDLES] <= 20, "{:?}", st.okx);
    assert_eq!((st.okx.responses_429, st.requests), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn okx_hourly_and_daily_candles_are_utc_aligned_and_a_rerun_resumes() {
    let sim = sim().await;
    let data = Data::default();
    let i = &INSTS[1];
    let range = format!("{}:{}", fmt(MAR_14 - 20 * DAY), fmt(MAR_14));
    for (ty, iv, n) in [
        ("api_candles_6h", Interval::H6, 80),
        ("api_candles_1d", Interval::D1, 20),
    ] {
        let topic = fresh_topic("okx-utc");
        run_loader_async(env(&sim, i, &topic, ty, &range), vec![])
            .await
            .assert_ok();
        let records = read_topic(&topic);
        assert_eq!(records.len(), n, "{ty}");
        for (_, r) in &records {
            let open = r["open_time"].as_i64().unwrap();
            assert_eq!(
                open.rem_euclid(iv.fixed_ms().unwrap()),
                0,
                "{ty} opens on UTC"
            );
            let want = okx::kline(&data, i.inst_id, iv, open).unwrap();
            assert_eq!(r["close"].as_str(), Some(want.close.as_str()));
        }
        // The same job again finds its last record and asks nothing more.
        let asked = candle_requests(&sim);
        let run = run_loader_async(env(&sim, i, &topic, ty, &range), vec![]).await;
        run.assert_ok();
        assert!(run.stderr.contains("resum"), "{}", run.stderr);
        assert_eq!(candle_requests(&sim), asked, "nothing asked again");
        assert_eq!(read_topic(&topic).len(), n);
        let (v, _) = verify(&sim, i, &topic, &range, &[("TYPE", ty)]);
        assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_okx_cannot_serve_are_refused_naming_the_variable() {
    let sim = sim().await;
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + 10 * MIN));
    let topic = fresh_topic("okx-refused");
    let cases: Vec<(Vec<(&'static str, &str)>, &str)> = vec![
        (
            vec![("SYMBOL", "BTC-USDX")],
            "SYMBOL BTC-USDX is not an OKX spot instrument",
        ),
        (
            vec![("MARKET", "swap")],
            "SYMBOL BTC-USDT is not an OKX swap instrument",
        ),
        (
            vec![("SYMBOL", "BTC-USDT-SWAP")],
            "SYMBOL BTC-USDT-SWAP is not an OKX spot instrument",
        ),
        (
            vec![("MARKET", "linear")],
            "is not an OKX market: expected spot, swap",
        ),
        (vec![("TYPE", "api_candles_1s")], "OKX has no 1s candles"),
        (vec![("TYPE", "api_candles_3d")], "OKX has no 3d candles"),
        (vec![("TYPE", "api_trades")], "is not loaded from OKX yet"),
        (
            vec![("SOURCE", "archive")],
            "SOURCE=archive: OKX's candles, funding rates and open interest are loaded over",
        ),
        (
            vec![("PAGE_LIMIT", "300")],
            "PAGE_LIMIT (alias LIMIT) must be between 1 and 100",
        ),
        (
            vec![("OKX_API_URL", "okx.example")],
            "is not a http(s) URL, e.g. https://www.okx.com",
        ),
    ];
    for (extra, message) in cases {
        let run = run_loader_async(
            with(
                env(&sim, &INSTS[0], &topic, "api_candles_1m", &range),
                &extra,
            ),
            vec![],
        )
        .await;
        assert_eq!(run.code, Some(2), "{extra:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(message), "{extra:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // No candle was loaded: the one request is BTC-USDX asked about at history-candles (a
    // delisted pair would still have its history there), which does not know it either.
    assert_eq!(candle_requests(&sim), 1);
}

/// The whole of history-candles' limit (`RATE_LIMIT_SHARE=1`, 20 in any 2 s) and a candle a
/// request: the busiest 2 s the simulator saw hold 20 at most, and no 429.
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_okx_limit_is_used_and_never_exceeded() {
    let sim = sim().await;
    let topic = fresh_topic("okx-whole-limit");
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + 60 * MIN));
    let env = with(
        env(&sim, &INSTS[0], &topic, "api_candles_1m", &range),
        &[("RATE_LIMIT_SHARE", "1"), ("PAGE_LIMIT", "1")],
    );
    run_loader_async(env, vec![]).await.assert_ok();
    let st = sim.stats().okx;
    assert_eq!(
        (st.max_in_window[CANDLES], st.responses_429),
        (20, 0),
        "{st:?}"
    );
    assert_eq!(read_topic(&topic).len(), 60);
}

/// Other clients on the IP have spent history-candles' limit: OKX answers the job's first
/// three requests HTTP 429 with code 50011; the job pauses the endpoint for a window and asks
/// again, and the topic holds every candle once.
#[tokio::test(flavor = "multi_thread")]
async fn a_50011_from_another_clients_requests_is_waited_out_with_nothing_lost() {
    let sim = sim().await;
    let i = &INSTS[0];
    let topic = fresh_topic("okx-50011");
    let range = format!("{}:{}", fmt(MAR_14), fmt(MAR_14 + 300 * MIN));
    sim.spend_okx_candle_limit_elsewhere(3);
    let started = std::time::Instant::now();
    let run = run_loader_async(env(&sim, i, &topic, "api_candles_1m", &range), vec![]).await;
    run.assert_ok();
    assert!(run.stderr.contains("50011"), "{}", run.stderr);
    // The endpoint was paused for a window (2 s) before it was asked again.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(sim.stats().okx.responses_429, 3);
    assert_eq!(read_topic(&topic).len(), 300);
    let (v, _) = verify(&sim, i, &topic, &range, &[("TYPE", "api_candles_1m")]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

/// Funding of a linear and an inverse perpetual over 40 days (120 settlements, 10 windows of 99
/// hours); a range older than OKX's three months is refused before anything is asked, and
/// funding on another market is refused naming MARKET.
#[tokio::test(flavor = "multi_thread")]
async fn okx_funding_rates_load_exactly_once_within_three_months_and_verify() {
    let sim = sim().await;
    let eight = okx::FUNDING_INTERVAL_MS;
    let (start, end) = (MAR_14 - 40 * DAY, MAR_14);
    let range = format!("{}:{}", fmt(start), fmt(end));
    for i in &INSTS[1..3] {
        let topic = fresh_topic("okx-funding");
        run_loader_async(env(&sim, i, &topic, "api_funding_rate", &range), vec![])
            .await
            .assert_ok();
        let records = read_topic(&topic);
        let want: Vec<(i64, String)> = (start / eight..end / eight)
            .map(|k| okx::funding(i.inst_id, k).unwrap())
            .collect();
        assert_eq!(records.len(), want.len(), "{}", i.inst_id);
        for ((_, r), (time, rate)) in records.iter().zip(&want) {
            assert_eq!(r["_key"], format!("okx_swap_{}_funding_{time}", i.inst_id));
            assert_eq!(
                (r["exchange"].as_str(), r["market"].as_str()),
                (Some("okx"), Some("swap"))
            );
            assert_eq!(r["funding_time"].as_i64(), Some(*time));
            assert_eq!(r["funding_rate"].as_str(), Some(rate.as_str()));
        }
        let (v, report) = verify(&sim, i, &topic, &range, &[("TYPE", "api_funding_rate")]);
        assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
        assert_eq!(
            report["groups"][0]["records"].as_u64(),
            Some(want.len() as u64)
        );
    }
    let asked = sim
        .stats()
        .okx
        .per_endpoint
        .get("/api/v5/public/funding-rate-history")
        .copied();
    // Older than three months: refused, nothing asked.
    let old = format!("{}:{}", fmt(MAR_14 - 120 * DAY), fmt(MAR_14));
    let topic = fresh_topic("okx-funding-old");
    let run = run_loader_async(
        env(&sim, &INSTS[1], &topic, "api_funding_rate", &old),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("OKX's REST serves swap funding rates of the last three months only")
            && run.stderr.contains("use a later start"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sim.stats()
            .okx
            .per_endpoint
            .get("/api/v5/public/funding-rate-history")
            .copied(),
        asked
    );
    // Funding exists on the perpetuals only.
    let run = run_loader_async(
        env(&sim, &INSTS[0], &topic, "api_funding_rate", &range),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("use MARKET=swap"), "{}", run.stderr);
}

/// Hourly open interest of a perpetual and a dated future over 50 days (1,200 periods, 12
/// windows of 100); a range beyond the latest 1,440 periods is refused before anything is
/// asked; spot has none.
#[tokio::test(flavor = "multi_thread")]
async fn okx_open_interest_loads_exactly_once_within_what_okx_keeps_and_verifies() {
    let sim = sim().await;
    let hour = 3_600_000;
    let (start, end) = (MAR_14 - 50 * DAY, MAR_14);
    let range = format!("{}:{}", fmt(start), fmt(end));
    for i in [&INSTS[2], &INSTS[3]] {
        let topic = fresh_topic("okx-oi");
        let env = with(
            env(&sim, i, &topic, "api_open_interest_1h", &range),
            &[("RATE_LIMIT_SHARE", "1")],
        );
        run_loader_async(env, vec![]).await.assert_ok();
        let records = read_topic(&topic);
        assert_eq!(records.len(), 1200, "{}", i.inst_id);
        for (k, (_, r)) in records.iter().enumerate() {
            let t = start + k as i64 * hour;
            let (_, coin, usd) = okx::open_interest(i.inst_id, t).unwrap();
            assert_eq!(
                r["_key"],
                format!("okx_{}_{}_open_interest_1h_{t}", i.market, i.inst_id)
            );
            assert_eq!(r["timestamp"].as_i64(), Some(t));
            assert_eq!(r["sum_open_interest"].as_str(), Some(coin.as_str()));
            assert_eq!(r["sum_open_interest_value"].as_str(), Some(usd.as_str()));
        }
        let (v, _) = verify(&sim, i, &topic, &range, &[("TYPE", "api_open_interest_1h")]);
        assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
    }
    // 70 days of hours is more than OKX keeps: refused, naming why.
    let old = format!("{}:{}", fmt(MAR_14 - 70 * DAY), fmt(MAR_14));
    let topic = fresh_topic("okx-oi-old");
    let run = run_loader_async(
        env(&sim, &INSTS[1], &topic, "api_open_interest_1h", &old),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("OKX's REST serves swap open interest of the latest 1,440 periods only"),
        "{}",
        run.stderr
    );
    let run = run_loader_async(
        env(&sim, &INSTS[0], &topic, "api_open_interest_1h", &range),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("use MARKET=swap or futures"),
        "{}",
        run.stderr
    );
}

/// Sixty days on, OKX no longer answers the funding of the range: `verify` says it cannot
/// check it (a failure), not that the topic's settlements are unlisted.
#[tokio::test(flavor = "multi_thread")]
async fn verify_cannot_check_okx_funding_older_than_okx_keeps_and_says_so() {
    let sim = sim().await;
    let i = &INSTS[1];
    let range = format!("{}:{}", fmt(MAR_14 - 10 * DAY), fmt(MAR_14));
    let topic = fresh_topic("okx-funding-later");
    run_loader_async(env(&sim, i, &topic, "api_funding_rate", &range), vec![])
        .await
        .assert_ok();
    assert_eq!(read_topic(&topic).len(), 30);
    sim.clock()
        .advance(std::time::Duration::from_secs(85 * 86_400));
    let (v, report) = verify(&sim, i, &topic, &range, &[("TYPE", "api_funding_rate")]);
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    let g = &report["groups"][0];
    assert_eq!(
        (g["unlisted"].as_u64(), g["records"].as_u64()),
        (Some(0), Some(30)),
        "{report}"
    );
    assert!(g["unchecked"].as_u64() > Some(0), "{report}");
    assert!(v.stdout.contains("three months"), "{}", v.stdout);
}

/// A delivered future is no longer listed by `instruments`, but OKX still serves its candles:
/// the job loads them, says so, and `verify` passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivered_okx_future_is_loaded_from_its_history() {
    let sim = sim().await;
    let data = Data::default();
    let i = Inst {
        market: "futures",
        inst_id: "BTC-USD-260109",
    };
    let (start, end) = (MAR_14 - 70 * DAY, MAR_14 - 66 * DAY);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let topic = fresh_topic("okx-delivered");
    let run = run_loader_async(env(&sim, &i, &topic, "api_candles_1h", &range), vec![]).await;
    run.assert_ok();
    assert!(
        run.stderr.contains("delivered or delisted"),
        "{}",
        run.stderr
    );
    let records = read_topic(&topic);
    assert_eq!(records.len(), 96);
    let open = records[0].1["open_time"].as_i64().unwrap();
    let want = okx::kline(&data, i.inst_id, Interval::H1, open).unwrap();
    assert_eq!(records[0].1["close"].as_str(), Some(want.close.as_str()));
    let (v, _) = verify(&sim, &i, &topic, &range, &[("TYPE", "api_candles_1h")]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    // A future that never existed is still refused, naming SYMBOL.
    let run = run_loader_async(
        with(
            env(&sim, &i, &topic, "api_candles_1h", &range),
            &[("SYMBOL", "FOO-USD-260109")],
        ),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("SYMBOL FOO-USD-260109 is not an OKX futures instrument"),
        "{}",
        run.stderr
    );
}

const TRADES: &str = "/api/v5/market/history-trades";

fn trade_requests(sim: &SimServer) -> u64 {
    sim.stats()
        .okx
        .per_endpoint
        .get(TRADES)
        .copied()
        .unwrap_or(0)
}

/// Trades of a spot pair and a perpetual over REST: OKX pages them newest first only, so each
/// window is walked back and published oldest first. Every record is OKX's trade, exactly
/// once and in order, keyed by its millisecond and its place in it (trades share
/// milliseconds here); the spot job is stopped by SIGTERM after its first windows and the
/// next attempt resumes after its last trade without a duplicate; `verify` lists the range
/// from OKX and passes; the endpoint's limit is kept; a range older than three months is
/// refused before anything is asked with `SOURCE=rest`.
#[tokio::test(flavor = "multi_thread")]
async fn okx_trades_load_exactly_once_resume_and_verify() {
    let sim = sim().await;
    let data = Data::default();
    let start = MAR_14 + 3 * 3_600_000;
    for (i, minutes) in [(&INSTS[0], 30), (&INSTS[2], 3)] {
        let end = start + minutes * MIN;
        let want = okx::trades(&data, i.inst_id, start, end).unwrap();
        assert!(
            want.windows(2).any(|w| w[0].time == w[1].time),
            "trades share milliseconds"
        );
        let topic = fresh_topic("okx-trades");
        let range = format!("{}:{}", fmt(start), fmt(end));
        let env = env(&sim, i, &topic, "api_raw_trades", &range);
        if minutes > 10 {
            // Windows of about 5,000 trades: stopped after the first, resumed.
            let child = support::loader::spawn_loader(&env);
            let pid = child.id().to_string();
            support::loader::wait_until("trades are published", Duration::from_secs(120), || {
                support::loader::published(&topic) >= 1_000
            })
            .await;
            let run = support::loader::terminate(child, &pid).await;
            if run.code != Some(0) {
                assert_eq!(run.code, Some(143), "{}", run.stderr);
                assert!(support::loader::published(&topic) < want.len());
            }
        }
        let run = run_loader_async(env, vec![]).await;
        run.assert_ok();
        if minutes > 10 {
            assert!(run.stdout.contains("resumed after"), "{}", run.stdout);
        }
        let records = read_topic(&topic);
        assert_eq!(records.len(), want.len(), "{}", i.inst_id);
        let mut rank = 0;
        for (k, ((key, r), t)) in records.iter().zip(&want).enumerate() {
            rank = match k {
                0 => 0,
                _ if want[k - 1].time == t.time => rank + 1,
                _ => 0,
            };
            assert_eq!(key.as_deref(), Some(i.inst_id));
            assert_eq!(
                r["_key"],
                format!(
                    "okx_{}_{}_trade_{}",
                    i.market,
                    i.inst_id,
                    t.time * 1_000_000 + rank
                )
            );
            assert_eq!(r["exchange"].as_str(), Some("okx"));
            assert_eq!(r["trade_id"].as_u64(), Some(t.trade_id));
            assert_eq!(r["timestamp"].as_i64(), Some(t.time));
            assert_eq!(r["price"].as_str(), Some(t.px.as_str()));
            assert_eq!(r["quantity"].as_str(), Some(t.sz.as_str()));
            assert_eq!(r["is_buyer_maker"].as_bool(), Some(t.side == "sell"));
        }
        let (v, report) = verify(&sim, i, &topic, &range, &[("TYPE", "api_raw_trades")]);
        assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
        assert_eq!(
            report["groups"][0]["records"].as_u64(),
            Some(want.len() as u64)
        );
    }
    let st = sim.stats().okx;
    assert!(st.max_in_window[TRADES] <= 20, "{st:?}");
    assert_eq!(st.responses_429, 0);
    // Older than three months, with SOURCE=rest: refused, nothing asked.
    let asked = trade_requests(&sim);
    let old = format!("{}:{}", fmt(MAR_14 - 120 * DAY), fmt(MAR_14));
    let topic = fresh_topic("okx-trades-old");
    let run = run_loader_async(
        with(
            env(&sim, &INSTS[0], &topic, "api_raw_trades", &old),
            &[("SOURCE", "rest")],
        ),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("OKX's REST serves spot trades of the last three months only")
            && run.stderr.contains("SOURCE=rest never reads the archive"),
        "{}",
        run.stderr
    );
    assert_eq!(trade_requests(&sim), asked);
}

/// A topic that lost a trade fails `verify`, which names what is missing.
#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_an_okx_trade_missing_from_the_topic() {
    let sim = sim().await;
    let i = &INSTS[0];
    let (start, end) = (MAR_14 + 3_600_000, MAR_14 + 3_600_000 + 2 * MIN);
    let want = okx::trades(&Data::default(), i.inst_id, start, end).unwrap();
    // The topic holds the range less one trade in the middle: a load of the range up to it,
    // then of the range after it.
    let alone = (want.len() / 2..want.len() - 1)
        .find(|&k| want[k - 1].time != want[k].time && want[k + 1].time != want[k].time)
        .expect("a trade alone in its millisecond");
    let gap = &want[alone];
    let topic = fresh_topic("okx-trades-gap");
    for (from, to) in [(start, gap.time), (gap.time + 1, end)] {
        let range = format!("{}:{}", fmt_ms(from), fmt_ms(to));
        run_loader_async(env(&sim, i, &topic, "api_raw_trades", &range), vec![])
            .await
            .assert_ok();
    }
    assert_eq!(read_topic(&topic).len(), want.len() - 1);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let (v, report) = verify(&sim, i, &topic, &range, &[("TYPE", "api_raw_trades")]);
    assert_ne!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
    assert_eq!(report["groups"][0]["missing"].as_u64(), Some(1), "{report}");
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A trade spacing that keeps a day of trades to a few thousand (the default would be near
/// seven hundred thousand a day).
async fn trade_sim() -> SimServer {
    let sim = support::sim(SimConfig {
        agg_trade_spacing_ms: 20_000,
        ..SimConfig::default()
    })
    .await;
    sim.clock().set_now_ms(NOW);
    sim
}

fn archive_env(sim: &SimServer, i: &Inst, topic: &str, range: &str) -> Vec<(&'static str, String)> {
    let mut env = env(sim, i, topic, "api_raw_trades", range);
    env.push(("OKX_ARCHIVE_URL", sim.okx_archive_url()));
    env
}

/// Checks that `topic` holds exactly OKX's trades of `[start, end)`, oldest first, each keyed
/// by its millisecond and its place in it.
fn assert_trades(sim: &SimServer, i: &Inst, topic: &str, start: i64, end: i64) -> usize {
    let want = okx::trades(&sim.data(), i.inst_id, start, end).unwrap();
    let records = read_topic(topic);
    assert_eq!(records.len(), want.len(), "{}", i.inst_id);
    let mut rank = 0;
    for (k, ((_, r), t)) in records.iter().zip(&want).enumerate() {
        rank = match k {
            0 => 0,
            _ if want[k - 1].time == t.time => rank + 1,
            _ => 0,
        };
        let key = format!(
            "okx_{}_{}_trade_{}",
            i.market,
            i.inst_id,
            t.time * 1_000_000 + rank
        );
        assert_eq!(r["_key"], key);
        assert_eq!(r["trade_id"].as_u64(), Some(t.trade_id));
        assert_eq!(r["quantity"].as_str(), Some(t.sz.as_str()));
        assert_eq!(r["is_buyer_maker"].as_bool(), Some(t.side == "sell"));
    }
    want.len()
}

fn file_downloads(sim: &SimServer, name: &str) -> u64 {
    sim.stats()
        .okx_archive
        .per_file
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// Four months ago, beyond what history-trades serves: every trade comes from OKX's daily
/// zips, whose days are of UTC+8 (the file of a day starts at 16:00 UTC the day before), the
/// range's edges filtered out of the files around them; nothing is asked over REST; `verify`
/// lists the range from the archive and passes. A file whose first download is damaged
/// (the size and ETag it was probed with disagree) is downloaded again.
#[tokio::test(flavor = "multi_thread")]
async fn old_okx_trades_come_from_the_archive_in_utc8_days_and_verify() {
    let sim = trade_sim().await;
    let i = &INSTS[1];
    // 2025-11-14 10:00 to 2025-11-16 03:00 UTC: the end of the file of 11-14 (UTC+8, from
    // 11-13 16:00 UTC), the whole file of 11-15, the start of the one of 11-16.
    let start = MAR_14 - 120 * DAY + 10 * 3_600_000;
    let end = start + DAY + 17 * 3_600_000;
    let range = format!("{}:{}", fmt(start), fmt(end));
    let first = format!("{}-trades-2025-11-14.zip", i.inst_id);
    assert_eq!(fmt(start), "2025-11-14T10:00:00Z");
    sim.corrupt_okx_file(&first, 1);
    let topic = fresh_topic("okx-trades-archive");
    let mut env = archive_env(&sim, i, &topic, &range);
    // The reader's account of each file it published (rows read).
    env.push((
        "RUST_LOG",
        "info,loader_producer::source::history=debug".into(),
    ));
    let run = run_loader_async(env, vec![]).await;
    run.assert_ok();
    // The last file (UTC+8: from 11-15 16:00 UTC) is read up to the first row past the range,
    // not to its end.
    let last = format!("{}-trades-2025-11-16.zip", i.inst_id);
    let read = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "archive file published" && v["file"] == last.as_str())
        .and_then(|v| v["rows"].as_u64())
        .unwrap_or_else(|| panic!("no account of {last}: {}", run.stderr));
    let file_start = end - 11 * 3_600_000;
    let in_range = okx::trades(&sim.data(), i.inst_id, file_start, end)
        .unwrap()
        .len() as u64;
    let in_file = okx::trades(&sim.data(), i.inst_id, file_start, file_start + DAY)
        .unwrap()
        .len() as u64;
    assert!(
        read <= in_range + 2 && in_file > in_range + 2,
        "{read} rows read of {last}: {in_range} in the range, {in_file} in the file"
    );
    assert!(
        run.stderr.contains("downloading it again"),
        "{}",
        run.stderr
    );
    let n = assert_trades(&sim, i, &topic, start, end);
    assert!(n > 5_000, "{n}");
    assert_eq!(trade_requests(&sim), 0, "nothing asked over REST");
    let st = sim.stats().okx_archive;
    assert_eq!(
        st.per_file.keys().cloned().collect::<Vec<_>>(),
        ["14", "15", "16"]
            .map(|d| format!("{}-trades-2025-11-{d}.zip", i.inst_id))
            .to_vec()
    );
    assert_eq!(st.per_file[&first], 2, "downloaded again once");
    let mut vars = okx_vars(&sim, i.market);
    vars.push(("OKX_ARCHIVE_URL", sim.okx_archive_url()));
    vars.push(("SYMBOL", i.inst_id.into()));
    vars.push(("TYPE", "api_raw_trades".into()));
    let v = verify_topic(&topic, &range, &vars, &[]);
    assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
    assert_eq!(trade_requests(&sim), 0, "verify listed the archive");
}

/// Within three months, with the default SOURCE=auto: the whole days of UTC+8 the range holds
/// come from their files, its edges over REST, each trade once and keyed alike whichever
/// source it came from; `SOURCE=rest` loads the same records over REST alone, and a missing
/// file is loaded over REST with auto but fails `SOURCE=archive` naming the file.
#[tokio::test(flavor = "multi_thread")]
async fn recent_okx_trades_mix_archive_days_and_rest_edges() {
    let sim = trade_sim().await;
    let i = &INSTS[0];
    // 2026-03-12 12:00 to 03-14 00:00 UTC: REST until 16:00, the file of 03-13, REST after.
    let (start, end) = (MAR_14 - 2 * DAY + 12 * 3_600_000, MAR_14);
    let range = format!("{}:{}", fmt(start), fmt(end));
    let file = format!("{}-trades-2026-03-13.zip", i.inst_id);
    let topic = fresh_topic("okx-trades-mixed");
    run_loader_async(archive_env(&sim, i, &topic, &range), vec![])
        .await
        .assert_ok();
    let n = assert_trades(&sim, i, &topic, start, end);
    assert_eq!(file_downloads(&sim, &file), 1);
    assert_eq!(sim.stats().okx_archive.per_file.len(), 1, "one file whole");
    let by_rest = trade_requests(&sim);
    assert!(by_rest > 0);
    // REST alone: the same records.
    let rest_topic = fresh_topic("okx-trades-rest");
    run_loader_async(
        with(
            archive_env(&sim, i, &rest_topic, &range),
            &[("SOURCE", "rest")],
        ),
        vec![],
    )
    .await
    .assert_ok();
    let (a, b) = (read_topic(&topic), read_topic(&rest_topic));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).all(|(x, y)| x.1 == y.1 || {
        let (mut x, mut y) = (x.1.clone(), y.1.clone());
        x.as_object_mut().unwrap().remove("loader_job");
        y.as_object_mut().unwrap().remove("loader_job");
        x == y
    }));
    assert_eq!(file_downloads(&sim, &file), 1, "SOURCE=rest reads no file");
    // The day is not in the archive: auto loads it over REST, archive fails naming it.
    let mut faults = sim.archive_faults();
    faults.missing_days = vec!["2026-03-13".into()];
    sim.set_archive_faults(faults);
    let topic = fresh_topic("okx-trades-missing");
    run_loader_async(archive_env(&sim, i, &topic, &range), vec![])
        .await
        .assert_ok();
    assert_eq!(read_topic(&topic).len(), n);
    let topic = fresh_topic("okx-trades-missing-archive");
    let run = run_loader_async(
        with(
            archive_env(&sim, i, &topic, &range),
            &[("SOURCE", "archive")],
        ),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&file) && run.stderr.contains("OKX_ARCHIVE_URL"),
        "{}",
        run.stderr
    );
}

/// At a latency like OKX's (150 ms a request here), one window walked at a time would spend a
/// request per round trip, some 13 of history-trades' 20 in any 2 s: windows are asked four
/// at once, and the job spends the whole limit (`RATE_LIMIT_SHARE=1`), never more, with every
/// trade once.
#[tokio::test(flavor = "multi_thread")]
async fn okx_trades_spend_the_whole_limit_despite_latency() {
    let sim = support::sim(SimConfig {
        faults: exchange_sim::Faults {
            latency: Duration::from_millis(150),
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await;
    sim.clock().set_now_ms(NOW);
    let i = &INSTS[0];
    let start = MAR_14 + 5 * 3_600_000;
    let end = start + 20 * MIN;
    let range = format!("{}:{}", fmt(start), fmt(end));
    let topic = fresh_topic("okx-trades-latency");
    let env = with(
        env(&sim, i, &topic, "api_raw_trades", &range),
        &[("RATE_LIMIT_SHARE", "1")],
    );
    run_loader_async(env, vec![]).await.assert_ok();
    let want = okx::trades(&Data::default(), i.inst_id, start, end).unwrap();
    assert_eq!(read_topic(&topic).len(), want.len());
    let st = sim.stats().okx;
    assert_eq!(
        (st.max_in_window[TRADES], st.responses_429),
        (20, 0),
        "{st:?}"
    );
}
