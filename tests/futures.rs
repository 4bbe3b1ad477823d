//! Futures markets (`MARKET=usdm`, `MARKET=coinm`) end to end: the real binary loads every
//! history type of each futures market from the exchange simulator's `fapi`/`dapi` endpoints and
//! its `data/futures/um|cm` archive into the real broker; topics from REST and from the archive
//! are compared byte for byte, `verify` (asking the market's own endpoints) must find nothing
//! lost or doubled, and the simulator's counters prove which market was asked and that its
//! weights and request limits were never exceeded.

mod support;

use std::time::Duration;

use chrono::{Duration as Days, NaiveDate};
use exchange_sim::{ArchiveFaults, SimConfig, SimServer, SimStats};
use serde_json::Value;
use support::loader::{
    fresh_topic, job_env, read_raw, read_records, run_loader_async, verify_topic, with, Run,
};

/// One futures market as the tests use it.
#[derive(Clone, Copy)]
struct Futures {
    market: &'static str,
    symbol: &'static str,
    url_var: &'static str,
    prefix: &'static str,
}

const USDM: Futures = Futures {
    market: "usdm",
    symbol: "BTCUSDT",
    url_var: "BINANCE_FAPI_URL",
    prefix: "/usdm/fapi/v1",
};
const COINM: Futures = Futures {
    market: "coinm",
    symbol: "BTCUSD_PERP",
    url_var: "BINANCE_DAPI_URL",
    prefix: "/coinm/dapi/v1",
};

impl Futures {
    fn rest_url(self, sim: &SimServer) -> String {
        match self.market {
            "usdm" => sim.fapi_url(),
            _ => sim.dapi_url(),
        }
    }

    fn ws_url(self, sim: &SimServer) -> String {
        match self.market {
            "usdm" => sim.fws_url(),
            _ => sim.dws_url(),
        }
    }

    /// The market's variables for a job or `verify`.
    fn vars(self, sim: &SimServer) -> Vec<(&'static str, String)> {
        vec![
            ("MARKET", self.market.into()),
            (self.url_var, self.rest_url(sim)),
            (
                match self.market {
                    "usdm" => "BINANCE_FWS_URL",
                    _ => "BINANCE_DWS_URL",
                },
                self.ws_url(sim),
            ),
        ]
    }

    fn requests(self, st: &SimStats, endpoint: &str) -> u64 {
        st.per_endpoint
            .get(&format!("{}/{endpoint}", self.prefix))
            .copied()
            .unwrap_or(0)
    }
}

/// The exchange's "today" in these tests. Each simulator's clock is put at its noon: what
/// Binance keeps (a year of trades, 30 days of open interest) and what the archive has published
/// cannot change while a test runs, whatever the wall clock does (the loader and verify take
/// their time from the exchange).
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 17).unwrap()
}

const HOUR_MS: i64 = 3_600_000;

/// Midnight UTC `days` after [`today`], in epoch ms.
fn day_ms(days: i64) -> i64 {
    (today() + Days::days(days))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// A simulator with a trade every 10 s on average (8,640 a day: days of trades stay small), its
/// clock at noon of [`today`].
async fn sim(cfg: SimConfig) -> SimServer {
    let sim = support::sim(SimConfig {
        agg_trade_spacing_ms: 10_000,
        ..cfg
    })
    .await;
    sim.clock().set_now_ms(day_ms(0) + 12 * HOUR_MS);
    sim
}

/// Loads `ty` of `m`'s symbol for `range` with `SOURCE=source` into a fresh topic.
async fn load(
    sim: &SimServer,
    m: Futures,
    ty: &str,
    range: &str,
    source: &str,
    extra: &[(&'static str, &str)],
) -> (Run, String) {
    let topic = fresh_topic(&format!("{}-{}-{source}", m.market, ty.replace('_', "-")));
    let mut env = job_env(&sim.base_url(), &topic, m.symbol, ty, range);
    env.extend(m.vars(sim));
    let env = with(env, &[("SOURCE", source)]);
    let run = run_loader_async(with(env, extra), vec![]).await;
    (run, topic)
}

/// `verify` of `topic` asking `m`'s endpoints about gaps; asserts it passes.
fn verify_ok(sim: &SimServer, m: Futures, topic: &str, range: &str, ty: &str) -> Value {
    let mut extra = m.vars(sim);
    extra.push(("SYMBOL", m.symbol.into()));
    extra.push(("TYPE", ty.into()));
    // Futures historicalTrades, asked about a raw-trades topic's tail, needs a key.
    extra.push(("BINANCE_API_KEY", "sim-key".into()));
    let v = verify_topic(topic, range, &extra, &[]);
    assert_eq!(v.code, Some(0), "verify {ty}: {}{}", v.stdout, v.stderr);
    serde_json::from_str(&v.stdout).expect("verify --json")
}

/// `verify --offline` of futures trades older than a year, which Binance's REST no longer
/// serves: asked, verify would report the range's edges unchecked (tests/verify_edges.rs), so
/// these are checked offline, where every gap between the first and last record counts.
fn verify_old_trades_ok(m: Futures, topic: &str, range: &str, ty: &str) -> Value {
    let extra = vec![
        ("MARKET", m.market.to_string()),
        ("SYMBOL", m.symbol.to_string()),
        ("TYPE", ty.to_string()),
    ];
    let v = verify_topic(topic, range, &extra, &["--offline"]);
    assert_eq!(v.code, Some(0), "verify {ty}: {}{}", v.stdout, v.stderr);
    serde_json::from_str(&v.stdout).expect("verify --json")
}

fn payloads(topic: &str) -> Vec<Vec<u8>> {
    read_raw(topic).into_iter().map(|(_, v)| v).collect()
}

fn date(days_from_today: i64) -> String {
    (today() + Days::days(days_from_today))
        .format("%Y-%m-%d")
        .to_string()
}

/// Candles of every series, from REST and from the archive across the 2022 switch to header
/// rows, byte-identical and complete, for both futures markets.
#[tokio::test(flavor = "multi_thread")]
async fn candles_of_every_series_load_exactly_once_from_rest_and_archive() {
    let sim = sim(SimConfig::default()).await;
    let range = "2021-12-30:2022-01-03";
    for m in [USDM, COINM] {
        for ty in [
            "api_candles_1h",
            "api_mark_price_candles_1h",
            "api_index_price_candles_1h",
            "api_premium_index_candles_1h",
        ] {
            let (rest, rest_topic) = load(&sim, m, ty, range, "rest", &[]).await;
            rest.assert_ok();
            let (auto, auto_topic) = load(&sim, m, ty, range, "auto", &[]).await;
            auto.assert_ok();
            assert!(
                auto.stdout.contains("from 4 archive file(s)"),
                "{ty}: {}",
                auto.stdout
            );
            let (a, b) = (payloads(&rest_topic), payloads(&auto_topic));
            assert_eq!(a.len(), 96, "{} {ty}: 4 days of hours", m.market);
            assert!(a == b, "{} {ty}: REST and archive topics differ", m.market);
            let report = verify_ok(&sim, m, &rest_topic, range, ty);
            assert_eq!(report["records"], 96);
            let first: Value = serde_json::from_slice(&a[0]).unwrap();
            assert_eq!(first["market"], m.market);
            assert_eq!(first["symbol"], m.symbol);
            let tag = ty.trim_start_matches("api_").trim_end_matches("_1h");
            let tag = match tag {
                "candles" => String::new(),
                t => format!("{}_", t.split('_').next().unwrap()),
            };
            assert_eq!(
                first["_key"],
                format!("{}_{}_{tag}1h_1640822400000", m.market, m.symbol),
                "{ty}"
            );
        }
        let st = sim.stats();
        for endpoint in [
            "klines",
            "markPriceKlines",
            "indexPriceKlines",
            "premiumIndexKlines",
        ] {
            // 96 candles fit one page: one request per REST load, none for the archive.
            assert_eq!(m.requests(&st, endpoint), 1, "{endpoint}: {st:?}");
        }
    }
    let st = sim.stats();
    assert!(
        st.archive_downloads
            .keys()
            .any(|k| k.ends_with("/BTCUSD_PERP-1h-2022-01-01.zip")),
        "{:?}",
        st.archive_downloads
    );
    assert_eq!(
        (st.responses_429, st.responses_418),
        (0, 0),
        "no rate-limit rejection"
    );
    sim.shutdown().await;
}

/// Aggregate and raw trades of two recent days from REST (futures pages: 1,000 aggregate trades
/// for 20, 500 raw trades for 20) and from the archive, byte-identical and without a gap. Older
/// than the year Binance's REST serves (here across the 2022 switch to header rows), they come
/// from the archive alone, the partial days at the edges from the filtered daily files, without
/// one trade request; `SOURCE=rest` for them is refused before anything is published.
#[tokio::test(flavor = "multi_thread")]
async fn trades_load_exactly_once_from_rest_and_archive() {
    let sim = sim(SimConfig::default()).await;
    let recent = format!("{}:{}", date(-20), date(-18));
    let range = recent.as_str();
    for m in [USDM, COINM] {
        for (ty, endpoint, page) in [
            ("api_trades", "aggTrades", 1000),
            ("api_raw_trades", "historicalTrades", 500),
        ] {
            let before = m.requests(&sim.stats(), endpoint);
            // Futures historicalTrades needs an API key (any; the simulator checks it is sent).
            let key: &[(&'static str, &str)] = match ty {
                "api_raw_trades" => &[("BINANCE_API_KEY", "sim-key")],
                _ => &[],
            };
            let (rest, rest_topic) = load(&sim, m, ty, range, "rest", key).await;
            rest.assert_ok();
            let requests = m.requests(&sim.stats(), endpoint) - before;
            let (auto, auto_topic) = load(&sim, m, ty, range, "auto", key).await;
            auto.assert_ok();
            assert_eq!(
                m.requests(&sim.stats(), endpoint) - before,
                requests,
                "{} {ty}: the archive load made no {endpoint} request",
                m.market
            );
            let (a, b) = (payloads(&rest_topic), payloads(&auto_topic));
            assert!(a.len() > 10_000, "{} {ty}: {} records", m.market, a.len());
            assert!(a == b, "{} {ty}: REST and archive topics differ", m.market);
            // Pages as full as the market allows (plus the searches for the range ends).
            let pages = (a.len() as u64).div_ceil(page);
            assert!(
                requests <= pages + 2,
                "{} {ty}: {requests} requests for {} records",
                m.market,
                a.len()
            );
            let r: Value = serde_json::from_slice(&a[0]).unwrap();
            assert!(r.get("is_best_match").is_none(), "futures trades: {r}");
            let report = verify_ok(&sim, m, &rest_topic, range, ty);
            assert_eq!(report["records"], a.len() as u64);
        }
    }
    // 2021-12-31 12:00 to 2022-01-01 06:00: two partial days, a year and more ago.
    let old = "1640952000000:1641016800000";
    for m in [USDM, COINM] {
        for (ty, endpoint) in [
            ("api_trades", "aggTrades"),
            ("api_raw_trades", "historicalTrades"),
        ] {
            let key = [("BINANCE_API_KEY", "sim-key")];
            let requests = |st: &SimStats| m.requests(st, "aggTrades") + m.requests(st, endpoint);
            let before = requests(&sim.stats());
            let (auto, topic) = load(&sim, m, ty, old, "auto", &key).await;
            auto.assert_ok();
            assert_eq!(
                requests(&sim.stats()),
                before,
                "{} {ty}: trades older than a year come from the archive only",
                m.market
            );
            let report = verify_old_trades_ok(m, &topic, old, ty);
            assert!(
                report["records"].as_u64().unwrap() > 1_000,
                "{} {ty}: {report}",
                m.market
            );
            let (rest, topic) = load(&sim, m, ty, old, "rest", &key).await;
            assert_eq!(rest.code, Some(2), "{} {ty}: {}", m.market, rest.stderr);
            assert!(
                rest.stderr.contains("TIME_RANGE") && rest.stderr.contains("of the last year only"),
                "{}",
                rest.stderr
            );
            assert_eq!(payloads(&topic).len(), 0);
        }
    }
    let st = sim.stats();
    assert_eq!((st.responses_429, st.budget_violations), (0, 0), "{st:?}");
    sim.shutdown().await;
}

/// Where the archive lacks or spoils a file of trades older than REST's year, nothing can stand
/// in for it: the job fails saying so (exit 1, the next attempt tries the archive again)
/// instead of publishing a hole.
#[tokio::test(flavor = "multi_thread")]
async fn an_old_trade_file_the_archive_lacks_or_spoils_fails_the_job_not_silently() {
    let sim = sim(SimConfig {
        archive: ArchiveFaults {
            missing_days: vec!["2021-12-31".into()],
            bad_checksum: vec!["BTCUSDT-aggTrades-2022-01-01.zip".into()],
            ..ArchiveFaults::default()
        },
        ..SimConfig::default()
    })
    .await;
    // 2021-12-31 12:00-18:00: its daily file is missing. 2022-01-01 00:00-06:00: its daily
    // file never matches its CHECKSUM.
    for (range, why) in [
        ("1640952000000:1640973600000", "is not in the archive"),
        ("1640995200000:1641016800000", "does not match its CHECKSUM"),
    ] {
        let before = USDM.requests(&sim.stats(), "aggTrades");
        let (run, topic) = load(&sim, USDM, "api_trades", range, "auto", &[]).await;
        assert_eq!(run.code, Some(1), "{range}: {}", run.stderr);
        assert!(
            run.stderr.contains(why) && run.stderr.contains("of the last year only"),
            "{range}: {}",
            run.stderr
        );
        assert_eq!(USDM.requests(&sim.stats(), "aggTrades"), before);
        assert_eq!(payloads(&topic).len(), 0, "{range}");
    }
    sim.shutdown().await;
}

/// Funding rates of four years come from REST in a few pages and hold every settlement once;
/// funding times are not a grid, so paging follows the last time seen.
#[tokio::test(flavor = "multi_thread")]
async fn funding_rates_load_exactly_once() {
    let sim = sim(SimConfig::default()).await;
    let range = "2019-01-01:2023-01-01";
    for m in [USDM, COINM] {
        let events = fresh_topic(&format!("{}-funding-events", m.market));
        let (run, topic) = load(
            &sim,
            m,
            "api_funding_rate",
            range,
            "auto",
            &[("QUEUE_EVENTS_TOPIC", &events)],
        )
        .await;
        run.assert_ok();
        // Telemetry says which market the job loads.
        let finished: Vec<Value> = read_raw(&events)
            .into_iter()
            .map(|(_, v)| serde_json::from_slice::<Value>(&v).unwrap())
            .filter(|e| e["status"] == "finished")
            .collect();
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0]["market"], m.market);
        assert_eq!(finished[0]["type"], "api_funding_rate");
        let recs = read_records(&topic);
        // Three settlements a day for 1,461 days (the simulator lists symbols in 2017).
        assert_eq!(recs.len(), 3 * 1461, "{}", m.market);
        assert!(recs.windows(2).all(
            |w| w[0]["funding_time"].as_i64().unwrap() < w[1]["funding_time"].as_i64().unwrap()
        ));
        assert_eq!(recs[0]["market"], m.market);
        assert_eq!(recs[0]["mark_price"].is_string(), m.market == "usdm");
        // USDⓈ-M: 4,383 rows in pages of 1,000 after the last time seen; COIN-M, which
        // documents no order, in windows of 999 hours that cannot fill a page (35,064 hours).
        let expected = if m.market == "usdm" { 5 } else { 36 };
        assert_eq!(
            m.requests(&sim.stats(), "fundingRate"),
            expected,
            "{}",
            m.market
        );
        verify_ok(&sim, m, &topic, range, "api_funding_rate");
        // Funding times have no grid: verify checks the topic against the exchange's own list,
        // so a topic that lacks the settlements of December 2018 fails a range that holds them.
        let mut extra = m.vars(&sim);
        extra.push(("TYPE", "api_funding_rate".into()));
        let v = verify_topic(&topic, "2018-12-01:2023-01-01", &extra, &[]);
        assert_eq!(v.code, Some(1), "{}", v.stdout);
        let report: Value = serde_json::from_str(&v.stdout).unwrap();
        assert_eq!(report["groups"][0]["missing"], 31 * 3, "{report}");
    }
    sim.shutdown().await;
}

/// Open interest: the last 30 days from REST, older days from the archive's metrics files;
/// both give the same records where they overlap. Long/short ratios: REST only, and a range
/// older than 30 days is refused naming TIME_RANGE before anything is published.
#[tokio::test(flavor = "multi_thread")]
async fn open_interest_and_ratios_load_exactly_once_within_what_binance_keeps() {
    let sim = sim(SimConfig::default()).await;
    for m in [USDM, COINM] {
        // 40 days up to yesterday: metrics files for every day, REST for none.
        let old = format!("{}:{}", date(-40), date(0));
        let (run, topic) = load(&sim, m, "api_open_interest_1h", &old, "auto", &[]).await;
        run.assert_ok();
        assert_eq!(read_records(&topic).len(), 40 * 24, "{}", m.market);
        assert!(
            run.stdout.contains("from 40 archive file(s)"),
            "{}",
            run.stdout
        );
        verify_ok(&sim, m, &topic, &old, "api_open_interest_1h");

        // A partial first day older than REST keeps comes from its metrics file, filtered.
        let partial = format!("{}:{}", day_ms(-35) + 6 * 3_600_000, day_ms(-33));
        let oi_requests = |st: &SimStats| {
            let path = format!("/{}/futures/data/openInterestHist", m.market);
            st.per_endpoint.get(&path).copied().unwrap_or(0)
        };
        let before = oi_requests(&sim.stats());
        let (run, topic) = load(&sim, m, "api_open_interest_1h", &partial, "auto", &[]).await;
        run.assert_ok();
        assert_eq!(read_records(&topic).len(), 42, "{}", m.market);
        assert_eq!(oi_requests(&sim.stats()), before, "{}", m.market);
        verify_ok(&sim, m, &topic, &partial, "api_open_interest_1h");

        // The last 5 whole days from both sources: the same records.
        let recent = format!("{}:{}", date(-5), date(0));
        let (rest, rest_topic) = load(&sim, m, "api_open_interest_5m", &recent, "rest", &[]).await;
        rest.assert_ok();
        let (auto, auto_topic) = load(&sim, m, "api_open_interest_5m", &recent, "auto", &[]).await;
        auto.assert_ok();
        let (a, b) = (payloads(&rest_topic), payloads(&auto_topic));
        assert_eq!(a.len(), 5 * 288);
        assert!(a == b, "{}: metrics files and REST differ", m.market);

        // Older than REST keeps, without the archive: refused, nothing published.
        let (refused, refused_topic) =
            load(&sim, m, "api_open_interest_1h", &old, "rest", &[]).await;
        assert_eq!(refused.code, Some(2), "{}", refused.stderr);
        assert!(
            refused.stderr.contains("TIME_RANGE") && refused.stderr.contains("30 days"),
            "{}",
            refused.stderr
        );
        assert!(
            !support::broker::topic_exists(
                &support::broker::Broker::shared().bootstrap(),
                &refused_topic
            ) || payloads(&refused_topic).is_empty()
        );

        for ty in [
            "api_long_short_ratio_15m",
            "api_top_long_short_account_ratio_1h",
            "api_top_long_short_position_ratio_5m",
        ] {
            let range = format!("{}:{}", date(-3), date(0));
            let (run, topic) = load(&sim, m, ty, &range, "auto", &[]).await;
            run.assert_ok();
            let recs = read_records(&topic);
            assert!(!recs.is_empty());
            for r in &recs {
                let (l, s) = (
                    r["long_share"].as_str().unwrap().parse::<f64>().unwrap(),
                    r["short_share"].as_str().unwrap().parse::<f64>().unwrap(),
                );
                assert!((l + s - 1.0).abs() < 1e-3, "{r}");
            }
            verify_ok(&sim, m, &topic, &range, ty);
            let (refused, _) = load(&sim, m, ty, &old, "auto", &[]).await;
            assert_eq!(refused.code, Some(2), "{ty}: {}", refused.stderr);
            assert!(refused.stderr.contains("TIME_RANGE"), "{}", refused.stderr);
        }
    }
    let st = sim.stats();
    assert_eq!((st.responses_429, st.budget_violations), (0, 0), "{st:?}");
    sim.shutdown().await;
}

/// Spot and USDⓈ-M records of the same symbol share a topic without sharing a key, and
/// `verify` checks them as two groups.
#[tokio::test(flavor = "multi_thread")]
async fn spot_and_futures_records_of_one_symbol_never_share_a_key() {
    let sim = sim(SimConfig::default()).await;
    let topic = fresh_topic("mixed-markets");
    let range = "2024-03-01:2024-03-03";
    let spot = job_env(&sim.base_url(), &topic, "BTCUSDT", "api_candles_1h", range);
    run_loader_async(with(spot, &[("SOURCE", "rest")]), vec![])
        .await
        .assert_ok();
    let mut usdm = job_env(&sim.base_url(), &topic, "BTCUSDT", "api_candles_1h", range);
    usdm.extend(USDM.vars(&sim));
    run_loader_async(with(usdm, &[("SOURCE", "rest")]), vec![])
        .await
        .assert_ok();
    let recs = read_records(&topic);
    assert_eq!(recs.len(), 96);
    let mut keys: Vec<&str> = recs.iter().map(|r| r["_key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 96, "keys are unique across markets");
    assert!(keys.contains(&"BTCUSDT_1h_1709251200000"));
    assert!(keys.contains(&"usdm_BTCUSDT_1h_1709251200000"));
    // Different markets, different prices: the futures endpoints were asked.
    assert_ne!(recs[0]["close"], recs[48]["close"]);
    let v = verify_topic(&topic, range, &[], &["--offline"]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    let markets: Vec<&str> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["market"].as_str().unwrap())
        .collect();
    assert_eq!(markets, ["spot", "usdm"]);
    sim.shutdown().await;
}

/// Each futures market has its own weight budget, read from its `exchangeInfo`; squeezed, a
/// load waits for the next window instead of taking a 429, with the request-counted endpoints
/// (charged a unit of weight each besides their own limits) in the same budget. Those own
/// limits are Binance's fixed 500 and 1,000 requests per 5 minutes, which `exchangeInfo` does
/// not publish, so they cannot be squeezed here: the client's pacing of them is unit-tested in
/// `binance::rest`.
#[tokio::test(flavor = "multi_thread")]
async fn futures_weights_and_request_limits_are_honoured_with_no_429() {
    let sim = sim(SimConfig {
        weight_window: Duration::from_secs(2),
        usdm_weight_limit: 120,
        coinm_weight_limit: 120,
        ..SimConfig::default()
    })
    .await;
    for m in [USDM, COINM] {
        // A day of aggregate trades: 9 pages of 20 and the range-end searches, several
        // windows of the default share (60 of 120).
        let day = format!("{}:{}", date(-10), date(-9));
        let (run, topic) = load(&sim, m, "api_trades", &day, "rest", &[]).await;
        run.assert_ok();
        verify_ok(&sim, m, &topic, &day, "api_trades");
        // Request-counted endpoints next to the weighed ones: their unit of weight is counted.
        let (run, _) = load(
            &sim,
            m,
            "api_funding_rate",
            "2019-01-01:2023-01-01",
            "rest",
            &[],
        )
        .await;
        run.assert_ok();
        let range = format!("{}:{}", date(-2), date(0));
        let (run, _) = load(&sim, m, "api_open_interest_5m", &range, "rest", &[]).await;
        run.assert_ok();
    }
    let st = sim.stats();
    for m in ["usdm", "coinm"] {
        let ms = &st.per_market[m];
        assert_eq!(
            (ms.responses_429, ms.responses_418, ms.budget_violations),
            (0, 0, 0),
            "{m}: {ms:?}"
        );
        assert!(ms.max_window_weight <= 120, "{m}: {ms:?}");
        assert!(
            ms.weight_total > 120,
            "{m}: the budget was used past one window"
        );
    }
    sim.shutdown().await;
}

/// A misspelt futures symbol is refused naming SYMBOL and the market, before anything is
/// published; a spot-only TYPE on a futures market is refused naming TYPE and MARKET.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_futures_symbol_or_type_is_a_configuration_error() {
    let sim = sim(SimConfig::default()).await;
    for m in [USDM, COINM] {
        let mut env = job_env(
            &sim.base_url(),
            &fresh_topic("bad"),
            "BTCUSDX",
            "api_candles_1h",
            "2024-01-01:2024-01-02",
        );
        env.extend(m.vars(&sim));
        let run = run_loader_async(env, vec![]).await;
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(
            run.stderr.contains("SYMBOL BTCUSDX") && run.stderr.contains(m.market),
            "{}",
            run.stderr
        );
    }
    sim.shutdown().await;
}

/// Futures `aggTrades` accept no `startTime` alone, and a time window under an hour: when the
/// hour after a range's end has no trade (here three weeks of silence, as after a delisting),
/// hourly klines, which count their trades, say where the next trade is (one request per
/// thousand hours), instead of a binary search over ids of about 30 requests of weight 20.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_trade_after_a_long_silence_is_found_through_klines() {
    let hour = HOUR_MS;
    let end = day_ms(-30) + 12 * hour;
    for m in [USDM, COINM] {
        let market = match m.market {
            "usdm" => exchange_sim::SimMarket::UsdM,
            _ => exchange_sim::SimMarket::CoinM,
        };
        let base = SimConfig {
            agg_trade_spacing_ms: 10_000,
            ..SimConfig::default()
        };
        let first_after = base.data().first_id_at_or_after_in(market, m.symbol, end);
        let cfg = SimConfig {
            faults: exchange_sim::Faults {
                // Three weeks without a trade from the range's end on.
                missing_agg_ids: vec![(first_after, first_after + 21 * 24 * 360)],
                ..exchange_sim::Faults::default()
            },
            ..base
        };
        let data = cfg.data();
        let sim = sim(cfg).await;
        let range = format!("{}:{end}", end - hour);
        // One page at a time, so that no read-ahead page blurs the count.
        let extra = [("FETCH_CONCURRENCY", "1")];
        let (run, topic) = load(&sim, m, "api_trades", &range, "rest", &extra).await;
        run.assert_ok();
        let want: Vec<u64> = data
            .trades_between_in(market, m.symbol, end - hour, end - 1)
            .iter()
            .map(|t| t.id)
            .collect();
        let got: Vec<u64> = read_records(&topic)
            .iter()
            .map(|v| v["trade_id"].as_u64().unwrap())
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "{}", m.market);
        let st = sim.stats();
        let (agg, klines) = (m.requests(&st, "aggTrades"), m.requests(&st, "klines"));
        // The start (one window), the page, the end: one empty window, a page of klines, the
        // hour they point at. A search over ids would add about 30.
        assert!(agg <= 8, "{}: {agg} aggTrades requests", m.market);
        assert!(
            klines >= 1,
            "{}: the next trade was found through klines",
            m.market
        );
        sim.shutdown().await;
    }
}
