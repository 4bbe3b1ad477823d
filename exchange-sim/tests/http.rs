//! End-to-end tests of the simulator over real HTTP on loopback: endpoint shapes and pagination,
//! Binance error codes, weight headers, the rate limiter (429, strikes, 418 bans, window reset)
//! and injected faults (storms, 503s, dropped connections, missing aggregate-trade ids).

mod common;

use common::{jump_to_window_start, now_ms, start};
use std::net::SocketAddr;
use std::time::Duration;

use exchange_sim::data::{self, Data};
use exchange_sim::{Faults, Interval, SimConfig, SimServer, Storm};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const L: i64 = data::DEFAULT_LISTED_AT_MS;
const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_u64(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .parse()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn code(&self) -> i64 {
        self.json()["code"].as_i64().unwrap()
    }
}

/// One request on a fresh connection; `Err` when the server closed it without answering.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    if raw.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without response",
        ));
    }
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let (status, headers) = common::parse_head(head);
    Ok(Resp {
        status,
        headers,
        body: body.to_string(),
    })
}

async fn get(server: &SimServer, path: &str) -> Resp {
    request(server.local_addr(), "GET", path, "").await.unwrap()
}

#[tokio::test]
async fn ping_time_and_weight_headers() {
    let server = start(SimConfig::default()).await;
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    let r = get(&server, "/api/v3/ping").await;
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.header_u64("x-mbx-used-weight"), 1);
    assert_eq!(r.header_u64("x-mbx-used-weight-1m"), 1);
    let r = get(&server, "/api/v3/time").await;
    let t = r.json()["serverTime"].as_i64().unwrap();
    assert!((t - now_ms()).abs() < 5_000);
    assert_eq!(r.header_u64("x-mbx-used-weight-1m"), 2);
    let r = get(&server, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1").await;
    assert_eq!(r.header_u64("x-mbx-used-weight-1m"), 4);
    let r = get(&server, "/api/v3/aggTrades?symbol=BTCUSDT&limit=1").await;
    assert_eq!(r.header_u64("x-mbx-used-weight-1m"), 8);
    let r = get(&server, "/api/v3/historicalTrades?symbol=BTCUSDT&limit=1").await;
    assert_eq!(r.header_u64("x-mbx-used-weight-1m"), 33);
    let r = get(&server, "/api/v3/depth?symbol=BTCUSDT&limit=500").await;
    assert_eq!(r.header_u64("x-mbx-used-weight-1m"), 58);
    // Errors are charged and carry the headers too.
    let r = get(&server, "/api/v3/klines?symbol=NOPE&interval=1m").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header_u64("x-mbx-used-weight"), 60);
    let r = get(&server, "/nowhere").await;
    assert_eq!((r.status, r.code()), (404, -5000));
    assert_eq!(r.header_u64("x-mbx-used-weight"), 60);
    let stats = server.stats();
    assert_eq!(stats.requests, 8);
    assert_eq!(stats.weight_total, 60);
    assert_eq!(stats.max_window_weight, 60);
    assert_eq!(stats.per_endpoint["/api/v3/ping"], 1);
    assert_eq!(stats.per_endpoint["other"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn exchange_info_describes_the_configured_window() {
    let cfg = SimConfig {
        weight_limit: 1234,
        weight_window: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let server = start(cfg).await;
    let r = get(&server, "/api/v3/exchangeInfo").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header_u64("x-mbx-used-weight-2s"), 20);
    let v = r.json();
    assert_eq!(v["timezone"], "UTC");
    let rl = &v["rateLimits"][0];
    assert_eq!(rl["rateLimitType"], "REQUEST_WEIGHT");
    assert_eq!(rl["interval"], "SECOND");
    assert_eq!(rl["intervalNum"], 2);
    assert_eq!(rl["limit"], 1234);
    assert_eq!(v["rateLimits"][3]["rateLimitType"], "RAW_REQUESTS");
    let symbols = v["symbols"].as_array().unwrap();
    assert!(symbols.len() >= 10);
    assert_eq!(symbols[0]["symbol"], "BTCUSDT");
    assert_eq!(symbols[0]["baseAsset"], "BTC");
    assert_eq!(symbols[0]["quoteAsset"], "USDT");
    assert_eq!(symbols[0]["status"], "TRADING");
    let r = get(&server, "/api/v3/exchangeInfo?symbol=ETHBTC").await;
    assert_eq!(r.header_u64("x-mbx-used-weight"), 40);
    let v = r.json();
    assert_eq!(v["symbols"].as_array().unwrap().len(), 1);
    assert_eq!(v["symbols"][0]["baseAsset"], "ETH");
    assert_eq!(v["symbols"][0]["quoteAsset"], "BTC");
    let r = get(
        &server,
        "/api/v3/exchangeInfo?symbols=%5B%22SOLUSDT%22,%22BNBFDUSD%22%5D",
    )
    .await;
    assert_eq!(r.header_u64("x-mbx-used-weight"), 60);
    let v = r.json();
    assert_eq!(v["symbols"][1]["symbol"], "BNBFDUSD");
    assert_eq!(v["symbols"][1]["quoteAsset"], "FDUSD");
    let r = get(&server, "/api/v3/exchangeInfo?symbol=NOTACOIN").await;
    assert_eq!((r.status, r.code()), (400, -1121));
    assert_eq!(r.json()["msg"], "Invalid symbol.");
    let r = get(&server, "/api/v3/exchangeInfo?symbol=btcusdt").await;
    assert_eq!((r.status, r.code()), (400, -1100));
    assert_eq!(
        r.json()["msg"],
        "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
    );
    server.shutdown().await;

    let minute = start(SimConfig::default()).await;
    let v = get(&minute, "/api/v3/exchangeInfo").await.json();
    assert_eq!(v["rateLimits"][0]["interval"], "MINUTE");
    assert_eq!(v["rateLimits"][0]["intervalNum"], 1);
    assert_eq!(v["rateLimits"][0]["limit"], 6000);
    minute.shutdown().await;
}

fn kline_row(symbol: &str, iv: Interval, open: i64) -> Value {
    let k = data::kline(&SimConfig::default().data(), symbol, iv, open);
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
async fn klines_pagination_bounds() {
    let server = start(SimConfig::default()).await;
    // startTime mid-candle rounds up; endTime is inclusive.
    let r = get(
        &server,
        &format!(
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={}&endTime={}",
            L + 30_000,
            L + 5 * MIN
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    let expect: Vec<Value> = data::interval_open_times(Interval::M1, L + 30_000, L + 5 * MIN + 1)
        .into_iter()
        .map(|t| kline_row("BTCUSDT", Interval::M1, t))
        .collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows, &expect);
    assert_eq!(rows[0][0], L + MIN);
    assert_eq!(rows[4][0], L + 5 * MIN);
    assert_eq!(rows[0][6], L + 2 * MIN - 1);

    // Nothing before the listing; default limit 500, max 1000.
    let r = get(
        &server,
        "/api/v3/klines?symbol=ETHUSDT&interval=1h&startTime=0",
    )
    .await;
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 500);
    assert_eq!(rows[0][0], L);
    assert_eq!(rows[499][0], L + 499 * 3_600_000);
    let r = get(
        &server,
        "/api/v3/klines?symbol=ETHUSDT&interval=1h&startTime=0&limit=1000",
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1000);
    let r = get(
        &server,
        "/api/v3/klines?symbol=ETHUSDT&interval=1h&startTime=0&limit=1001",
    )
    .await;
    assert_eq!((r.status, r.code()), (400, -1130));
    assert_eq!(
        r.json()["msg"],
        "Data sent for parameter 'limit' is not valid."
    );

    // Only endTime: the newest candles at or before it.
    let r = get(
        &server,
        &format!(
            "/api/v3/klines?symbol=BTCUSDT&interval=1d&endTime={}&limit=3",
            L + 10 * DAY + 5
        ),
    )
    .await;
    let rows = r.json();
    let opens: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_i64().unwrap())
        .collect();
    assert_eq!(opens, vec![L + 8 * DAY, L + 9 * DAY, L + 10 * DAY]);

    // Neither: the newest, ending with the current (unclosed) candle, never in the future.
    let before = now_ms();
    let rows = get(&server, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5")
        .await
        .json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let last_open = rows[4][0].as_i64().unwrap();
    assert!(last_open <= now_ms());
    assert!(last_open >= Interval::M1.align_down(before));
    assert!(rows
        .windows(2)
        .all(|w| w[0][0].as_i64().unwrap() + MIN == w[1][0].as_i64().unwrap()));

    // A range entirely in the future is empty.
    let r = get(
        &server,
        &format!(
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={}",
            now_ms() + DAY
        ),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    server.shutdown().await;
}

#[tokio::test]
async fn weeks_and_months_align_like_binance() {
    let server = start(SimConfig::default()).await;
    let rows = get(
        &server,
        "/api/v3/klines?symbol=BTCUSDT&interval=1w&startTime=0&limit=3",
    )
    .await
    .json();
    // Listing on Thursday 2017-08-17; the first whole week opens Monday 2017-08-21.
    assert_eq!(rows[0][0], 1_503_273_600_000i64);
    assert_eq!(rows[1][0], 1_503_273_600_000i64 + 7 * DAY);
    assert_eq!(rows[0][6], 1_503_273_600_000i64 + 7 * DAY - 1);
    let rows = get(
        &server,
        "/api/v3/klines?symbol=BTCUSDT&interval=1M&startTime=0&limit=6",
    )
    .await
    .json();
    let opens: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_i64().unwrap())
        .collect();
    assert_eq!(
        opens,
        vec![
            1_504_224_000_000, // 2017-09-01
            1_506_816_000_000, // 2017-10-01
            1_509_494_400_000, // 2017-11-01
            1_512_086_400_000, // 2017-12-01
            1_514_764_800_000, // 2018-01-01
            1_517_443_200_000, // 2018-02-01
        ]
    );
    assert_eq!(rows[5][6], 1_519_862_400_000i64 - 1); // closes before 2018-03-01
    let rows = get(
        &server,
        &format!("/api/v3/klines?symbol=BTCUSDT&interval=3d&startTime={L}&limit=2"),
    )
    .await
    .json();
    assert_eq!(rows[0][0].as_i64().unwrap() % (3 * DAY), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn parameter_errors_use_binance_codes() {
    let server = start(SimConfig::default()).await;
    let cases = [
        ("/api/v3/klines?interval=1m", -1102),
        ("/api/v3/klines?symbol=BTCUSDT", -1102),
        ("/api/v3/klines?symbol=BTCUSDT&interval=7m", -1120),
        ("/api/v3/klines?symbol=FOOBAR&interval=1m", -1121),
        ("/api/v3/klines?symbol=btcusdt&interval=1m", -1100),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=abc",
            -1100,
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=5&endTime=4",
            -1127,
        ),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=0", -1130),
        ("/api/v3/aggTrades?symbol=BTCUSDT&limit=1001", -1130),
        (
            "/api/v3/aggTrades?symbol=BTCUSDT&fromId=1&startTime=5",
            -1128,
        ),
        (
            "/api/v3/aggTrades?symbol=BTCUSDT&startTime=1600000000000&endTime=1600003600000",
            -1127,
        ),
        ("/api/v3/aggTrades", -1102),
        ("/api/v3/historicalTrades?symbol=BTCUSDT&limit=5000", -1130),
        ("/api/v3/depth?symbol=BTCUSDT&limit=5001", -1130),
        ("/api/v3/depth?symbol=XYZ", -1121),
    ];
    for (path, code) in cases {
        let r = get(&server, path).await;
        assert_eq!((r.status, r.code()), (400, code), "{path}: {}", r.body);
    }
    let r = get(
        &server,
        "/api/v3/aggTrades?symbol=BTCUSDT&startTime=1600000000000&endTime=1600003600000",
    )
    .await;
    assert_eq!(
        r.json()["msg"],
        "More than 1 hours between startTime and endTime."
    );
    let r = get(&server, "/api/v3/klines?interval=1m").await;
    assert_eq!(
        r.json()["msg"],
        "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
    );
    let r = get(&server, "/api/v3/klines?symbol=BTCUSDT&interval=2x").await;
    assert_eq!(r.json()["msg"], "Invalid interval.");
    server.shutdown().await;
}

#[tokio::test]
async fn agg_trades_pages_and_missing_ids() {
    let missing = vec![(10u64, 19u64)];
    let cfg = SimConfig {
        faults: Faults {
            missing_agg_ids: missing.clone(),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let d: Data = cfg.data();
    let server = start(cfg).await;
    assert_eq!(server.data(), d);
    let r = get(
        &server,
        "/api/v3/aggTrades?symbol=BTCUSDT&fromId=5&limit=10",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.json();
    let ids: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["a"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![5, 6, 7, 8, 9, 20, 21, 22, 23, 24]);
    let first = &rows[0];
    let expect = d.trade("BTCUSDT", 5).unwrap();
    assert_eq!(first["p"], expect.price.as_str());
    assert_eq!(first["q"], expect.qty.as_str());
    assert_eq!(first["f"], expect.first_trade_id);
    assert_eq!(first["l"], expect.last_trade_id);
    assert_eq!(first["T"], expect.time);
    assert_eq!(first["m"], expect.is_buyer_maker);
    assert_eq!(first["M"], true);
    assert_eq!(
        rows[5]["f"].as_u64().unwrap(),
        d.trade("BTCUSDT", 20).unwrap().first_trade_id
    );

    // startTime and endTime are inclusive.
    let t5 = d.trade_time("BTCUSDT", 5);
    let t30 = d.trade_time("BTCUSDT", 30);
    let r = get(
        &server,
        &format!("/api/v3/aggTrades?symbol=BTCUSDT&startTime={t5}&endTime={t30}&limit=1000"),
    )
    .await;
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    let expect = d.trades_between("BTCUSDT", t5, t30);
    assert_eq!(rows.len(), expect.len());
    assert_eq!(rows.len(), 26 - 10);
    assert_eq!(rows[0]["a"], 5);
    assert_eq!(rows.last().unwrap()["a"], 30);
    for (row, e) in rows.iter().zip(&expect) {
        assert_eq!(row["a"], e.id);
        assert_eq!(row["T"], e.time);
    }
    // Default and maximum limits.
    let r = get(&server, "/api/v3/aggTrades?symbol=BTCUSDT&fromId=0").await;
    assert_eq!(r.json().as_array().unwrap().len(), 500);
    let r = get(
        &server,
        "/api/v3/aggTrades?symbol=BTCUSDT&fromId=0&limit=1000",
    )
    .await;
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[999]["a"], 1009);
    assert!(rows
        .windows(2)
        .all(|w| w[0]["T"].as_i64() <= w[1]["T"].as_i64()));

    // No fromId/startTime: the newest trades, none in the future.
    let r = get(&server, "/api/v3/aggTrades?symbol=ETHUSDT&limit=3").await;
    let rows = r.json();
    let newest = rows[2]["T"].as_i64().unwrap();
    assert!(newest <= now_ms());
    assert!(newest > now_ms() - 10_000);
    let last_id = rows[2]["a"].as_u64().unwrap();
    let r = get(
        &server,
        &format!("/api/v3/aggTrades?symbol=ETHUSDT&fromId={}", last_id + 100),
    )
    .await;
    assert_eq!(r.body, "[]", "no trades from the future");
    server.shutdown().await;
}

#[tokio::test]
async fn historical_trades_and_depth() {
    let server = start(SimConfig::default()).await;
    let d = Data::default();
    let r = get(
        &server,
        "/api/v3/historicalTrades?symbol=BTCUSDT&fromId=100&limit=20",
    )
    .await;
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 20);
    for (i, row) in rows.iter().enumerate() {
        let id = 100 + i as u64;
        assert_eq!(row["id"], id);
        let t = d.raw_trade("BTCUSDT", id).unwrap();
        assert_eq!(row["price"], t.price.as_str());
        assert_eq!(row["qty"], t.qty.as_str());
        assert_eq!(row["quoteQty"], t.quote_qty.as_str());
        assert_eq!(row["time"], t.time);
        assert_eq!(row["isBestMatch"], true);
        let agg = d.trade("BTCUSDT", d.agg_id_of_raw("BTCUSDT", id)).unwrap();
        assert!(agg.first_trade_id <= id && id <= agg.last_trade_id);
    }
    let r = get(&server, "/api/v3/historicalTrades?symbol=BTCUSDT&limit=5").await;
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 5);
    assert!(rows[4]["time"].as_i64().unwrap() <= now_ms());

    let r = get(&server, "/api/v3/depth?symbol=BTCUSDT&limit=5").await;
    assert_eq!(r.header_u64("x-mbx-used-weight"), 25 + 25 + 5);
    let v = r.json();
    assert!(v["lastUpdateId"].as_u64().unwrap() > 0);
    let bids = v["bids"].as_array().unwrap();
    let asks = v["asks"].as_array().unwrap();
    assert_eq!((bids.len(), asks.len()), (5, 5));
    let px = |x: &Value| x[0].as_str().unwrap().parse::<f64>().unwrap();
    assert!(px(&bids[0]) < px(&asks[0]));
    assert!(bids.windows(2).all(|w| px(&w[0]) > px(&w[1])));
    // The simulated book has a fixed number of levels per side, whatever the limit.
    let r = get(&server, "/api/v3/depth?symbol=BTCUSDT&limit=5000").await;
    assert_eq!(
        r.json()["asks"].as_array().unwrap().len(),
        data::BOOK_LEVELS
    );
    assert_eq!(r.header_u64("x-mbx-used-weight"), 55 + 250);
    server.shutdown().await;
}

#[tokio::test]
async fn same_request_gives_the_same_body() {
    let server = start(SimConfig::default()).await;
    for path in [
        format!("/api/v3/klines?symbol=SOLUSDT&interval=1s&startTime={L}&limit=1000"),
        format!(
            "/api/v3/klines?symbol=DOGEUSDT&interval=1M&startTime={L}&endTime={}",
            L + 900 * DAY
        ),
        "/api/v3/aggTrades?symbol=XRPUSDT&fromId=123456&limit=1000".to_string(),
        "/api/v3/historicalTrades?symbol=XRPUSDT&fromId=777&limit=100".to_string(),
    ] {
        let a = get(&server, &path).await;
        let b = get(&server, &path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert_eq!(a.body, b.body, "{path}");
    }
    // A second server with the same settings serves the same data.
    let other = start(SimConfig::default()).await;
    let path = "/api/v3/aggTrades?symbol=XRPUSDT&fromId=5&limit=50";
    assert_eq!(get(&server, path).await.body, get(&other, path).await.body);
    other.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn over_budget_gets_429_then_418_after_strikes() {
    let cfg = SimConfig {
        weight_limit: 10,
        weight_window: Duration::from_secs(2),
        strikes_before_ban: 2,
        ban_duration: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let server = start(cfg).await;
    jump_to_window_start(&server, 2_000);
    for i in 1..=10 {
        let r = get(&server, "/api/v3/ping").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header_u64("x-mbx-used-weight-2s"), i);
    }
    let r = get(&server, "/api/v3/ping").await;
    assert_eq!((r.status, r.code()), (429, -1003));
    assert_eq!(
        r.json()["msg"],
        "Too much request weight used; current limit is 10 request weight per 2 SECOND. \
         Please use WebSocket Streams for live updates to avoid polling the API."
    );
    let retry = r.header_u64("retry-after");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(r.header_u64("x-mbx-used-weight"), 11);
    for _ in 0..2 {
        assert_eq!(get(&server, "/api/v3/ping").await.status, 429);
    }
    let r = get(&server, "/api/v3/ping").await;
    assert_eq!((r.status, r.code()), (418, -1003));
    assert_eq!(r.header_u64("retry-after"), 2);
    let msg = r.json()["msg"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with("Way too much request weight used; IP banned until "),
        "{msg}"
    );
    assert!(msg.ends_with("Please use WebSocket Streams for live updates to avoid bans."));
    let r = get(&server, "/api/v3/klines?symbol=BTCUSDT&interval=1m").await;
    assert_eq!(r.status, 418);
    assert!(r.header_u64("retry-after") <= 2);

    let stats = server.stats();
    assert_eq!(stats.responses_429, 3);
    assert_eq!(stats.responses_418, 2);
    assert_eq!(stats.budget_violations, 5);
    assert_eq!(stats.max_window_weight, 10);

    server.clock().advance(Duration::from_millis(2_100));
    let r = get(&server, "/api/v3/ping").await;
    assert_eq!(r.status, 200, "the ban is over: {}", r.body);
    assert_eq!(server.stats().max_window_weight, 10);
    server.shutdown().await;
}

#[tokio::test]
async fn the_budget_resets_with_the_window() {
    let cfg = SimConfig {
        weight_limit: 5,
        weight_window: Duration::from_secs(1),
        ..SimConfig::default()
    };
    let server = start(cfg).await;
    jump_to_window_start(&server, 1_000);
    for _ in 0..5 {
        assert_eq!(get(&server, "/api/v3/ping").await.status, 200);
    }
    let r = get(&server, "/api/v3/ping").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header_u64("retry-after"), 1);
    assert_eq!(r.header_u64("x-mbx-used-weight-1s"), 6);
    jump_to_window_start(&server, 1_000);
    let r = get(&server, "/api/v3/ping").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header_u64("x-mbx-used-weight-1s"), 1);
    let stats = server.stats();
    assert_eq!((stats.responses_429, stats.budget_violations), (1, 1));
    assert_eq!(stats.max_window_weight, 5);
    server.shutdown().await;
}

#[tokio::test]
async fn storms_reject_whatever_the_budget() {
    let server = start(SimConfig::default()).await;
    server.set_faults(Faults {
        storm: Some(Storm {
            status: 429,
            count: 2,
            retry_after_secs: 7,
            code: None,
        }),
        ..Faults::default()
    });
    for _ in 0..2 {
        let r = get(&server, "/api/v3/klines?symbol=BTCUSDT&interval=1m").await;
        assert_eq!((r.status, r.code()), (429, -1003));
        assert_eq!(r.header_u64("retry-after"), 7);
    }
    // /sim/* is never stormed and does not consume the storm.
    assert_eq!(get(&server, "/sim/stats").await.status, 200);
    assert_eq!(get(&server, "/api/v3/ping").await.status, 200);
    server.set_faults(Faults {
        storm: Some(Storm {
            status: 418,
            count: 1,
            retry_after_secs: 3,
            code: None,
        }),
        ..Faults::default()
    });
    let r = get(&server, "/api/v3/ping").await;
    assert_eq!((r.status, r.code()), (418, -1003));
    assert_eq!(r.header_u64("retry-after"), 3);
    assert_eq!(get(&server, "/api/v3/ping").await.status, 200);
    let stats = server.stats();
    assert_eq!((stats.responses_429, stats.responses_418), (2, 1));
    assert_eq!(
        stats.budget_violations, 0,
        "storms are not the client's fault"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn storms_answer_binances_try_again_and_restricted_location_bodies() {
    let server = start(SimConfig::default()).await;
    let path = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2";
    for (status, code, expected) in [
        (408, None, -1007),
        (400, Some(-1008), -1008),
        (503, Some(-1006), -1006),
        (451, None, 0),
    ] {
        server.set_faults(Faults {
            storm: Some(Storm {
                status,
                count: 1,
                retry_after_secs: 0,
                code,
            }),
            ..Faults::default()
        });
        let r = get(&server, path).await;
        assert_eq!((r.status, r.code()), (status, expected), "{}", r.body);
        assert_eq!(
            r.header("retry-after"),
            None,
            "Retry-After is for 429 and 418 only"
        );
        if status == 451 {
            assert!(r.body.contains("restricted location"), "{}", r.body);
        }
        assert_eq!(get(&server, path).await.status, 200, "one request only");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn injected_5xx_and_dropped_connections() {
    let server = start(SimConfig::default()).await;
    server.set_faults(Faults {
        error_5xx_every: 3,
        ..Faults::default()
    });
    let path = "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=2";
    assert_eq!(get(&server, path).await.status, 200);
    assert_eq!(
        get(&server, "/api/v3/ping").await.status,
        200,
        "not a data request"
    );
    assert_eq!(get(&server, path).await.status, 200);
    let r = get(&server, path).await;
    assert_eq!((r.status, r.code()), (503, -1001));
    assert_eq!(
        r.json()["msg"],
        "Internal error; unable to process your request. Please try your request again."
    );
    assert!(r.header("x-mbx-used-weight").is_some());

    server.set_faults(Faults {
        drop_every: 2,
        ..Faults::default()
    });
    let addr = server.local_addr();
    assert!(request(addr, "GET", path, "").await.is_ok());
    let err = request(addr, "GET", path, "").await.err().expect("dropped");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{err}"
    );
    assert!(request(addr, "GET", path, "").await.is_ok());
    let stats = server.stats();
    assert_eq!((stats.responses_5xx, stats.dropped), (1, 1));
    // The dropped request's weight was spent.
    assert_eq!(stats.weight_total, 6 * 2 + 1);
    server.shutdown().await;
}

#[tokio::test]
async fn latency_delays_responses() {
    let cfg = SimConfig {
        faults: Faults {
            latency: Duration::from_millis(150),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let server = start(cfg).await;
    let t = std::time::Instant::now();
    assert_eq!(get(&server, "/api/v3/ping").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    let t = std::time::Instant::now();
    assert_eq!(get(&server, "/sim/stats").await.status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "/sim is not delayed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn sim_endpoints_report_stats_and_set_faults() {
    let server = start(SimConfig::default()).await;
    get(&server, "/api/v3/ping").await;
    let r = get(&server, "/sim/stats").await;
    let v = r.json();
    assert_eq!(v["requests"], 1);
    assert_eq!(v["weight_total"], 1);
    assert_eq!(v["per_endpoint"]["/api/v3/ping"], 1);
    let body = r#"{"error_5xx_every":1,"missing_agg_ids":[[0,4]]}"#;
    let r = request(server.local_addr(), "POST", "/sim/faults", body)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&server, "/sim/faults").await;
    assert_eq!(r.json()["error_5xx_every"], 1);
    assert_eq!(r.json()["missing_agg_ids"][0][1], 4);
    assert_eq!(
        get(&server, "/api/v3/depth?symbol=BTCUSDT").await.status,
        503
    );
    let r = request(server.local_addr(), "POST", "/sim/faults", "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let rows = get(&server, "/api/v3/aggTrades?symbol=BTCUSDT&fromId=0&limit=1")
        .await
        .json();
    assert_eq!(rows[0]["a"], 0, "faults cleared");
    let r = request(
        server.local_addr(),
        "POST",
        "/sim/faults",
        r#"{"storm":{"status":302,"count":1,"retry_after_secs":1}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let r = request(
        server.local_addr(),
        "POST",
        "/sim/faults",
        r#"{"storm":{"status":400,"count":1,"code":-1121}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "only try-again codes");
    assert_eq!(server.stats().requests, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_connections_serve_many_requests() {
    let server = start(SimConfig::default()).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let req = format!(
        "GET /api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={L}&limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    for _ in 0..3 {
        stream.write_all(req.as_bytes()).await.unwrap();
        // Read one response: headers, then Content-Length bytes.
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.unwrap();
        let rows: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1000);
    }
    server.shutdown().await;
}

/// Kills the child process it holds when a test fails before stopping it.
#[cfg(unix)]
struct ChildGuard(Option<std::process::Child>);

#[cfg(unix)]
impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_prints_its_address_and_stops_on_sigterm() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_exchange-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--weight-limit",
            "77",
            "--weight-window-ms",
            "3000",
            "--archive-missing-days",
            "2024-01-02,2024-01-05",
            "--archive-corrupt",
            "BTCUSDT-1m-2024-01-03.zip:2,ETHUSDT-1d-2024-01.zip",
            "--archive-header",
            "--archive-daily-delay-ms",
            "7200000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let mut guard = ChildGuard(Some(child));
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let addr: SocketAddr = url.parse().unwrap();
    let r = request(addr, "GET", "/api/v3/exchangeInfo?symbol=BTCUSDT", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header_u64("x-mbx-used-weight-3s"), 20);
    assert_eq!(r.json()["rateLimits"][0]["limit"], 77);
    let archive = request(addr, "GET", "/sim/archive", "")
        .await
        .unwrap()
        .json();
    assert_eq!(
        archive["missing_days"],
        serde_json::json!(["2024-01-02", "2024-01-05"])
    );
    assert_eq!(
        archive["corrupt"],
        serde_json::json!([
            ["BTCUSDT-1m-2024-01-03.zip", 2],
            ["ETHUSDT-1d-2024-01.zip", u32::MAX]
        ])
    );
    assert_eq!(archive["header"], true);
    assert_eq!(archive["daily_delay_ms"], 7_200_000);
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = guard.0.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn the_clock_is_set_and_jumped_and_server_time_follows() {
    let server = start(SimConfig::default()).await;
    let addr = server.local_addr();
    let at = 1_700_000_000_000;
    let r = common::request(addr, "POST", &format!("/sim/clock?now_ms={at}"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = get(&server, "/api/v3/time").await.json()["serverTime"]
        .as_i64()
        .unwrap();
    assert!((at..at + 5_000).contains(&t), "{t}");
    // Klines end at the simulated present.
    let rows = get(&server, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=2").await;
    let last_open = rows.json()[1][0].as_i64().unwrap();
    assert_eq!(last_open, Interval::H1.align_down(t));
    let r = common::request(addr, "POST", "/sim/clock?advance_ms=3600000", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let now = r.json()["now_ms"].as_i64().unwrap();
    assert!((at + 3_600_000..at + 3_605_000).contains(&now), "{now}");
    assert!((now - server.clock().now_ms()).abs() < 5_000);
    for bad in ["", "?advance_ms=-1", "?now_ms=x", "?advance_ms=1&now_ms=2"] {
        let r = common::request(addr, "POST", &format!("/sim/clock{bad}"), &[]).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    server.shutdown().await;
}
