//! End-to-end tests of the USD-M (`/usdm`) and COIN-M (`/coinm`) futures markets over real
//! HTTP on loopback: endpoint shapes against the public `data` functions, Binance's futures
//! parameters, paging traps and error codes, per-market weight budgets and request-count
//! limits, per-market statistics, and the futures bulk archive (`/data/futures/{um,cm}/…`)
//! against the REST endpoints.

mod common;

use common::{get_path, pin_mid_day, request, start, Resp};

use std::io::{Cursor, Read};
use std::time::Duration;

use exchange_sim::data::{self, Data};
use exchange_sim::{ArchiveFaults, Interval, SimConfig, SimMarket, SimServer};
use serde_json::Value;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2024-01-01T00:00:00Z.
const JAN_1_2024: i64 = 1_704_067_200_000;
/// 2021-06-01T00:00:00Z: before futures archives had header rows.
const JUN_1_2021: i64 = 1_622_505_600_000;

/// GET `url` (a full `http://…` URL of the server) with an API key, as the loader sends one for
/// futures historicalTrades.
async fn get(server: &SimServer, url: &str) -> Resp {
    let path = url
        .strip_prefix(&server.base_url())
        .unwrap_or_else(|| panic!("{url} is not on {}", server.base_url()));
    request(
        server.local_addr(),
        "GET",
        path,
        &[("X-MBX-APIKEY", "sim-key")],
    )
    .await
}

async fn json(server: &SimServer, url: &str) -> Value {
    let r = get(server, url).await;
    assert_eq!(r.status, 200, "{url}: {}", r.text());
    r.json()
}

fn sparse() -> SimConfig {
    SimConfig {
        agg_trade_spacing_ms: 60_000,
        ..SimConfig::default()
    }
}

fn kline_json(k: &data::Kline) -> Value {
    serde_json::json!([
        k.open_time,
        k.open,
        k.high,
        k.low,
        k.close,
        k.volume,
        k.close_time,
        k.quote_volume,
        k.trades,
        k.taker_buy_base,
        k.taker_buy_quote,
        "0"
    ])
}

#[tokio::test]
async fn urls_ping_time_and_exchange_info() {
    let server = start(SimConfig {
        usdm_weight_limit: 1111,
        ..SimConfig::default()
    })
    .await;
    // Every hour and day boundary is far: "now" means one thing throughout.
    pin_mid_day(&server);
    let base = server.base_url();
    assert_eq!(server.fapi_url(), format!("{base}/usdm"));
    assert_eq!(server.dapi_url(), format!("{base}/coinm"));
    assert_eq!(server.fws_url(), format!("{}/usdm", server.ws_url()));
    assert_eq!(server.dws_url(), format!("{}/coinm", server.ws_url()));
    let fapi = server.fapi_url();
    let dapi = server.dapi_url();

    let r = get(&server, &format!("{fapi}/fapi/v1/ping")).await;
    assert_eq!((r.status, r.text(), r.used()), (200, "{}", 1));
    let r = get(&server, &format!("{fapi}/fapi/v1/time")).await;
    assert!((r.json()["serverTime"].as_i64().unwrap() - server.clock().now_ms()).abs() < 5_000);
    assert_eq!(r.used(), 2);
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/exchangeInfo?symbol=ETHBTC"),
    )
    .await;
    assert_eq!((r.status, r.used()), (200, 3), "takes no parameters");
    let v = r.json();
    assert_eq!(
        v["rateLimits"],
        serde_json::json!([
            {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":1111},
            {"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200},
            {"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":300}
        ])
    );
    let symbols = v["symbols"].as_array().unwrap();
    let names: Vec<&str> = symbols
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"BTCUSDT") && names.contains(&"ETHUSDT"));
    assert!(!names.contains(&"ETHBTC"));
    assert!(symbols.iter().all(|s| s["status"] == "TRADING"));

    // COIN-M: its own budget, its own weight counter.
    let r = get(&server, &format!("{dapi}/dapi/v1/exchangeInfo")).await;
    assert_eq!(r.used(), 1);
    let v = r.json();
    assert_eq!(v["rateLimits"][0]["limit"], 2400);
    let btc = v["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["symbol"] == "BTCUSD_PERP")
        .unwrap()
        .clone();
    assert_eq!(btc["pair"], "BTCUSD");
    assert_eq!(btc["contractType"], "PERPETUAL");
    assert_eq!(btc["contractStatus"], "TRADING");
    assert_eq!(btc["contractSize"], 100);
    for s in ["ETHUSD_PERP", "BNBUSD_PERP"] {
        let e = v["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["symbol"] == s)
            .unwrap_or_else(|| panic!("{s} listed"));
        assert_eq!(e["contractSize"], 10);
    }
    // Spot is untouched by futures traffic.
    let r = get(&server, &format!("{base}/api/v3/ping")).await;
    assert_eq!(r.used(), 1);
    // The wrong API family under a prefix is an unknown path.
    let r = get(&server, &format!("{fapi}/dapi/v1/ping")).await;
    assert_eq!((r.status, r.code()), (404, -5000));

    let stats = server.stats();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.per_endpoint["/usdm/fapi/v1/exchangeInfo"], 1);
    assert_eq!(stats.per_endpoint["/coinm/dapi/v1/exchangeInfo"], 1);
    assert_eq!(stats.per_endpoint["/api/v3/ping"], 1);
    assert_eq!(stats.per_endpoint["other"], 1);
    assert_eq!(stats.per_market["usdm"].requests, 4);
    assert_eq!(stats.per_market["usdm"].weight_total, 3);
    assert_eq!(stats.per_market["coinm"].requests, 1);
    assert_eq!(stats.per_market["spot"].weight_total, 1);
    assert_eq!(stats.weight_total, 5);
    server.shutdown().await;
}

#[tokio::test]
async fn klines_of_every_series_and_their_rules() {
    let server = start(SimConfig::default()).await;
    let fapi = server.fapi_url();
    let dapi = server.dapi_url();
    let t0 = JAN_1_2024;
    let url = format!("{fapi}/fapi/v1/klines?symbol=BTCUSDT&interval=1h&startTime={t0}&limit=3");
    let r = get(&server, &url).await;
    assert_eq!(r.used(), 1, "limit < 100 weighs 1");
    let rows = r.json();
    let expect: Vec<Value> = (0..3)
        .map(|i| {
            kline_json(&data::kline_in(
                &server.data(),
                SimMarket::UsdM,
                "BTCUSDT",
                Interval::H1,
                t0 + i * HOUR,
            ))
        })
        .collect();
    assert_eq!(rows, Value::Array(expect));
    assert_ne!(
        rows[0],
        kline_json(&data::kline(&server.data(), "BTCUSDT", Interval::H1, t0)),
        "USD-M data differs from spot's"
    );
    // Weights by limit.
    for (limit, weight) in [("100", 2), ("499", 2), ("", 5), ("1000", 5), ("1500", 10)] {
        let before = get(&server, &format!("{fapi}/fapi/v1/ping")).await.used();
        let lim = if limit.is_empty() {
            String::new()
        } else {
            format!("&limit={limit}")
        };
        let r = get(
            &server,
            &format!("{fapi}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime={t0}{lim}"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.used() - before, weight, "limit {limit}");
        let n = r.json().as_array().unwrap().len();
        assert_eq!(n, limit.parse().unwrap_or(500));
    }
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1501"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1130));
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/klines?symbol=BTCUSDT&interval=1s"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1120));
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/klines?symbol=ETHBTC&interval=1m"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), r#"{"code":-1121,"msg":"Invalid symbol."}"#);
    let r = get(
        &server,
        &format!("{dapi}/dapi/v1/klines?symbol=BTCUSDT&interval=1m"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1121));

    // Mark, index (by pair) and premium index candles.
    for (path, param, f) in [
        (
            "markPriceKlines",
            "symbol=ETHUSDT",
            data::mark_price_kline as fn(SimMarket, &str, Interval, i64) -> data::Kline,
        ),
        ("indexPriceKlines", "pair=ETHUSDT", data::index_price_kline),
        (
            "premiumIndexKlines",
            "symbol=ETHUSDT",
            data::premium_index_kline,
        ),
    ] {
        let v = json(
            &server,
            &format!("{fapi}/fapi/v1/{path}?{param}&interval=15m&startTime={t0}&limit=2"),
        )
        .await;
        let k = f(SimMarket::UsdM, "ETHUSDT", Interval::M15, t0);
        assert_eq!(
            v[0],
            serde_json::json!([
                t0,
                k.open,
                k.high,
                k.low,
                k.close,
                "0",
                t0 + 15 * MIN - 1,
                "0",
                0,
                "0",
                "0",
                "0"
            ]),
            "{path}"
        );
        assert_eq!(v[1][0], t0 + 15 * MIN);
    }
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/indexPriceKlines?symbol=ETHUSDT&interval=1m"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1102));
    let v = json(
        &server,
        &format!("{dapi}/dapi/v1/indexPriceKlines?pair=BTCUSD&interval=1d&startTime={t0}&limit=1"),
    )
    .await;
    let k = data::index_price_kline(SimMarket::CoinM, "BTCUSD", Interval::D1, t0);
    assert_eq!(v[0][4], Value::String(k.close));
    let premium: f64 = v[0][1].as_str().unwrap().parse().unwrap();
    assert!(premium > 1_000.0, "index prices are prices");
    let v = json(
        &server,
        &format!(
            "{fapi}/fapi/v1/premiumIndexKlines?symbol=BTCUSDT&interval=1h&startTime={t0}&limit=1"
        ),
    )
    .await;
    let p: f64 = v[0][4].as_str().unwrap().parse().unwrap();
    assert!(p.abs() < 0.01, "premium index is a small ratio: {p}");
    server.shutdown().await;
}

#[tokio::test]
async fn coinm_klines_page_backwards_from_end_time() {
    let server = start(SimConfig::default()).await;
    let dapi = server.dapi_url();
    let fapi = server.fapi_url();
    let (start, end) = (JAN_1_2024, JAN_1_2024 + 10 * HOUR - 1);
    // COIN-M with both bounds: the newest `limit` candles ending at endTime.
    let v = json(
        &server,
        &format!("{dapi}/dapi/v1/klines?symbol=BTCUSD_PERP&interval=1h&startTime={start}&endTime={end}&limit=3"),
    )
    .await;
    let opens: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k[0].as_i64().unwrap())
        .collect();
    assert_eq!(
        opens,
        vec![start + 7 * HOUR, start + 8 * HOUR, start + 9 * HOUR]
    );
    let k = data::kline_in(
        &server.data(),
        SimMarket::CoinM,
        "BTCUSD_PERP",
        Interval::H1,
        start + 9 * HOUR,
    );
    assert_eq!(v[2], kline_json(&k));
    // Volumes in whole contracts, column 7 in BTC.
    let contracts: f64 = k.volume.parse().unwrap();
    assert_eq!(contracts.fract(), 0.0);
    let base: f64 = k.quote_volume.parse().unwrap();
    let close: f64 = k.close.parse().unwrap();
    assert!(
        (base / (contracts * 100.0 / close) - 1.0).abs() < 0.01,
        "{k:?}"
    );
    // USD-M with both bounds: the oldest from startTime, like spot.
    let v = json(
        &server,
        &format!("{fapi}/fapi/v1/klines?symbol=BTCUSDT&interval=1h&startTime={start}&endTime={end}&limit=3"),
    )
    .await;
    assert_eq!(v[0][0], start);
    // More than 200 days apart.
    let r = get(
        &server,
        &format!(
            "{dapi}/dapi/v1/klines?symbol=BTCUSD_PERP&interval=1d&startTime={start}&endTime={}",
            start + 201 * DAY
        ),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1127));
    assert!(r.json()["msg"].as_str().unwrap().contains("200 days"));
    server.shutdown().await;
}

#[tokio::test]
async fn trades_and_depth() {
    // Trades of 2024 over REST: older than Binance's year, served here to test the rows.
    let server = start(SimConfig {
        futures_agg_trades_horizon: None,
        ..SimConfig::default()
    })
    .await;
    let fapi = server.fapi_url();
    let dapi = server.dapi_url();
    let d = server.data();
    let t = JAN_1_2024;
    let r = get(
        &server,
        &format!(
            "{fapi}/fapi/v1/aggTrades?symbol=BTCUSDT&startTime={t}&endTime={}&limit=5",
            t + MIN
        ),
    )
    .await;
    assert_eq!(r.used(), 20);
    let rows = r.json();
    let expect = d.trades_between_in(SimMarket::UsdM, "BTCUSDT", t, t + MIN);
    for (row, a) in rows.as_array().unwrap().iter().zip(&expect) {
        assert_eq!(
            *row,
            serde_json::json!({"a":a.id,"p":a.price,"q":a.qty,"f":a.first_trade_id,
                               "l":a.last_trade_id,"T":a.time,"m":a.is_buyer_maker})
        );
    }
    assert_ne!(
        rows[0]["p"].as_str(),
        d.trade("BTCUSDT", rows[0]["a"].as_u64().unwrap())
            .map(|a| a.price)
            .as_deref()
    );
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=5&startTime={t}"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        r#"{"code":-1128,"msg":"Combination of optional parameters invalid."}"#
    );
    let r = get(
        &server,
        &format!(
            "{fapi}/fapi/v1/aggTrades?symbol=BTCUSDT&startTime={t}&endTime={}",
            t + HOUR
        ),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1127));

    // COIN-M quantities are contracts; historical trades carry baseQty.
    let agg = json(
        &server,
        &format!("{dapi}/dapi/v1/aggTrades?symbol=ETHUSD_PERP&startTime={t}&limit=3"),
    )
    .await;
    let q: f64 = agg[0]["q"].as_str().unwrap().parse().unwrap();
    assert!(q >= 3.0 && q.fract() == 0.0, "{q}");
    let first = agg[0]["f"].as_u64().unwrap();
    let r = get(
        &server,
        &format!("{dapi}/dapi/v1/historicalTrades?symbol=ETHUSD_PERP&fromId={first}&limit=2"),
    )
    .await;
    assert_eq!(r.used(), 40, "20 each, COIN-M's own counter");
    let trades = r.json();
    let tr = d
        .raw_trade_in(SimMarket::CoinM, "ETHUSD_PERP", first)
        .unwrap();
    assert_eq!(
        trades[0],
        serde_json::json!({"id":first,"price":tr.price,"qty":tr.qty,"baseQty":tr.quote_qty,
                           "time":tr.time,"isBuyerMaker":tr.is_buyer_maker})
    );
    assert_eq!(trades[0]["time"], agg[0]["T"]);
    let v = json(
        &server,
        &format!("{fapi}/fapi/v1/historicalTrades?symbol=ETHUSDT"),
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 100);
    assert!(v[0].get("quoteQty").is_some() && v[0].get("isBestMatch").is_none());
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/historicalTrades?symbol=ETHUSDT&limit=501"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1130));
    // MARKET_DATA: without a key, 401 on both futures markets; spot needs none.
    for url in [
        "/usdm/fapi/v1/historicalTrades?symbol=ETHUSDT".to_string(),
        format!("/coinm/dapi/v1/historicalTrades?symbol=ETHUSD_PERP&fromId={first}"),
    ] {
        let r = get_path(server.local_addr(), &url).await;
        assert_eq!((r.status, r.code()), (401, -2014), "{url}: {}", r.text());
    }
    let r = get_path(
        server.local_addr(),
        "/api/v3/historicalTrades?symbol=BTCUSDT&limit=1",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // depth: Binance's futures limits and weights, E and T, futures update ids.
    for (limit, weight) in [("5", 2), ("50", 2), ("100", 5), ("", 10), ("1000", 20)] {
        let before = get(&server, &format!("{fapi}/fapi/v1/ping")).await.used();
        let lim = if limit.is_empty() {
            String::new()
        } else {
            format!("&limit={limit}")
        };
        let r = get(
            &server,
            &format!("{fapi}/fapi/v1/depth?symbol=BTCUSDT{lim}"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.used() - before, weight, "depth limit {limit}");
        let v = r.json();
        let book = data::order_book_in(SimMarket::UsdM, "BTCUSDT", v["E"].as_i64().unwrap());
        assert_eq!(v["lastUpdateId"], book.last_update_id);
        assert_eq!(v["T"], v["E"]);
        let n: usize = limit.parse().unwrap_or(500).min(data::BOOK_LEVELS);
        assert_eq!(v["bids"].as_array().unwrap().len(), n);
        assert_eq!(v["asks"][0][0].as_str(), Some(book.asks[0].0.as_str()));
    }
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/depth?symbol=BTCUSDT&limit=7"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1100));
    server.shutdown().await;
}

#[tokio::test]
async fn funding_rates_page_with_jittered_times() {
    let server = start(SimConfig::default()).await;
    // Every hour and day boundary is far: "now" means one thing throughout.
    pin_mid_day(&server);
    let fapi = server.fapi_url();
    let dapi = server.dapi_url();
    // Past the jitter of the funding at JAN_1_2024.
    let t = JAN_1_2024 + 10;
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/fundingRate?symbol=BTCUSDT&startTime={t}&limit=4"),
    )
    .await;
    assert_eq!(r.used(), 0, "fundingRate weighs nothing");
    let v = r.json();
    let expect = data::funding_rates(SimMarket::UsdM, "BTCUSDT", t, t + 2 * DAY);
    assert_eq!(v.as_array().unwrap().len(), 4);
    for (row, f) in v.as_array().unwrap().iter().zip(&expect) {
        assert_eq!(
            *row,
            serde_json::json!({"symbol":"BTCUSDT","fundingTime":f.funding_time,
                               "fundingRate":f.funding_rate,"markPrice":f.mark_price})
        );
        let off = f.funding_time % (8 * HOUR);
        assert!((0..10).contains(&off));
    }
    assert_eq!(
        expect[0].funding_time / (8 * HOUR),
        (JAN_1_2024 + 8 * HOUR) / (8 * HOUR)
    );
    // The rate of a period is the one the markPrice stream shows during it.
    assert_eq!(
        data::funding_rate(SimMarket::UsdM, "BTCUSDT", t + HOUR),
        expect[0]
    );
    // endTime: nothing past it; no startTime: the newest ones.
    let end = expect[1].funding_time;
    let v = json(
        &server,
        &format!("{fapi}/fapi/v1/fundingRate?symbol=BTCUSDT&startTime={t}&endTime={end}"),
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let v = json(
        &server,
        &format!("{fapi}/fapi/v1/fundingRate?symbol=BTCUSDT"),
    )
    .await;
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 100);
    let last = rows[99]["fundingTime"].as_i64().unwrap();
    assert!(last <= server.clock().now_ms() && server.clock().now_ms() - last < 8 * HOUR + 1000);
    // COIN-M rows have no mark price.
    let v = json(
        &server,
        &format!("{dapi}/dapi/v1/fundingRate?symbol=BTCUSD_PERP&startTime={t}&limit=1"),
    )
    .await;
    let f = &data::funding_rates(SimMarket::CoinM, "BTCUSD_PERP", t, t + DAY)[0];
    assert_eq!(
        v[0],
        serde_json::json!({"symbol":"BTCUSD_PERP","fundingTime":f.funding_time,"fundingRate":f.funding_rate})
    );
    // Both bounds around more rows than the limit: USDⓈ-M answers the oldest, COIN-M (which
    // documents no order) the newest.
    let day_end = t + DAY - 1;
    let day = data::funding_rates(SimMarket::CoinM, "BTCUSD_PERP", t, day_end);
    let v = json(
        &server,
        &format!(
            "{dapi}/dapi/v1/fundingRate?symbol=BTCUSD_PERP&startTime={t}&endTime={day_end}&limit=2"
        ),
    )
    .await;
    let times: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fundingTime"].as_i64().unwrap())
        .collect();
    let newest: Vec<i64> = day[day.len() - 2..]
        .iter()
        .map(|f| f.funding_time)
        .collect();
    assert_eq!(times, newest);
    let v = json(
        &server,
        &format!(
            "{fapi}/fapi/v1/fundingRate?symbol=BTCUSDT&startTime={t}&endTime={day_end}&limit=2"
        ),
    )
    .await;
    assert_eq!(v[0]["fundingTime"], expect[0].funding_time);
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1001"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1130));
    server.shutdown().await;
}

#[tokio::test]
async fn open_interest_and_ratios_keep_thirty_days() {
    let server = start(SimConfig::default()).await;
    // Every hour and day boundary is far: "now" means one thing throughout.
    pin_mid_day(&server);
    let fapi = server.fapi_url();
    let dapi = server.dapi_url();
    let now = server.clock().now_ms();
    let end = now - 2 * HOUR;
    let start = now - 5 * DAY;
    let v = json(
        &server,
        &format!("{fapi}/futures/data/openInterestHist?symbol=BTCUSDT&period=5m&startTime={start}&endTime={end}&limit=3"),
    )
    .await;
    let last = Interval::M5.align_down(end);
    let times: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(
        times,
        vec![last - 10 * MIN, last - 5 * MIN, last],
        "newest ending at endTime"
    );
    let oi = data::open_interest(SimMarket::UsdM, "BTCUSDT", last);
    assert_eq!(
        v[2],
        serde_json::json!({"symbol":"BTCUSDT","sumOpenInterest":oi.sum_open_interest,
                           "sumOpenInterestValue":oi.sum_open_interest_value,"timestamp":last})
    );
    // Default limit 30, ending now; coarser periods sample the same series.
    let v = json(
        &server,
        &format!("{fapi}/futures/data/openInterestHist?symbol=BTCUSDT&period=1h"),
    )
    .await;
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 30);
    let t = rows[29]["timestamp"].as_i64().unwrap();
    assert_eq!(t, Interval::H1.align_down(server.clock().now_ms()).max(t));
    assert_eq!(
        rows[29]["sumOpenInterest"].as_str().unwrap(),
        data::open_interest(SimMarket::UsdM, "BTCUSDT", t).sum_open_interest
    );
    // Older than 30 days.
    let r = get(
        &server,
        &format!(
            "{fapi}/futures/data/openInterestHist?symbol=BTCUSDT&period=5m&startTime={}",
            now - 31 * DAY
        ),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        r#"{"code":-1130,"msg":"Data sent for parameter 'startTime' is not valid."}"#
    );
    let r = get(
        &server,
        &format!("{fapi}/futures/data/openInterestHist?symbol=BTCUSDT&period=3m"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1130));
    let r = get(
        &server,
        &format!("{fapi}/futures/data/openInterestHist?symbol=BTCUSDT&period=5m&limit=501"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1130));

    // COIN-M by pair and contract type.
    let v = json(
        &server,
        &format!("{dapi}/futures/data/openInterestHist?pair=BTCUSD&contractType=ALL&period=15m&limit=2&endTime={end}"),
    )
    .await;
    let t = v[1]["timestamp"].as_i64().unwrap();
    assert_eq!(t, Interval::M15.align_down(end));
    let oi = data::open_interest(SimMarket::CoinM, "BTCUSD", t);
    assert_eq!(
        v[1],
        serde_json::json!({"pair":"BTCUSD","contractType":"PERPETUAL","sumOpenInterest":oi.sum_open_interest,
                           "sumOpenInterestValue":oi.sum_open_interest_value,"timestamp":t})
    );
    let v = json(
        &server,
        &format!("{dapi}/futures/data/openInterestHist?pair=BTCUSD&contractType=CURRENT_QUARTER&period=15m"),
    )
    .await;
    assert_eq!(v, serde_json::json!([]));
    let r = get(
        &server,
        &format!("{dapi}/futures/data/openInterestHist?pair=BTCUSD&period=15m"),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1102));

    // Long/short ratios.
    for (market, base, param, path, long, short) in [
        (
            SimMarket::UsdM,
            &fapi,
            "symbol=ETHUSDT",
            "globalLongShortAccountRatio",
            "longAccount",
            "shortAccount",
        ),
        (
            SimMarket::UsdM,
            &fapi,
            "symbol=ETHUSDT",
            "topLongShortPositionRatio",
            "longAccount",
            "shortAccount",
        ),
        (
            SimMarket::CoinM,
            &dapi,
            "pair=ETHUSD",
            "topLongShortAccountRatio",
            "longAccount",
            "shortAccount",
        ),
        (
            SimMarket::CoinM,
            &dapi,
            "pair=ETHUSD",
            "topLongShortPositionRatio",
            "longPosition",
            "shortPosition",
        ),
    ] {
        let v = json(
            &server,
            &format!("{base}/futures/data/{path}?{param}&period=1d&limit=3"),
        )
        .await;
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 3, "{path}");
        let row = &rows[2];
        let t = row["timestamp"].as_i64().unwrap();
        assert_eq!(t, Interval::D1.align_down(server.clock().now_ms()));
        let r = data::long_short_ratios(
            market,
            if market == SimMarket::UsdM {
                "ETHUSDT"
            } else {
                "ETHUSD"
            },
            t,
        );
        let ratio = match path {
            "globalLongShortAccountRatio" => r.global_account,
            "topLongShortAccountRatio" => r.top_account,
            _ => r.top_position,
        };
        let key = if market == SimMarket::UsdM {
            "symbol"
        } else {
            "pair"
        };
        let (name, _) = param.split_once('=').map(|(_, v)| (v, ())).unwrap();
        assert_eq!(
            *row,
            serde_json::json!({key: name, "longShortRatio": ratio.long_short_ratio,
                               long: ratio.long, short: ratio.short, "timestamp": t}),
            "{path}"
        );
    }
    assert!(server.stats().per_market["coinm"].weight_total == 0);
    server.shutdown().await;
}

#[tokio::test]
async fn each_futures_market_has_its_own_budget_and_count_limits() {
    let cfg = SimConfig {
        usdm_weight_limit: 25,
        strikes_before_ban: 1,
        ban_duration: Duration::from_secs(600),
        funding_rate_limit: 2,
        funding_rate_window: Duration::from_secs(600),
        futures_data_limit: 3,
        futures_data_window: Duration::from_secs(600),
        ..SimConfig::default()
    };
    let server = start(cfg).await;
    let fapi = server.fapi_url();
    let dapi = server.dapi_url();
    let base = server.base_url();
    // Count limits first (weight 0): fundingRate 2 per window per market.
    for _ in 0..2 {
        let r = get(
            &server,
            &format!("{fapi}/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1"),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = get(
        &server,
        &format!("{fapi}/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1"),
    )
    .await;
    assert_eq!((r.status, r.code()), (429, -1003));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    // The other market's counter is its own.
    let r = get(
        &server,
        &format!("{dapi}/dapi/v1/fundingRate?symbol=BTCUSD_PERP&limit=1"),
    )
    .await;
    assert_eq!(r.status, 200);
    for i in 0..4 {
        let r = get(
            &server,
            &format!(
                "{fapi}/futures/data/topLongShortAccountRatio?symbol=BTCUSDT&period=5m&limit=1"
            ),
        )
        .await;
        assert_eq!(
            r.status,
            if i < 3 { 200 } else { 429 },
            "futures data request {i}"
        );
    }
    // USD-M weight: 25 a minute; aggTrades weighs 20.
    let agg = format!("{fapi}/fapi/v1/aggTrades?symbol=BTCUSDT&limit=1");
    assert_eq!(get(&server, &agg).await.status, 200);
    let r = get(&server, &agg).await;
    assert_eq!((r.status, r.code()), (429, -1003));
    assert!(r.json()["msg"]
        .as_str()
        .unwrap()
        .contains("25 request weight"));
    assert!(r.header("retry-after").is_some());
    // Spot and COIN-M keep serving.
    assert_eq!(
        get(
            &server,
            &format!("{base}/api/v3/aggTrades?symbol=BTCUSDT&limit=1")
        )
        .await
        .status,
        200
    );
    assert_eq!(
        get(
            &server,
            &format!("{dapi}/dapi/v1/aggTrades?symbol=BTCUSD_PERP&limit=1")
        )
        .await
        .status,
        200
    );
    // One strike, then the ban: 418, also for count-limited endpoints.
    assert_eq!(get(&server, &agg).await.status, 429);
    let r = get(&server, &agg).await;
    assert_eq!(r.status, 418);
    let r = get(
        &server,
        &format!("{fapi}/futures/data/openInterestHist?symbol=BTCUSDT&period=5m"),
    )
    .await;
    assert_eq!(r.status, 418);
    assert_eq!(
        get(&server, &format!("{dapi}/dapi/v1/ping")).await.status,
        200
    );

    let stats = server.stats();
    let usdm = &stats.per_market["usdm"];
    assert_eq!(usdm.responses_429, 4);
    assert_eq!(usdm.responses_418, 2);
    assert_eq!(usdm.budget_violations, 6);
    assert_eq!(usdm.max_window_weight, 20);
    assert_eq!(stats.per_market["coinm"].responses_429, 0);
    assert_eq!(stats.per_market["spot"].budget_violations, 0);
    assert_eq!(stats.budget_violations, 6);
    assert_eq!(stats.per_endpoint["/usdm/fapi/v1/fundingRate"], 3);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Archive

fn csv_of(zip_bytes: &[u8], stem: &str) -> String {
    let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes)).expect("a zip");
    let mut f = zip.by_name(&format!("{stem}.csv")).expect("the csv");
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

async fn fetch_csv(server: &SimServer, path: &str) -> String {
    let r = get_path(server.local_addr(), path).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let stem = path.rsplit('/').next().unwrap().trim_end_matches(".zip");
    csv_of(&r.body, stem)
}

/// A JSON value as it appears in a futures CSV cell.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rows_as_lines(v: &Value, keys: Option<&[&str]>) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| match keys {
            None => row
                .as_array()
                .unwrap()
                .iter()
                .map(cell)
                .collect::<Vec<_>>()
                .join(","),
            Some(keys) => keys
                .iter()
                .map(|k| cell(&row[*k]))
                .collect::<Vec<_>>()
                .join(","),
        })
        .collect()
}

#[tokio::test]
async fn futures_archive_matches_rest() {
    let server = start(sparse()).await;
    // Every hour and day boundary is far: "now" means one thing throughout.
    pin_mid_day(&server);
    let fapi = server.fapi_url();
    let dapi = server.dapi_url();
    let day = JAN_1_2024;
    // USD-M klines, with a header row (2022 and later).
    let csv = fetch_csv(
        &server,
        "/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip",
    )
    .await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore")
    );
    let rest = json(
        &server,
        &format!("{fapi}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime={day}&limit=1440"),
    )
    .await;
    assert_eq!(lines.collect::<Vec<_>>(), rows_as_lines(&rest, None));
    // Older files have no header; times stay in ms.
    let csv = fetch_csv(
        &server,
        "/data/futures/um/daily/klines/ETHUSDT/1h/ETHUSDT-1h-2021-06-01.zip",
    )
    .await;
    let rest = json(
        &server,
        &format!(
            "{fapi}/fapi/v1/klines?symbol=ETHUSDT&interval=1h&startTime={JUN_1_2021}&limit=24"
        ),
    )
    .await;
    assert_eq!(csv.lines().collect::<Vec<_>>(), rows_as_lines(&rest, None));
    // Mark prices (monthly) and COIN-M index by pair.
    let csv = fetch_csv(
        &server,
        "/data/futures/um/monthly/markPriceKlines/BTCUSDT/1d/BTCUSDT-1d-2024-01.zip",
    )
    .await;
    let rest = json(
        &server,
        &format!(
            "{fapi}/fapi/v1/markPriceKlines?symbol=BTCUSDT&interval=1d&startTime={day}&limit=31"
        ),
    )
    .await;
    assert_eq!(
        csv.lines().skip(1).collect::<Vec<_>>(),
        rows_as_lines(&rest, None)
    );
    let csv = fetch_csv(
        &server,
        "/data/futures/cm/daily/indexPriceKlines/BTCUSD/1h/BTCUSD-1h-2024-01-01.zip",
    )
    .await;
    let rest = json(
        &server,
        &format!(
            "{dapi}/dapi/v1/indexPriceKlines?pair=BTCUSD&interval=1h&startTime={day}&limit=24"
        ),
    )
    .await;
    assert_eq!(
        csv.lines().skip(1).collect::<Vec<_>>(),
        rows_as_lines(&rest, None)
    );
    let csv = fetch_csv(
        &server,
        "/data/futures/cm/daily/klines/BTCUSD_PERP/1h/BTCUSD_PERP-1h-2024-01-01.zip",
    )
    .await;
    assert!(csv.starts_with("open_time,open,high,low,close,volume,close_time,base_volume,count,taker_buy_volume,taker_buy_base_volume,ignore\n"));

    // aggTrades: 7 columns, lower-case booleans; trades: COIN-M base_qty.
    let csv = fetch_csv(
        &server,
        "/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip",
    )
    .await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
        )
    );
    let rest = json(
        &server,
        &format!(
            "{fapi}/fapi/v1/aggTrades?symbol=BTCUSDT&startTime={day}&endTime={}&limit=1000",
            day + HOUR - 1
        ),
    )
    .await;
    let expect = rows_as_lines(&rest, Some(&["a", "p", "q", "f", "l", "T", "m"]));
    let got: Vec<&str> = lines.take(expect.len()).collect();
    assert_eq!(got, expect);
    assert!(got
        .iter()
        .all(|l| l.ends_with(",true") || l.ends_with(",false")));
    let csv = fetch_csv(
        &server,
        "/data/futures/cm/daily/trades/ETHUSD_PERP/ETHUSD_PERP-trades-2024-01-01.zip",
    )
    .await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,price,qty,base_qty,time,is_buyer_maker")
    );
    let first = lines.next().unwrap();
    let id = first.split(',').next().unwrap();
    let rest = json(
        &server,
        &format!("{dapi}/dapi/v1/historicalTrades?symbol=ETHUSD_PERP&fromId={id}&limit=1"),
    )
    .await;
    assert_eq!(
        vec![first.to_string()],
        rows_as_lines(
            &rest,
            Some(&["id", "price", "qty", "baseQty", "time", "isBuyerMaker"])
        )
    );

    // metrics: one row per 5 minutes with a header, the REST series' values.
    let (y, m, d) = {
        let day_start = Interval::D1.align_down(server.clock().now_ms()) - 2 * DAY;
        let v = json(&server, &format!("{fapi}/futures/data/openInterestHist?symbol=BTCUSDT&period=5m&startTime={day_start}&endTime={}&limit=500", day_start + DAY - 1)).await;
        let rows = v.as_array().unwrap().clone();
        assert_eq!(rows.len(), 288);
        let date = chrono_date(day_start);
        let csv = fetch_csv(
            &server,
            &format!("/data/futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-{date}.zip"),
        )
        .await;
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio")
        );
        let lines: Vec<&str> = lines.collect();
        assert_eq!(lines.len(), 288);
        assert!(lines[1].starts_with(&format!("{date} 00:05:00,BTCUSDT,")));
        let top = json(&server, &format!("{fapi}/futures/data/topLongShortAccountRatio?symbol=BTCUSDT&period=5m&startTime={day_start}&limit=500")).await;
        for (i, line) in lines.iter().enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells[2], rows[i]["sumOpenInterest"].as_str().unwrap());
            assert_eq!(cells[3], rows[i]["sumOpenInterestValue"].as_str().unwrap());
            assert_eq!(cells[4], top[i]["longShortRatio"].as_str().unwrap());
        }
        let t = rows[7]["timestamp"].as_i64().unwrap();
        let r = data::long_short_ratios(SimMarket::UsdM, "BTCUSDT", t);
        let cells: Vec<&str> = lines[7].split(',').collect();
        assert_eq!(
            cells[4..],
            [
                r.top_account.long_short_ratio.as_str(),
                r.top_position.long_short_ratio.as_str(),
                r.global_account.long_short_ratio.as_str(),
                r.taker_buy_sell.as_str()
            ]
        );
        (
            date[..4].to_string(),
            date[5..7].to_string(),
            date[8..].to_string(),
        )
    };
    // COIN-M metrics are per symbol, with the pair's REST values.
    let csv = fetch_csv(
        &server,
        &format!("/data/futures/cm/daily/metrics/BTCUSD_PERP/BTCUSD_PERP-metrics-{y}-{m}-{d}.zip"),
    )
    .await;
    assert_eq!(csv.lines().count(), 289);
    let v = json(&server, &format!("{dapi}/futures/data/openInterestHist?pair=BTCUSD&contractType=PERPETUAL&period=5m&limit=1&endTime={}", Interval::D1.align_down(server.clock().now_ms()) - 2 * DAY)).await;
    let second = csv.lines().nth(1).unwrap();
    assert!(
        second.contains(&format!(
            ",BTCUSD_PERP,{},",
            v[0]["sumOpenInterest"].as_str().unwrap()
        )),
        "{second}"
    );
    server.shutdown().await;
}

/// `YYYY-MM-DD` of a time in ms.
fn chrono_date(t: i64) -> String {
    let (y, m, d) = exchange_sim_civil(t.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since the epoch to a civil date (Howard Hinnant's algorithm).
fn exchange_sim_civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[tokio::test]
async fn futures_archive_faults_and_names() {
    let server = start(sparse()).await;
    let um = "/data/futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01-02.zip";
    let mark = "/data/futures/um/daily/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01-02.zip";
    let clean = get_path(server.local_addr(), um).await.body;
    // A fault named by the whole key hits that file only.
    server.set_archive_faults(ArchiveFaults {
        corrupt: vec![(um[1..].to_string(), 1)],
        missing_days: vec!["2024-01-03".into()],
        ..ArchiveFaults::default()
    });
    let bad = get_path(server.local_addr(), um).await.body;
    assert_eq!(bad.len(), clean.len());
    assert_ne!(bad, clean);
    assert_eq!(get_path(server.local_addr(), um).await.body, clean);
    assert_eq!(get_path(server.local_addr(), mark).await.status, 200);
    let r = get_path(
        server.local_addr(),
        "/data/futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2024-01-03.zip",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get_path(server.local_addr(), &format!("{um}.CHECKSUM")).await;
    assert!(r.text().ends_with("  BTCUSDT-1h-2024-01-02.zip\n"));
    let stats = server.stats();
    assert_eq!(stats.archive_downloads[&um[1..]], 3);
    assert_eq!(stats.archive_downloads[&mark[1..]], 1);
    assert_eq!(stats.requests, 0, "archive requests are not REST requests");
    // Data stays consistent with the settings the server serves.
    let d: Data = server.data();
    assert!(d.trade_in(SimMarket::UsdM, "BTCUSDT", 0).is_some());
    server.shutdown().await;
}

/// With Binance's one-year horizon set, futures `aggTrades` answer nothing older than a year
/// before the simulator's clock, by time or by id, and the same as before for recent trades;
/// spot is not limited.
#[tokio::test]
async fn futures_aggregate_trades_older_than_the_horizon_are_not_served() {
    let server = start(SimConfig {
        futures_agg_trades_horizon: Some(Duration::from_secs(365 * 86_400)),
        ..SimConfig::default()
    })
    .await;
    // Every hour and day boundary is far: "now" means one thing throughout.
    pin_mid_day(&server);
    let (fapi, dapi, base) = (server.fapi_url(), server.dapi_url(), server.base_url());
    let d = server.data();
    let old = server.clock().now_ms() - 366 * DAY;
    let recent = server.clock().now_ms() - 300 * DAY;
    for (url, symbol, market) in [
        (&fapi, "BTCUSDT", SimMarket::UsdM),
        (&dapi, "BTCUSD_PERP", SimMarket::CoinM),
    ] {
        let path = if market == SimMarket::UsdM {
            "fapi/v1/aggTrades"
        } else {
            "dapi/v1/aggTrades"
        };
        let by_time = |t: i64| format!("{url}/{path}?symbol={symbol}&startTime={t}&limit=2");
        assert_eq!(json(&server, &by_time(old)).await, serde_json::json!([]));
        let rows = json(&server, &by_time(recent)).await;
        assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
        let by_id = |id: u64| format!("{url}/{path}?symbol={symbol}&fromId={id}&limit=2");
        let old_id = d.first_id_at_or_after_in(market, symbol, old);
        assert_eq!(json(&server, &by_id(old_id)).await, serde_json::json!([]));
        let recent_id = d.first_id_at_or_after_in(market, symbol, recent);
        let rows = json(&server, &by_id(recent_id)).await;
        assert_eq!(rows[0]["a"], recent_id);
    }
    let spot = json(
        &server,
        &format!("{base}/api/v3/aggTrades?symbol=BTCUSDT&startTime={old}&limit=1"),
    )
    .await;
    assert_eq!(spot.as_array().unwrap().len(), 1, "{spot}");
    server.shutdown().await;
}
