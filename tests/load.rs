//! End-to-end loads: the real binary fetches from the exchange simulator and publishes to a real
//! Kafka-compatible broker (nisshi); every test reads the topic back and compares it record by
//! record with the simulator's data.

mod support;

use support::sim;

use std::time::Duration;

use exchange_sim::{data, Faults, Interval, SimConfig, SimServer, Storm};
use serde_json::Value;
use support::loader::{
    fresh_topic, read_tagged, read_topic, run_loader_async, verify_topic, with, Run,
};

const DAY: i64 = 86_400_000;
const JAN1_2024: i64 = 1_704_067_200_000;

/// A simulator whose next `count` requests get `status` with `Retry-After: retry_after_secs`.
fn storm(status: u16, count: u32, retry_after_secs: u64) -> SimConfig {
    coded_storm(status, None, count, retry_after_secs)
}

/// The next `count` requests answered `status`, with Binance's error `code` where given.
fn coded_storm(status: u16, code: Option<i32>, count: u32, retry_after_secs: u64) -> SimConfig {
    let storm = Storm {
        status,
        count,
        retry_after_secs,
        code,
    };
    SimConfig {
        faults: Faults {
            storm: Some(storm),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

fn job_env(
    sim: &SimServer,
    topic: &str,
    symbol: &str,
    ty: &str,
    range: &str,
) -> Vec<(&'static str, String)> {
    support::loader::job_env(&sim.base_url(), topic, symbol, ty, range)
}

/// Asserts the topic holds exactly the simulator's candles of `symbol` with open time in
/// `[start, end)`, in order, field by field.
fn assert_candles(
    records: &[(Option<String>, Value)],
    symbol: &str,
    iv: Interval,
    start: i64,
    end: i64,
) {
    let mine: Vec<&(Option<String>, Value)> = records
        .iter()
        .filter(|(_, v)| v["symbol"] == symbol)
        .collect();
    let expected = data::interval_open_times(iv, start, end);
    assert_eq!(mine.len(), expected.len(), "{symbol} {iv}: record count");
    for ((key, v), open) in mine.iter().zip(&expected) {
        // Every candle test runs on the simulator's default data.
        let k = data::kline(&SimConfig::default().data(), symbol, iv, *open);
        assert_eq!(key.as_deref(), Some(symbol), "message key is the symbol");
        assert_eq!(v["_key"], format!("{symbol}_{iv}_{open}"));
        assert_eq!(v["interval"], iv.to_string());
        assert_eq!(v["open_time"], *open);
        assert_eq!(v["timestamp"], *open);
        assert_eq!(v["close_time"], k.close_time);
        assert_eq!(v["open"], k.open);
        assert_eq!(v["high"], k.high);
        assert_eq!(v["low"], k.low);
        assert_eq!(v["close"], k.close);
        assert_eq!(v["volume"], k.volume);
        assert_eq!(v["quote_asset_volume"], k.quote_volume);
        assert_eq!(v["number_of_trades"], k.trades);
        assert_eq!(v["taker_buy_base_asset_volume"], k.taker_buy_base);
        assert_eq!(v["taker_buy_quote_asset_volume"], k.taker_buy_quote);
    }
}

fn verify(topic: &str, range: &str) -> Run {
    verify_topic(topic, range, &[], &["--offline"])
}

#[tokio::test(flavor = "multi_thread")]
async fn candles_1m_over_three_days_match_the_exchange_record_by_record() {
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("candles-1m");
    let run = run_loader_async(
        with(
            job_env(
                &sim,
                &topic,
                "btcusdt",
                "api_candles_1m",
                "2024-01-01:2024-01-04",
            ),
            &[("SOURCE", "rest")],
        ),
        vec![],
    )
    .await;
    run.assert_ok();
    assert!(
        run.stdout.contains("Loaded and published 4320 records"),
        "{}",
        run.stdout
    );
    let records = read_topic(&topic);
    assert_candles(
        &records,
        "BTCUSDT",
        "1m".parse().unwrap(),
        JAN1_2024,
        JAN1_2024 + 3 * DAY,
    );
    let v = verify(&topic, "2024-01-01:2024-01-04");
    assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(report["records"], 4320);
    // Nothing over the budget, nothing rejected, and one request per page of 1000: no
    // request is spent on an empty answer.
    let st = sim.stats();
    assert_eq!(st.per_endpoint.get("/api/v3/klines"), Some(&5), "{st:?}");
    assert_eq!(
        (st.responses_429, st.responses_418, st.budget_violations),
        (0, 0, 0)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn candles_1h_with_interval_variable_and_several_symbols() {
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("candles-1h");
    let env = with(
        job_env(
            &sim,
            &topic,
            "BTCUSDT,ethusdt,BnbUsdt",
            "api_candles",
            "2023-11-01:2024-01-01",
        ),
        &[("INTERVAL", "1h"), ("FETCH_CONCURRENCY", "3")],
    );
    run_loader_async(env, vec![]).await.assert_ok();
    let records = read_topic(&topic);
    let start = 1_698_796_800_000; // 2023-11-01
    for symbol in ["BTCUSDT", "ETHUSDT", "BNBUSDT"] {
        assert_candles(&records, symbol, "1h".parse().unwrap(), start, JAN1_2024);
    }
    assert_eq!(records.len(), 3 * 61 * 24);
    let v = verify(&topic, "2023-11-01:2024-01-01");
    assert_eq!(v.code, Some(0), "{}", v.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn monthly_and_weekly_candles_follow_the_calendar() {
    let sim = sim(SimConfig::default()).await;
    for (ty, iv, start, end, range) in [
        (
            "api_candles_1M",
            "1M",
            1_672_531_200_000i64,
            JAN1_2024,
            "2023-01-01:2024-01-01",
        ),
        // 2024-01-01 is a Monday; a mid-week start begins at the next week.
        (
            "api_candles_1w",
            "1w",
            JAN1_2024 + DAY,
            JAN1_2024 + 70 * DAY,
            "2024-01-02:2024-03-11",
        ),
    ] {
        let topic = fresh_topic("candles-cal");
        run_loader_async(job_env(&sim, &topic, "ETHUSDT", ty, range), vec![])
            .await
            .assert_ok();
        let records = read_topic(&topic);
        assert_candles(&records, "ETHUSDT", iv.parse().unwrap(), start, end);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_trades_for_hours_are_complete_unique_and_in_range() {
    let cfg = SimConfig::default();
    let data = cfg.data();
    let sim = sim(cfg).await;
    let topic = fresh_topic("aggtrades");
    let start = JAN1_2024 + 23 * 3_600_000 + 1234; // odd bounds, across midnight
    let end = JAN1_2024 + 26 * 3_600_000 + 5678;
    let range = format!("{start}:{end}");
    let run = run_loader_async(
        job_env(&sim, &topic, "ETHUSDT", "api_trades", &range),
        vec![],
    )
    .await;
    run.assert_ok();
    let records = read_topic(&topic);
    let expected = data.trades_between("ETHUSDT", start, end - 1);
    assert!(
        expected.len() > 40_000,
        "the range should hold hours of trades"
    );
    assert_eq!(records.len(), expected.len());
    for ((key, v), t) in records.iter().zip(&expected) {
        assert_eq!(key.as_deref(), Some("ETHUSDT"));
        assert_eq!(v["_key"], format!("ETHUSDT_agg_{}", t.id));
        assert_eq!(v["trade_id"], t.id);
        assert_eq!(v["price"], t.price);
        assert_eq!(v["quantity"], t.qty);
        assert_eq!(v["first_trade_id"], t.first_trade_id);
        assert_eq!(v["last_trade_id"], t.last_trade_id);
        assert_eq!(v["timestamp"], t.time);
        assert_eq!(v["is_buyer_maker"], t.is_buyer_maker);
        assert_eq!(v["is_best_match"], t.is_best_match);
        assert_eq!(v["symbol"], "ETHUSDT");
    }
    let v = verify(&topic, &range);
    assert_eq!(v.code, Some(0), "{}", v.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_in_aggregate_ids_is_reported_not_skipped() {
    let missing = {
        let d = SimConfig::default().data();
        let first = d.first_id_at_or_after("BTCUSDT", JAN1_2024 + 1_800_000);
        (first, first + 41)
    };
    let cfg = SimConfig {
        faults: Faults {
            missing_agg_ids: vec![missing],
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let sim = sim(cfg).await;
    let topic = fresh_topic("aggtrades-gap");
    let range = format!("{}:{}", JAN1_2024, JAN1_2024 + 3_600_000);
    let run = run_loader_async(
        job_env(&sim, &topic, "BTCUSDT", "api_trades", &range),
        vec![],
    )
    .await;
    run.assert_ok();
    assert!(
        run.stdout.contains("missing 42 aggregate trade id(s)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("gap"),
        "the gap is logged: {}",
        run.stderr
    );
    // Without asking the exchange, a gap is a loss.
    let v = verify(&topic, &range);
    assert_eq!(v.code, Some(1), "verify must flag the gap: {}", v.stdout);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(report["groups"][0]["missing"], 42);
    assert_eq!(report["groups"][0]["missing_ranges"][0][0], missing.0);
    // Binance has none of these ids either: an exchange gap, not a lost record.
    let v = verify_topic(&topic, &range, &[("BINANCE_API_URL", sim.base_url())], &[]);
    assert_eq!(
        v.code,
        Some(0),
        "the exchange's own gap is no loss: {}",
        v.stdout
    );
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(report["groups"][0]["missing"], 0);
    assert_eq!(report["groups"][0]["exchange_gaps"], 42);
    assert_eq!(report["groups"][0]["exchange_gap_ranges"][0][0], missing.0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_flags_duplicates_and_records_outside_the_range() {
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("dupes");
    run_loader_async(
        job_env(
            &sim,
            &topic,
            "BTCUSDT",
            "api_candles_1h",
            "2024-01-01:2024-01-03",
        ),
        vec![],
    )
    .await
    .assert_ok();
    // An overlapping second job that does not resume (RESUME=false) publishes the overlap again.
    run_loader_async(
        with(
            job_env(
                &sim,
                &topic,
                "BTCUSDT",
                "api_candles_1h",
                "2024-01-02:2024-01-04",
            ),
            &[("RESUME", "false")],
        ),
        vec![],
    )
    .await
    .assert_ok();
    let v = verify(&topic, "2024-01-01:2024-01-03");
    assert_eq!(v.code, Some(1), "{}", v.stdout);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(report["groups"][0]["duplicates"], 24);
    assert_eq!(report["groups"][0]["outside_range"], 24);
    assert_eq!(report["groups"][0]["records"], 96);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tight_weight_budget_is_used_but_never_exceeded() {
    // Each kline page weighs 2, so the ranges need several windows of a small budget. The
    // second case takes the whole budget (RATE_LIMIT_SHARE=1) with 32 requests in flight and
    // 40 ms responses: weight reserved for requests still in flight must never be forgotten
    // when the server's count comes back.
    for (limit, concurrency, latency_ms, days) in [(120u32, "8", 0u64, 90i64), (100, "32", 40, 200)]
    {
        let cfg = SimConfig {
            weight_limit: limit,
            weight_window: Duration::from_secs(1),
            faults: Faults {
                latency: Duration::from_millis(latency_ms),
                ..Faults::default()
            },
            ..SimConfig::default()
        };
        let sim = sim(cfg).await;
        let topic = fresh_topic("budget");
        let range = format!("{}:{}", JAN1_2024, JAN1_2024 + days * DAY);
        let env = with(
            job_env(&sim, &topic, "BTCUSDT", "api_candles_1m", &range),
            &[
                ("RATE_LIMIT_SHARE", "1.0"),
                ("FETCH_CONCURRENCY", concurrency),
                ("SOURCE", "rest"),
            ],
        );
        run_loader_async(env, vec![]).await.assert_ok();
        let st = sim.stats();
        assert_eq!(
            (st.responses_429, st.responses_418, st.budget_violations),
            (0, 0, 0),
            "{st:?}"
        );
        assert!(st.max_window_weight <= limit, "{st:?}");
        assert!(
            st.weight_total > 2 * u64::from(limit),
            "the budget was the bottleneck: {st:?}"
        );
        assert_candles(
            &read_topic(&topic),
            "BTCUSDT",
            "1m".parse().unwrap(),
            JAN1_2024,
            JAN1_2024 + days * DAY,
        );
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_storms_are_waited_out_and_nothing_is_lost() {
    for status in [429u16, 418] {
        let cfg = storm(status, 6, 1);
        let sim = sim(cfg).await;
        let topic = fresh_topic("storm");
        let run = run_loader_async(
            with(
                job_env(
                    &sim,
                    &topic,
                    "BTCUSDT",
                    "api_candles_5m",
                    "2024-01-01:2024-01-15",
                ),
                &[("SOURCE", "rest")],
            ),
            vec![],
        )
        .await;
        run.assert_ok();
        let st = sim.stats();
        let seen = if status == 429 {
            st.responses_429
        } else {
            st.responses_418
        };
        assert_eq!(seen, 6, "{st:?}");
        assert_eq!(
            st.budget_violations, 0,
            "the loader kept sending into a rate limit: {st:?}"
        );
        if status == 418 {
            assert!(
                run.stderr.contains("banned"),
                "a 418 is logged as a ban: {}",
                run.stderr
            );
        }
        assert_candles(
            &read_topic(&topic),
            "BTCUSDT",
            "5m".parse().unwrap(),
            JAN1_2024,
            JAN1_2024 + 14 * DAY,
        );
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binances_try_again_answers_are_retried_and_nothing_is_lost() {
    // 408 (a backend timeout) and the "try again" codes, at startup (server time) and after.
    for (status, code) in [(408u16, None), (400, Some(-1008)), (400, Some(-1000))] {
        let sim = sim(coded_storm(status, code, 3, 0)).await;
        let topic = fresh_topic("try-again");
        let run = run_loader_async(
            with(
                job_env(
                    &sim,
                    &topic,
                    "BTCUSDT",
                    "api_candles_1h",
                    "2024-01-01:2024-01-03",
                ),
                &[("SOURCE", "rest")],
            ),
            vec![],
        )
        .await;
        run.assert_ok();
        assert!(
            run.stderr.contains("retrying request"),
            "HTTP {status} {code:?} is retried: {}",
            run.stderr
        );
        assert_candles(
            &read_topic(&topic),
            "BTCUSDT",
            "1h".parse().unwrap(),
            JAN1_2024,
            JAN1_2024 + 2 * DAY,
        );
        // Every record names its job, the same for all of them.
        let tags: std::collections::BTreeSet<String> = read_tagged(&topic)
            .iter()
            .map(|(_, p)| {
                let v: Value = serde_json::from_slice(p).unwrap();
                v["loader_job"]
                    .as_str()
                    .expect("every record has loader_job")
                    .to_string()
            })
            .collect();
        assert_eq!(tags.len(), 1, "{tags:?}");
        let tag = tags.into_iter().next().unwrap();
        let (fp, p) = tag.split_once(";p=").expect("fingerprint;p=N");
        assert!(
            fp.len() == 32 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
            "{tag}"
        );
        assert!(p.parse::<u32>().is_ok(), "{tag}");
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_location_is_a_configuration_error_and_is_not_retried() {
    let sim = sim(storm(451, 100, 0)).await;
    let topic = fresh_topic("restricted");
    let run = run_loader_async(
        with(
            job_env(
                &sim,
                &topic,
                "BTCUSDT",
                "api_candles_1h",
                "2024-01-01:2024-01-02",
            ),
            &[("SOURCE", "rest")],
        ),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("HTTP 451") && run.stderr.contains("location"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(sim.stats().requests, 1, "asked once, never again");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_and_dropped_connections_are_retried() {
    let faults = Faults {
        error_5xx_every: 3,
        drop_every: 4,
        ..Faults::default()
    };
    let sim = sim(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let topic = fresh_topic("faults");
    let run = run_loader_async(
        with(
            job_env(
                &sim,
                &topic,
                "ETHUSDT",
                "api_candles_1m",
                "2024-01-01:2024-01-08",
            ),
            &[("SOURCE", "rest")],
        ),
        vec![],
    )
    .await;
    run.assert_ok();
    let st = sim.stats();
    assert!(st.responses_5xx > 0 && st.dropped > 0, "{st:?}");
    assert_candles(
        &read_topic(&topic),
        "ETHUSDT",
        "1m".parse().unwrap(),
        JAN1_2024,
        JAN1_2024 + 7 * DAY,
    );
    let v = verify(&topic, "2024-01-01:2024-01-08");
    assert_eq!(v.code, Some(0), "{}", v.stdout);
    sim.shutdown().await;
}

/// A ban longer than the job waits, or a 403 from Binance's firewall, exits 4, which the
/// manifests do not retry (a pod restarted at once would call during the ban), saying until
/// when where Binance says.
#[tokio::test(flavor = "multi_thread")]
async fn a_ban_longer_than_the_retry_budget_fails_with_exit_4_saying_until_when() {
    for (status, retry_after, said) in [(418, 600, "until about"), (403, 0, "does not say")] {
        let sim = sim(storm(status, 100, retry_after)).await;
        let topic = fresh_topic("banned");
        let env = with(
            job_env(
                &sim,
                &topic,
                "BTCUSDT",
                "api_candles_1m",
                "2024-01-01:2024-01-02",
            ),
            &[("MAX_RETRY_AFTER", "5"), ("SOURCE", "rest")],
        );
        let run = run_loader_async(env, vec![]).await;
        assert_eq!(run.code, Some(4), "{status}: {}", run.stderr);
        assert!(
            run.stderr.contains(&status.to_string()) && run.stderr.contains(said),
            "{status}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        // Asked once per request in flight, never hammered.
        assert!(sim.stats().requests <= 20, "{status}: {:?}", sim.stats());
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_reaching_past_now_loads_what_exists_and_says_so() {
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("future");
    let now = chrono::Utc::now().timestamp_millis();
    let iv: Interval = "1h".parse().unwrap();
    let start = iv.align_down(now) - 5 * 3_600_000;
    let range = format!("{start}:{}", now + 10 * DAY);
    let run = run_loader_async(
        job_env(&sim, &topic, "BTCUSDT", "api_candles_1h", &range),
        vec![],
    )
    .await;
    run.assert_ok();
    assert!(
        run.stdout.contains("reaches past the present"),
        "{}",
        run.stdout
    );
    let records = read_topic(&topic);
    // Only closed candles: the five before the current hour (six if the hour turned meanwhile).
    assert!(
        records.len() == 5 || records.len() == 6,
        "{}",
        records.len()
    );
    assert_candles(
        &records,
        "BTCUSDT",
        iv,
        start,
        start + records.len() as i64 * 3_600_000,
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_end_of_a_range_before_a_long_silence_is_found_without_walking_hours() {
    // After the range, the symbol has no trade for a year (like a delisted symbol): the first
    // trade at or after the end is found by one request with startTime alone (spot accepts it
    // since 2023-07-11), not hour by hour nor by a search over ids.
    let end = JAN1_2024 + 3_600_000;
    let d = SimConfig::default().data();
    let first_after = d.first_id_at_or_after("BTCUSDT", end);
    let cfg = SimConfig {
        faults: Faults {
            missing_agg_ids: vec![(first_after, first_after + 365 * 86_400 * 4)],
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let data = cfg.data();
    let sim = sim(cfg).await;
    let topic = fresh_topic("aggtrades-silence");
    let range = format!("{JAN1_2024}:{end}");
    let env = with(
        job_env(&sim, &topic, "BTCUSDT", "api_trades", &range),
        &[("SOURCE", "rest")],
    );
    run_loader_async(env, vec![]).await.assert_ok();
    let want: Vec<u64> = data
        .trades_between("BTCUSDT", JAN1_2024, end - 1)
        .iter()
        .map(|t| t.id)
        .collect();
    let got: Vec<u64> = read_topic(&topic)
        .iter()
        .map(|(_, v)| v["trade_id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
    let requests = sim.stats().per_endpoint["/api/v3/aggTrades"];
    // 15 pages of 1,000, the read-ahead pages in flight when the end is reached (their number
    // depends on timing) and single-request lookups: 19 to 31 seen. A search over ids adds about
    // 35 to the 15 pages (50 seen); walking the silence hour by hour would take 8,760.
    assert!(requests <= 40, "{requests} aggTrades requests");
    sim.shutdown().await;
}
