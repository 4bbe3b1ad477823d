//! End-to-end tests of the WebSocket streams with real tokio-tungstenite clients on loopback:
//! raw and combined stream shapes, live requests, consistency with the REST data (trade ids,
//! closed klines, order-book snapshots plus diffs), and Binance's connection behaviours and
//! injected faults (pings and pong timeout, lifetime rotation, serverShutdown, forced
//! disconnects, stalls, depth gaps, message-rate and connection-attempt limits).

mod common;

use common::{collect, eventually, keys, next_json, reply, rest, send_json, sorted, start, Client};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use exchange_sim::data;
use exchange_sim::{SimConfig, SimServer, WsFaults};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A server whose symbols trade every few milliseconds.
async fn busy(ws: WsFaults) -> SimServer {
    start(SimConfig {
        agg_trade_spacing_ms: 5,
        ws,
        ..SimConfig::default()
    })
    .await
}

async fn connect(server: &SimServer, path: &str) -> Client {
    let url = format!("{}{path}", server.ws_url());
    connect_async(url).await.unwrap().0
}

/// How a connection ended, read to its end.
#[derive(Debug, Default)]
struct Ending {
    texts: Vec<Value>,
    pings: usize,
    close: Option<(CloseCode, String)>,
    /// The TCP connection ended without a close frame.
    reset: bool,
    /// Still open when `within` ran out.
    still_open: bool,
}

async fn read_to_end(ws: &mut Client, within: Duration) -> Ending {
    let deadline = tokio::time::Instant::now() + within;
    let mut e = Ending::default();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                e.still_open = true;
                return e;
            }
            Ok(None) => return e,
            Ok(Some(Ok(Message::Text(t)))) => e.texts.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_)))) => e.pings += 1,
            Ok(Some(Ok(Message::Close(f)))) => {
                e.close = f.map(|f| (f.code, f.reason.to_string()));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(WsError::Protocol(_) | WsError::Io(_)))) => {
                e.reset = e.close.is_none();
                return e;
            }
            Ok(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => return e,
            Ok(Some(Err(other))) => panic!("unexpected error {other}"),
        }
    }
}

#[tokio::test]
async fn raw_and_combined_streams_have_binance_shapes() {
    let server = busy(WsFaults::default()).await;
    let mut raw = connect(&server, "/ws/btcusdt@trade").await;
    let t = next_json(&mut raw, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        keys(&t),
        sorted(&["e", "E", "s", "t", "p", "q", "T", "m", "M"])
    );
    assert_eq!(
        (t["e"].as_str(), t["s"].as_str()),
        (Some("trade"), Some("BTCUSDT"))
    );

    let names = [
        "btcusdt@aggTrade",
        "btcusdt@kline_1s",
        "ethusdt@depth@100ms",
        "ethusdt@depth",
        "btcusdt@bookTicker",
    ];
    let mut comb = connect(&server, &format!("/stream?streams={}", names.join("/"))).await;
    let msgs = collect(&mut comb, Duration::from_millis(2300)).await;
    let mut by_stream: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in msgs {
        assert_eq!(keys(&m), vec!["data", "stream"], "{m}");
        by_stream
            .entry(m["stream"].as_str().unwrap().to_string())
            .or_default()
            .push(m["data"].clone());
    }
    assert_eq!(
        by_stream.keys().map(String::as_str).collect::<Vec<_>>(),
        sorted(&names)
    );
    let agg = &by_stream["btcusdt@aggTrade"][0];
    assert_eq!(
        keys(agg),
        sorted(&["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"])
    );
    assert_eq!(agg["e"], "aggTrade");
    let kl = &by_stream["btcusdt@kline_1s"];
    assert!(kl.iter().any(|k| k["k"]["x"] == true));
    assert!(kl.iter().any(|k| k["k"]["x"] == false));
    assert_eq!(keys(&kl[0]), sorted(&["e", "E", "s", "k"]));
    assert_eq!(
        keys(&kl[0]["k"]),
        sorted(&[
            "t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"
        ])
    );
    assert_eq!(
        (kl[0]["e"].as_str(), kl[0]["k"]["i"].as_str()),
        (Some("kline"), Some("1s"))
    );
    let fast = &by_stream["ethusdt@depth@100ms"];
    assert!(fast.len() >= 15, "{} fast depth events", fast.len());
    assert_eq!(keys(&fast[0]), sorted(&["e", "E", "s", "U", "u", "b", "a"]));
    assert_eq!(
        (fast[0]["e"].as_str(), fast[0]["s"].as_str()),
        (Some("depthUpdate"), Some("ETHUSDT"))
    );
    let level = fast
        .iter()
        .find_map(|d| d["a"].as_array().unwrap().first().cloned());
    let level = level.expect("some ask changes");
    assert!(level[0].is_string() && level[1].is_string(), "{level}");
    // The 1000 ms stream: about one event a second, contiguous like the fast one.
    let slow = &by_stream["ethusdt@depth"];
    assert!(
        (1..=3).contains(&slow.len()),
        "{} slow depth events",
        slow.len()
    );
    for w in fast.windows(2).chain(slow.windows(2)) {
        assert_eq!(w[1]["U"].as_u64().unwrap(), w[0]["u"].as_u64().unwrap() + 1);
    }
    let bt = &by_stream["btcusdt@bookTicker"][0];
    assert_eq!(keys(bt), sorted(&["u", "s", "b", "B", "a", "A"]));
    let px = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    assert!(px(&bt["b"]) < px(&bt["a"]));
    server.shutdown().await;
}

#[tokio::test]
async fn live_requests_and_their_errors() {
    let server = busy(WsFaults::default()).await;
    let mut ws = connect(&server, "/ws").await;
    let wait = Duration::from_secs(2);
    send_json(
        &mut ws,
        serde_json::json!({"method":"SUBSCRIBE","params":["btcusdt@aggTrade","ethbtc@kline_1m"],"id":1}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws, wait).await.unwrap(),
        serde_json::json!({"result":null,"id":1})
    );
    // Raw (not combined) payloads follow.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let v = next_json(&mut ws, wait).await.unwrap();
        seen.push(v["e"].as_str().unwrap().to_string());
    }
    assert!(
        seen.iter().all(|e| e == "aggTrade" || e == "kline"),
        "{seen:?}"
    );
    // A second later for the message-rate limit, without waiting for it.
    server.clock().advance(Duration::from_millis(1_100));
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"LIST_SUBSCRIPTIONS","id":"abc"}),
    )
    .await;
    assert_eq!(
        r,
        serde_json::json!({"result":["btcusdt@aggTrade","ethbtc@kline_1m"],"id":"abc"})
    );
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":2}),
    )
    .await;
    assert_eq!(r, serde_json::json!({"result":null,"id":2}));
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"SUBSCRIBE","params":["btcusdt@nope"],"id":3}),
    )
    .await;
    assert_eq!(
        r,
        serde_json::json!({"code":2,"msg":"Invalid request: invalid stream","id":3})
    );
    // A second later for the message-rate limit, without waiting for it.
    server.clock().advance(Duration::from_millis(1_100));
    let r = reply(&mut ws, serde_json::json!({"method":"FOO","id":4})).await;
    assert_eq!(r["code"], 2);
    assert!(r["msg"].as_str().unwrap().contains("unknown variant `FOO`"));
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"GET_PROPERTY","params":["combined"],"id":5}),
    )
    .await;
    assert_eq!(r, serde_json::json!({"result":false,"id":5}));
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"SET_PROPERTY","params":["combined",true],"id":6}),
    )
    .await;
    assert_eq!(r, serde_json::json!({"result":null,"id":6}));
    // A second later for the message-rate limit, without waiting for it.
    server.clock().advance(Duration::from_millis(1_100));
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":{}}),
    )
    .await;
    assert_eq!(
        r["msg"],
        "Invalid request: request ID must be an unsigned integer"
    );
    // Now combined: events are wrapped.
    let v = next_json(&mut ws, wait).await.unwrap();
    assert_eq!(v["stream"], "ethbtc@kline_1m");
    ws.send(Message::text("{not json")).await.unwrap();
    let r = loop {
        let m = next_json(&mut ws, wait).await.unwrap();
        if m.get("code").is_some() {
            break m;
        }
    };
    assert_eq!(r["code"], 3);
    assert!(r["msg"].as_str().unwrap().starts_with("Invalid JSON: "));
    server.shutdown().await;
}

#[tokio::test]
async fn trade_streams_match_rest_trades() {
    let server = busy(WsFaults::default()).await;
    let addr = server.local_addr();
    let mut ws = connect(&server, "/stream?streams=solusdt@trade/solusdt@aggTrade").await;
    let msgs = collect(&mut ws, Duration::from_millis(1500)).await;
    let (mut trades, mut aggs) = (Vec::new(), Vec::new());
    for m in msgs {
        let mut d = m["data"].clone();
        let e = d["E"].as_i64().unwrap();
        let t = d["T"].as_i64().unwrap();
        assert!(t <= e && e - t < 500, "sent in real time: T {t}, E {e}");
        let obj = d.as_object_mut().unwrap();
        for k in ["e", "E", "s"] {
            obj.remove(k);
        }
        match m["stream"].as_str().unwrap() {
            "solusdt@trade" => trades.push(d),
            _ => aggs.push(d),
        }
    }
    assert!(
        aggs.len() > 100 && trades.len() > aggs.len(),
        "{} {}",
        aggs.len(),
        trades.len()
    );
    for w in aggs.windows(2) {
        assert_eq!(w[1]["a"].as_u64().unwrap(), w[0]["a"].as_u64().unwrap() + 1);
        assert_eq!(w[1]["f"].as_u64().unwrap(), w[0]["l"].as_u64().unwrap() + 1);
    }
    for w in trades.windows(2) {
        assert_eq!(w[1]["t"].as_u64().unwrap(), w[0]["t"].as_u64().unwrap() + 1);
    }
    let first = aggs[0]["a"].as_u64().unwrap();
    let rows = rest(
        addr,
        &format!(
            "/api/v3/aggTrades?symbol=SOLUSDT&fromId={first}&limit={}",
            aggs.len()
        ),
    )
    .await;
    assert_eq!(rows, Value::Array(aggs.clone()));
    let d = server.data();
    let a = d.trade("SOLUSDT", first).unwrap();
    assert_eq!(aggs[0]["p"].as_str(), Some(a.price.as_str()));
    let first_raw = trades[0]["t"].as_u64().unwrap();
    let rows = rest(
        addr,
        &format!(
            "/api/v3/historicalTrades?symbol=SOLUSDT&fromId={first_raw}&limit={}",
            trades.len()
        ),
    )
    .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), trades.len());
    for (r, t) in rows.iter().zip(&trades) {
        assert_eq!(r["id"], t["t"]);
        assert_eq!(r["price"], t["p"]);
        assert_eq!(r["qty"], t["q"]);
        assert_eq!(r["time"], t["T"]);
        assert_eq!(r["isBuyerMaker"], t["m"]);
        assert_eq!(r["isBestMatch"], t["M"]);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn closed_klines_equal_rest_klines() {
    let server = busy(WsFaults::default()).await;
    let mut ws = connect(&server, "/stream?streams=bnbusdt@kline_1s/bnbusdt@kline_1m").await;
    let msgs = collect(&mut ws, Duration::from_millis(2600)).await;
    // Then the clock jumps past the minute's end: the minute candle closes at once.
    let clock = server.clock();
    let to_minute = 60_000 - clock.now_ms().rem_euclid(60_000) + 100;
    clock.advance(Duration::from_millis(to_minute as u64));
    let minute = loop {
        let m = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("the minute candle closes");
        if m["stream"] == "bnbusdt@kline_1m" && m["data"]["k"]["x"] == true {
            break m;
        }
    };
    let closed: Vec<&Value> = msgs
        .iter()
        .chain([&minute])
        .filter(|m| m["data"]["k"]["x"] == true)
        .map(|m| &m["data"]["k"])
        .collect();
    assert!(closed.len() >= 3, "{} closed candles", closed.len());
    for k in closed {
        let (t, iv) = (k["t"].as_i64().unwrap(), k["i"].as_str().unwrap());
        let rows = rest(
            server.local_addr(),
            &format!("/api/v3/klines?symbol=BNBUSDT&interval={iv}&startTime={t}&limit=1"),
        )
        .await;
        let row = &rows[0];
        assert_eq!(row[0], k["t"]);
        assert_eq!(
            [
                &row[1], &row[2], &row[3], &row[4], &row[5], &row[6], &row[7], &row[8], &row[9],
                &row[10]
            ],
            [
                &k["o"], &k["h"], &k["l"], &k["c"], &k["v"], &k["T"], &k["q"], &k["n"], &k["V"],
                &k["Q"]
            ]
        );
        assert!(k["f"].as_i64().unwrap() <= k["L"].as_i64().unwrap());
    }
    // Unclosed updates of the minute candle at least every second.
    let updates: Vec<i64> = msgs
        .iter()
        .filter(|m| m["stream"] == "bnbusdt@kline_1m" && m["data"]["k"]["x"] == false)
        .map(|m| m["data"]["E"].as_i64().unwrap())
        .collect();
    assert!(updates.len() >= 2, "{updates:?}");
    assert!(
        updates.windows(2).all(|w| w[1] - w[0] <= 1100),
        "{updates:?}"
    );
    server.shutdown().await;
}

/// A local order book keyed by price in 1e-8 units.
#[derive(Default, Debug, PartialEq)]
struct Book {
    bids: BTreeMap<i64, String>,
    asks: BTreeMap<i64, String>,
}

fn units(s: &str) -> i64 {
    let (w, f) = s.split_once('.').unwrap();
    w.parse::<i64>().unwrap() * 100_000_000 + f.parse::<i64>().unwrap()
}

impl Book {
    fn from_snapshot(v: &Value) -> Book {
        let side = |k: &str| {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        units(l[0].as_str().unwrap()),
                        l[1].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        Book {
            bids: side("bids"),
            asks: side("asks"),
        }
    }

    fn apply(&mut self, ev: &Value) {
        for (key, side) in [("b", &mut self.bids), ("a", &mut self.asks)] {
            for l in ev[key].as_array().unwrap() {
                let p = units(l[0].as_str().unwrap());
                let q = l[1].as_str().unwrap();
                if units(q) == 0 {
                    side.remove(&p);
                } else {
                    side.insert(p, q.to_string());
                }
            }
        }
    }
}

#[tokio::test]
async fn depth_diffs_applied_to_a_snapshot_reproduce_later_snapshots() {
    let server = busy(WsFaults::default()).await;
    let addr = server.local_addr();
    let path = "/api/v3/depth?symbol=BTCUSDT&limit=5000";
    let mut ws = connect(
        &server,
        "/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker",
    )
    .await;
    let wait = Duration::from_secs(2);
    let mut depth = Vec::new();
    let mut tickers = 0;
    // Buffer, then take the snapshot (Binance's procedure).
    while depth.is_empty() {
        let m = next_json(&mut ws, wait).await.unwrap();
        if m["stream"] == "btcusdt@depth@100ms" {
            depth.push(m["data"].clone());
        } else {
            tickers += 1;
        }
    }
    let snap = rest(addr, path).await;
    let last = snap["lastUpdateId"].as_u64().unwrap();
    assert!(
        last + 1 >= depth[0]["U"].as_u64().unwrap(),
        "snapshot older than the stream"
    );
    assert_eq!(snap["bids"].as_array().unwrap().len(), data::BOOK_LEVELS);
    let mut book = Book::from_snapshot(&snap);
    let mut prev_u: Option<u64> = None;
    let mut checks = 0;
    let mut target = None;
    let started = Instant::now();
    let mut idx = 0;
    while checks < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no exact snapshot match"
        );
        if idx == depth.len() {
            let m = next_json(&mut ws, wait).await.unwrap();
            let d = m["data"].clone();
            if m["stream"] == "btcusdt@bookTicker" {
                tickers += 1;
                continue;
            }
            depth.push(d);
        }
        let ev = depth[idx].clone();
        idx += 1;
        let (big_u, u) = (ev["U"].as_u64().unwrap(), ev["u"].as_u64().unwrap());
        if u <= last {
            continue;
        }
        match prev_u {
            None => assert!(
                big_u <= last + 1 && last < u,
                "first event straddles the snapshot"
            ),
            Some(p) => assert_eq!(big_u, p + 1, "contiguous update ids"),
        }
        prev_u = Some(u);
        book.apply(&ev);
        // Compare with a later snapshot whenever the stream reaches its update id.
        let later: &Value = match &target {
            Some(t) => t,
            None => {
                tokio::time::sleep(Duration::from_millis(150)).await;
                target = Some(rest(addr, path).await);
                continue;
            }
        };
        let id = later["lastUpdateId"].as_u64().unwrap();
        if u == id {
            assert_eq!(book, Book::from_snapshot(later), "book at update {id}");
            checks += 1;
            target = None;
        } else if u > id {
            // The event spans the snapshot's id (several slots in one event): try another.
            target = None;
        }
    }
    assert!(tickers > 0);
    server.shutdown().await;
}

#[tokio::test]
async fn book_ticker_shows_the_best_levels_of_the_book() {
    let server = busy(WsFaults::default()).await;
    let mut ws = connect(&server, "/ws/ethbtc@bookTicker").await;
    let t = next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
    let book = data::order_book("ETHBTC", t_of_update(&t));
    assert_eq!(t["u"].as_u64().unwrap(), book.last_update_id);
    assert_eq!(t["b"].as_str().unwrap(), book.bids[0].0);
    assert_eq!(t["B"].as_str().unwrap(), book.bids[0].1);
    assert_eq!(t["a"].as_str().unwrap(), book.asks[0].0);
    assert_eq!(t["A"].as_str().unwrap(), book.asks[0].1);
    server.shutdown().await;
}

/// A time inside the book slot whose last update id is the ticker's `u` (slot `s` since the
/// epoch ends with update id `3s + 0..=2`).
fn t_of_update(t: &Value) -> i64 {
    let u = t["u"].as_u64().unwrap() as i64;
    let at = u / 3 * data::BOOK_SLOT_MS;
    assert_eq!(data::order_book("ETHBTC", at).last_update_id, u as u64);
    at
}

#[tokio::test]
async fn pings_are_sent_and_an_unanswered_ping_closes_the_connection() {
    let server = start(SimConfig {
        ws: WsFaults {
            ping_interval: Duration::from_millis(200),
            pong_timeout: Duration::from_millis(500),
            ..WsFaults::default()
        },
        ..SimConfig::default()
    })
    .await;
    // A client that reads answers every ping (tungstenite echoes the payload) and stays.
    let mut alive = connect(&server, "/ws").await;
    // One that does not read answers nothing.
    let mut deaf = connect(&server, "/ws").await;
    let e = read_to_end(&mut alive, Duration::from_millis(1300)).await;
    assert!(e.still_open && e.pings >= 4, "{e:?}");
    // Client pings get pongs with the same payload.
    alive.send(Message::Ping("hello".into())).await.unwrap();
    let pong = loop {
        match alive.next().await.unwrap().unwrap() {
            Message::Pong(p) => break p,
            _ => continue,
        }
    };
    assert_eq!(&pong[..], b"hello");
    let stats = server.stats();
    assert_eq!(stats.ws_pong_timeouts, 1, "{stats:?}");
    assert!(
        stats.ws_pings_sent >= 6 && stats.ws_pongs_received >= 4,
        "{stats:?}"
    );
    let e = read_to_end(&mut deaf, Duration::from_secs(2)).await;
    assert!(e.pings >= 1 && !e.still_open, "{e:?}");
    assert_eq!(
        e.close.as_ref().map(|c| c.0),
        Some(CloseCode::Policy),
        "{e:?}"
    );
    eventually("the deaf connection is closed", || {
        server.stats().ws_connections_open == 1
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn connections_are_rotated_at_their_maximum_lifetime() {
    let server = busy(WsFaults {
        max_lifetime: Duration::from_millis(700),
        ..WsFaults::default()
    })
    .await;
    let t0 = Instant::now();
    let mut ws = connect(&server, "/ws/btcusdt@aggTrade").await;
    let e = read_to_end(&mut ws, Duration::from_secs(3)).await;
    let lived = t0.elapsed();
    assert!(
        lived >= Duration::from_millis(650) && lived < Duration::from_millis(1500),
        "{lived:?}"
    );
    assert!(!e.texts.is_empty());
    assert_eq!(e.close.map(|c| c.0), Some(CloseCode::Away));
    assert_eq!(server.stats().ws_lifetime_closes, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn server_shutdown_is_announced_before_the_close() {
    let server = busy(WsFaults {
        shutdown_grace: Duration::from_millis(300),
        ..WsFaults::default()
    })
    .await;
    let mut raw = connect(&server, "/ws/btcusdt@aggTrade").await;
    let mut comb = connect(&server, "/stream?streams=btcusdt@aggTrade").await;
    next_json(&mut raw, Duration::from_secs(2)).await.unwrap();
    next_json(&mut comb, Duration::from_secs(2)).await.unwrap();
    let t0 = Instant::now();
    assert_eq!(server.send_server_shutdown(), 2);
    let e = read_to_end(&mut raw, Duration::from_secs(3)).await;
    let notice = e
        .texts
        .iter()
        .position(|v| v["e"] == "serverShutdown")
        .expect("serverShutdown event");
    assert_eq!(keys(&e.texts[notice]), vec!["E", "e"]);
    assert!(e.texts[notice]["E"].as_i64().unwrap() > 0);
    assert_eq!(e.close.map(|c| c.0), Some(CloseCode::Away));
    assert!(t0.elapsed() >= Duration::from_millis(280));
    let e = read_to_end(&mut comb, Duration::from_secs(3)).await;
    let notice = e
        .texts
        .iter()
        .find(|v| v["stream"] == "!serverShutdown")
        .expect("combined serverShutdown");
    assert_eq!(notice["data"]["e"], "serverShutdown");
    assert!(e.close.is_some());
    assert_eq!(server.stats().ws_shutdown_notices, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn forced_disconnects_close_without_a_close_frame() {
    let server = busy(WsFaults::default()).await;
    let mut a = connect(&server, "/ws/btcusdt@trade").await;
    let mut b = connect(&server, "/stream?streams=ethusdt@trade").await;
    next_json(&mut a, Duration::from_secs(2)).await.unwrap();
    next_json(&mut b, Duration::from_secs(2)).await.unwrap();
    assert_eq!(server.disconnect_all(), 2);
    for ws in [&mut a, &mut b] {
        let e = read_to_end(ws, Duration::from_secs(2)).await;
        assert!(e.reset && e.close.is_none() && !e.still_open, "{e:?}");
    }
    assert_eq!(server.stats().ws_forced_disconnects, 2);
    // The knob: every connection dropped that long after it opened.
    server.set_ws_faults(WsFaults {
        drop_every: Some(Duration::from_millis(300)),
        ..WsFaults::default()
    });
    let t0 = Instant::now();
    let mut c = connect(&server, "/ws/btcusdt@trade").await;
    let e = read_to_end(&mut c, Duration::from_secs(2)).await;
    assert!(e.reset && !e.texts.is_empty(), "{e:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(server.stats().ws_forced_disconnects, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn stalled_connections_send_nothing_but_stay_open() {
    let server = busy(WsFaults {
        ping_interval: Duration::from_millis(100),
        ..WsFaults::default()
    })
    .await;
    let mut ws = connect(&server, "/ws/btcusdt@trade").await;
    next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(server.stall_all(), 1);
    // Drain what was in flight, then silence: no data, no pings, no close.
    let _ = read_to_end(&mut ws, Duration::from_millis(200)).await;
    let e = read_to_end(&mut ws, Duration::from_millis(800)).await;
    assert!(e.still_open && e.texts.is_empty() && e.pings == 0, "{e:?}");
    // Not even pongs.
    ws.send(Message::Ping("x".into())).await.unwrap();
    let e = read_to_end(&mut ws, Duration::from_millis(300)).await;
    assert!(e.still_open && e.texts.is_empty(), "{e:?}");
    let stats = server.stats();
    assert_eq!((stats.ws_stalled, stats.ws_connections_open), (1, 1));
    // New connections are not affected; the client ends the stalled one.
    let mut fresh = connect(&server, "/ws/btcusdt@trade").await;
    assert!(next_json(&mut fresh, Duration::from_secs(2))
        .await
        .is_some());
    drop(ws);
    // The knob: connections go silent some time after they open.
    server.set_ws_faults(WsFaults {
        ping_interval: Duration::from_millis(100),
        stall_after: Some(Duration::from_millis(300)),
        ..WsFaults::default()
    });
    let mut late = connect(&server, "/ws/btcusdt@trade").await;
    let before = read_to_end(&mut late, Duration::from_millis(250)).await;
    assert!(!before.texts.is_empty());
    let _ = read_to_end(&mut late, Duration::from_millis(200)).await;
    let after = read_to_end(&mut late, Duration::from_millis(500)).await;
    assert!(
        after.still_open && after.texts.is_empty() && after.pings == 0,
        "{after:?}"
    );
    drop(late);
    drop(fresh);
    eventually("every connection is closed", || {
        server.stats().ws_connections_open == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn depth_gap_knob_breaks_the_sequence() {
    let server = busy(WsFaults {
        depth_gap_every: 4,
        ..WsFaults::default()
    })
    .await;
    let mut ws = connect(&server, "/ws/btcusdt@depth@100ms").await;
    let events = collect(&mut ws, Duration::from_millis(1500)).await;
    assert!(events.len() >= 8, "{}", events.len());
    let ids: Vec<(u64, u64)> = events
        .iter()
        .map(|e| (e["U"].as_u64().unwrap(), e["u"].as_u64().unwrap()))
        .collect();
    let gaps = ids.windows(2).filter(|w| w[1].0 > w[0].1 + 1).count();
    assert!(gaps >= 2, "{ids:?}");
    assert!(ids.windows(2).all(|w| w[1].0 > w[0].1), "{ids:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn more_than_five_messages_a_second_disconnects() {
    let server = start(SimConfig::default()).await;
    let mut ws = connect(&server, "/ws").await;
    // Five are fine.
    for id in 0..5 {
        send_json(
            &mut ws,
            serde_json::json!({"method":"LIST_SUBSCRIPTIONS","id":id}),
        )
        .await;
    }
    for _ in 0..5 {
        assert!(next_json(&mut ws, Duration::from_secs(1)).await.is_some());
    }
    server.clock().advance(Duration::from_millis(1_050));
    for _ in 0..6 {
        ws.send(Message::Ping("p".into())).await.unwrap();
    }
    let e = read_to_end(&mut ws, Duration::from_secs(2)).await;
    assert_eq!(
        e.close.as_ref().map(|c| c.0),
        Some(CloseCode::Policy),
        "{e:?}"
    );
    assert_eq!(server.stats().ws_rate_limit_closes, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn stream_limits_and_bad_names() {
    let server = start(SimConfig {
        ws: WsFaults {
            max_streams: 3,
            ..WsFaults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let url = |p: &str| format!("{}{p}", server.ws_url());
    for path in [
        "/stream?streams=btcusdt@trade/ethusdt@trade/bnbusdt@trade/solusdt@trade",
        "/ws/BTCUSDT@trade",
        "/ws/btcusdt@kline_7m",
        "/ws/xyz@trade",
    ] {
        match connect_async(url(path)).await {
            Err(WsError::Http(resp)) => assert_eq!(resp.status(), 400, "{path}"),
            other => panic!("{path}: {:?}", other.map(|_| ())),
        }
    }
    let mut ws = connect(&server, "/stream?streams=btcusdt@trade/ethusdt@trade").await;
    send_json(
        &mut ws,
        serde_json::json!({"method":"SUBSCRIBE","params":["bnbusdt@trade","solusdt@trade"],"id":7}),
    )
    .await;
    let r = loop {
        let m = next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
        if m.get("id").is_some() {
            break m;
        }
    };
    assert_eq!(r["code"], 2, "{r}");
    assert_eq!(server.stats().ws_connection_attempts_rejected, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_attempts_over_the_limit_get_429() {
    let server = start(SimConfig {
        ws: WsFaults {
            max_connections_per_window: 3,
            connection_window: Duration::from_millis(1000),
            ..WsFaults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let url = format!("{}/ws/btcusdt@trade", server.ws_url());
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect_async(&url).await.unwrap().0);
    }
    match connect_async(&url).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            assert!(resp.headers().get("retry-after").is_some());
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(server.stats().ws_connection_attempts_rejected, 1);
    server.clock().advance(Duration::from_millis(1_050));
    assert!(connect_async(&url).await.is_ok());
    assert_eq!(server.stats().ws_connections_opened, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn sim_ws_endpoint_reads_and_changes_the_knobs() {
    let server = start(SimConfig::default()).await;
    let addr = server.local_addr();
    let v = rest(addr, "/sim/ws").await;
    assert_eq!(v["ping_interval_ms"], 20_000);
    assert_eq!(v["max_connections_per_window"], 300);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = r#"{"depth_gap_every":5,"stall_after_ms":1500}"#;
    let req = format!(
        "POST /sim/ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let f = server.ws_faults();
    assert_eq!(f.depth_gap_every, 5);
    assert_eq!(f.stall_after, Some(Duration::from_millis(1500)));
    assert_eq!(f.ping_interval, Duration::from_secs(20));
    let mut ws = connect(&server, "/ws").await;
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"LIST_SUBSCRIPTIONS","id":1}),
    )
    .await;
    assert_eq!(r["result"], serde_json::json!([]));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /sim/ws/disconnect HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.ends_with("{\"connections\":1}"), "{raw}");
    assert!(read_to_end(&mut ws, Duration::from_secs(2)).await.reset);
    server.shutdown().await;
}
