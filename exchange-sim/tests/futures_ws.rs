//! End-to-end tests of the futures WebSocket streams (`/usdm/…`, `/coinm/…`) with real
//! tokio-tungstenite clients on loopback: legacy and routed (`/public`, `/market`) endpoints
//! (USD-M's retired unrouted one delivering book streams only),
//! futures event shapes, consistency with the futures REST endpoints and the public `data`
//! functions (aggregate trades, mark prices and funding, liquidations, the order book synced by
//! the futures `pu` rule), and the futures connection behaviours and faults.

mod common;

use common::{collect, keys, next_json, now_ms, reply, rest, sorted, start, Client};
use std::time::Duration;

use exchange_sim::data::{self, SimMarket};
use exchange_sim::{SimConfig, SimServer, WsFaults};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const HOUR: i64 = 3_600_000;

/// A server whose symbols trade every few milliseconds.
async fn busy(futures_ws: WsFaults) -> SimServer {
    start(SimConfig {
        agg_trade_spacing_ms: 5,
        futures_ws,
        ..SimConfig::default()
    })
    .await
}

async fn connect(url: &str) -> Client {
    connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .0
}

/// The HTTP status a refused upgrade got.
async fn refused(url: &str) -> u16 {
    match connect_async(url).await {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("{url}: {other}"),
        Ok(_) => panic!("{url} was accepted"),
    }
}

/// Waits for the next message that `pick` accepts (other messages are dropped).
async fn wait_for(ws: &mut Client, within: Duration, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline - tokio::time::Instant::now();
        let v = next_json(ws, left)
            .await
            .expect("the expected message in time");
        if pick(&v) {
            return v;
        }
    }
}

/// Whether the connection ends (close frame, TCP close or error) within `within`, whatever
/// was still buffered.
async fn ends(ws: &mut Client, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn routed_and_legacy_endpoints_serve_futures_shapes() {
    let server = busy(WsFaults::futures()).await;
    let fws = server.fws_url();
    let dws = server.dws_url();
    assert_eq!(server.futures_ws_faults(), WsFaults::futures());

    let mut market = connect(&format!(
        "{fws}/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s/btcusdt@kline_1m"
    ))
    .await;
    let mut seen = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.len() < 3 && tokio::time::Instant::now() < deadline {
        let v = next_json(&mut market, Duration::from_secs(3))
            .await
            .unwrap();
        seen.insert(v["stream"].as_str().unwrap().to_string(), v["data"].clone());
    }
    assert_eq!(
        keys(&seen["btcusdt@aggTrade"]),
        sorted(&["e", "E", "s", "a", "p", "q", "f", "l", "T", "m"])
    );
    assert_eq!(
        keys(&seen["btcusdt@markPrice@1s"]),
        sorted(&["e", "E", "s", "p", "i", "P", "r", "T"])
    );
    assert_eq!(seen["btcusdt@markPrice@1s"]["e"], "markPriceUpdate");
    assert_eq!(seen["btcusdt@kline_1m"]["k"]["i"], "1m");

    let mut public = connect(&format!(
        "{fws}/public/stream?streams=ethusdt@depth@100ms/ethusdt@bookTicker"
    ))
    .await;
    let depth = wait_for(&mut public, Duration::from_secs(3), |v| {
        v["stream"] == "ethusdt@depth@100ms"
    })
    .await;
    assert_eq!(
        keys(&depth["data"]),
        sorted(&["e", "E", "T", "s", "U", "u", "pu", "b", "a"])
    );
    let ticker = wait_for(&mut public, Duration::from_secs(3), |v| {
        v["stream"] == "ethusdt@bookTicker"
    })
    .await;
    assert_eq!(
        keys(&ticker["data"]),
        sorted(&["e", "u", "E", "T", "s", "b", "B", "a", "A"])
    );
    // A stream on the wrong route, or one futures do not have: refused.
    assert_eq!(
        refused(&format!("{fws}/public/ws/btcusdt@aggTrade")).await,
        400
    );
    assert_eq!(
        refused(&format!("{fws}/market/ws/btcusdt@depth")).await,
        400
    );
    assert_eq!(refused(&format!("{fws}/ws/btcusdt@trade")).await, 400);
    assert_eq!(refused(&format!("{fws}/ws/btcusdt@kline_1s")).await, 400);
    assert_eq!(refused(&format!("{dws}/ws/btcusdt@aggTrade")).await, 400);
    // COIN-M has no routed endpoints.
    assert_eq!(
        refused(&format!("{dws}/market/ws/btcusd_perp@aggTrade")).await,
        404
    );
    assert_eq!(
        refused(&format!("{}/ws/btcusdt@markPrice", server.ws_url())).await,
        400
    );
    let r = reply(
        &mut public,
        serde_json::json!({"method":"SUBSCRIBE","params":["ethusdt@aggTrade"],"id":7}),
    )
    .await;
    assert_eq!(r["id"], 7);
    assert_eq!(r["error"]["code"], 2);
    let r = reply(
        &mut public,
        serde_json::json!({"method":"SUBSCRIBE","params":["btcusdt@depth@500ms"],"id":8}),
    )
    .await;
    assert_eq!(r, serde_json::json!({"result":null,"id":8}));

    // USD-M's retired unrouted endpoint accepts every stream but delivers only book streams:
    // while 20 book tickers arrive, not one of the aggregate trades (4 a second) does.
    let mut retired = connect(&format!(
        "{fws}/stream?streams=btcusdt@aggTrade/btcusdt@bookTicker"
    ))
    .await;
    let mut tickers = 0;
    while tickers < 20 {
        let v = next_json(&mut retired, Duration::from_secs(5))
            .await
            .expect("book tickers keep coming");
        assert_eq!(v["stream"], "btcusdt@bookTicker", "{v}");
        tickers += 1;
    }

    // Legacy endpoints serve everything; COIN-M symbols have an underscore.
    let mut legacy = connect(&format!("{dws}/ws/btcusd_perp@aggTrade")).await;
    let a = next_json(&mut legacy, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(a["s"], "BTCUSD_PERP");
    let t = server
        .data()
        .trade_in(SimMarket::CoinM, "BTCUSD_PERP", a["a"].as_u64().unwrap())
        .unwrap();
    assert_eq!(
        a["q"].as_str().unwrap(),
        t.qty,
        "COIN-M stream trades are REST's (contracts)"
    );
    assert_eq!(
        (a["p"].as_str().unwrap(), a["T"].as_i64().unwrap()),
        (t.price.as_str(), t.time)
    );
    let stats = server.stats();
    assert!(stats.ws_connections_open >= 3);
    assert!(stats.ws_connection_attempts_rejected >= 6);
    server.shutdown().await;
}

#[tokio::test]
async fn agg_trades_and_mark_prices_match_rest() {
    let server = busy(WsFaults::futures()).await;
    let fapi = server.fapi_url();
    let path = |url: &str| url.strip_prefix(&server.base_url()).unwrap().to_string();
    let mut ws = connect(&format!(
        "{}/market/stream?streams=ethusdt@aggTrade/ethusdt@markPrice",
        server.fws_url()
    ))
    .await;
    let mut trades = Vec::new();
    let mut marks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while marks.len() < 2 && tokio::time::Instant::now() < deadline {
        let v = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
        match v["stream"].as_str().unwrap() {
            "ethusdt@aggTrade" => trades.push(v["data"].clone()),
            _ => marks.push(v["data"].clone()),
        }
    }
    assert!(trades.len() > 10);
    let ids: Vec<u64> = trades.iter().map(|t| t["a"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
    let first = ids[0];
    let rows = rest(
        server.local_addr(),
        &path(&format!(
            "{fapi}/fapi/v1/aggTrades?symbol=ETHUSDT&fromId={first}&limit=5"
        )),
    )
    .await;
    for (row, ev) in rows.as_array().unwrap().iter().zip(&trades) {
        for k in ["a", "p", "q", "f", "l", "T", "m"] {
            assert_eq!(row[k], ev[k], "{k}");
        }
    }
    // markPrice every 3 s on 3-second boundaries, values from the data functions.
    assert_eq!(marks.len(), 2);
    for m in &marks {
        let e = m["E"].as_i64().unwrap();
        assert_eq!(e % 3000, 0);
        assert_eq!(
            m["p"].as_str().unwrap(),
            data::mark_price(SimMarket::UsdM, "ETHUSDT", e)
        );
        assert_eq!(
            m["i"].as_str().unwrap(),
            data::index_price(SimMarket::UsdM, "ETHUSDT", e)
        );
        let f = data::funding_rate(SimMarket::UsdM, "ETHUSDT", e);
        assert_eq!(m["r"].as_str().unwrap(), f.funding_rate);
        let next = m["T"].as_i64().unwrap();
        assert_eq!(next % (8 * HOUR), 0);
        assert!(next > e && next - e <= 8 * HOUR);
        assert_eq!(
            f.funding_time / 10,
            next / 10,
            "T is the funding's 8-hour mark"
        );
    }
    assert_eq!(
        marks[1]["E"].as_i64().unwrap() - marks[0]["E"].as_i64().unwrap(),
        3000
    );
    // The closed markPriceKlines candle closes at the mark of its last second.
    let e = marks[0]["E"].as_i64().unwrap();
    let open = e - e % 60_000;
    let rows = rest(
        server.local_addr(),
        &path(&format!(
            "{fapi}/fapi/v1/markPriceKlines?symbol=ETHUSDT&interval=1m&startTime={}&limit=1",
            open - 60_000
        )),
    )
    .await;
    assert_eq!(
        rows[0][4].as_str().unwrap(),
        data::mark_price(SimMarket::UsdM, "ETHUSDT", open - 1)
    );
    server.shutdown().await;
}

fn units(s: &str) -> i64 {
    let (w, f) = s.split_once('.').unwrap();
    w.parse::<i64>().unwrap() * 100_000_000 + f.parse::<i64>().unwrap()
}

/// A local book, applying futures diff events.
#[derive(Debug, PartialEq)]
struct Book {
    bids: std::collections::BTreeMap<i64, i64>,
    asks: std::collections::BTreeMap<i64, i64>,
}

impl Book {
    fn from_levels(bids: &[(String, String)], asks: &[(String, String)]) -> Book {
        let side = |l: &[(String, String)]| l.iter().map(|(p, q)| (units(p), units(q))).collect();
        Book {
            bids: side(bids),
            asks: side(asks),
        }
    }

    fn from_snapshot(v: &Value) -> Book {
        let side = |key: &str| {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (units(l[0].as_str().unwrap()), units(l[1].as_str().unwrap())))
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
                let (p, q) = (units(l[0].as_str().unwrap()), units(l[1].as_str().unwrap()));
                if q == 0 {
                    side.remove(&p);
                } else {
                    side.insert(p, q);
                }
            }
        }
    }
}

#[tokio::test]
async fn depth_events_sync_by_the_futures_rule() {
    let server = busy(WsFaults::futures()).await;
    let mut ws = connect(&format!(
        "{}/public/ws/bnbusdt@depth@100ms",
        server.fws_url()
    ))
    .await;
    let mut buffered = Vec::new();
    // Buffer a little, then take the snapshot (1000 levels: the whole book).
    for _ in 0..3 {
        buffered.push(next_json(&mut ws, Duration::from_secs(2)).await.unwrap());
    }
    let snap = rest(
        server.local_addr(),
        "/usdm/fapi/v1/depth?symbol=BNBUSDT&limit=1000",
    )
    .await;
    let last = snap["lastUpdateId"].as_u64().unwrap();
    let mut book = Book::from_snapshot(&snap);
    let mut prev_u: Option<u64> = None;
    let mut applied = 0;
    let mut jumps = 0;
    while applied < 15 {
        let ev = if buffered.is_empty() {
            next_json(&mut ws, Duration::from_secs(2)).await.unwrap()
        } else {
            buffered.remove(0)
        };
        let (big_u, u, pu) = (
            ev["U"].as_u64().unwrap(),
            ev["u"].as_u64().unwrap(),
            ev["pu"].as_u64().unwrap(),
        );
        if u < last {
            continue;
        }
        match prev_u {
            None => assert!(
                big_u <= last && last <= u,
                "first event straddles the snapshot"
            ),
            Some(p) => {
                assert_eq!(pu, p, "pu chains the events");
                jumps += usize::from(big_u > p + 1);
            }
        }
        book.apply(&ev);
        prev_u = Some(u);
        applied += 1;
        if applied == 15 {
            let t = ev["E"].as_i64().unwrap();
            let expect = data::order_book_in(SimMarket::UsdM, "BNBUSDT", t);
            assert_eq!(expect.last_update_id, u);
            assert_eq!(book, Book::from_levels(&expect.bids, &expect.asks));
        }
    }
    assert!(jumps >= 10, "futures ids are not contiguous between events");

    // The gap fault swallows events: `pu` no longer matches.
    let mut f = WsFaults::futures();
    f.depth_gap_every = 3;
    server.set_futures_ws_faults(f);
    let evs = collect(&mut ws, Duration::from_millis(1500)).await;
    let breaks = evs.windows(2).filter(|w| w[1]["pu"] != w[0]["u"]).count();
    assert!(breaks >= 2, "{breaks} breaks in {} events", evs.len());
    server.shutdown().await;
}

#[tokio::test]
async fn liquidations_are_the_data_functions() {
    let server = busy(WsFaults::futures()).await;
    let clock = server.clock();
    let t0 = clock.now_ms();
    let mut all = connect(&format!("{}/market/ws/!forceOrder@arr", server.fws_url())).await;
    let mut one = connect(&format!("{}/ws/ethusd_perp@forceOrder", server.dws_url())).await;
    // Ten minutes of the schedule at once: what they hold is sent at the next tick.
    clock.advance(Duration::from_secs(600));
    let (a, b) = tokio::join!(
        collect(&mut all, Duration::from_secs(1)),
        collect(&mut one, Duration::from_secs(1))
    );
    let t1 = clock.now_ms();
    let check = |events: &[Value], market: SimMarket| {
        for ev in events {
            assert_eq!(ev["e"], "forceOrder");
            let o = &ev["o"];
            assert_eq!(
                keys(o),
                sorted(&["s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"])
            );
            let t = o["T"].as_i64().unwrap();
            let sym = o["s"].as_str().unwrap();
            let l = data::liquidations(market, sym, t, t);
            assert_eq!(l.len(), 1, "{ev}");
            assert_eq!(
                (
                    o["S"].as_str().unwrap(),
                    o["q"].as_str().unwrap(),
                    o["p"].as_str().unwrap()
                ),
                (l[0].side, l[0].qty.as_str(), l[0].price.as_str())
            );
            assert_eq!(
                (o["o"].as_str(), o["f"].as_str(), o["X"].as_str()),
                (Some("LIMIT"), Some("IOC"), Some("FILLED"))
            );
        }
    };
    check(&a, SimMarket::UsdM);
    check(&b, SimMarket::CoinM);
    // Everything that happened well inside the window arrived.
    let inner = (t0 + 1_000, t1 - 1_000);
    let mut expect = 0;
    for sym in SimMarket::UsdM.listed_symbols() {
        expect += data::liquidations(SimMarket::UsdM, &sym, inner.0, inner.1).len();
    }
    let got = a
        .iter()
        .filter(|e| (inner.0..=inner.1).contains(&e["o"]["T"].as_i64().unwrap()))
        .count();
    assert!(expect > 0, "ten minutes of the schedule hold liquidations");
    assert_eq!(got, expect);
    let expect = data::liquidations(SimMarket::CoinM, "ETHUSD_PERP", inner.0, inner.1).len();
    let got = b
        .iter()
        .filter(|e| (inner.0..=inner.1).contains(&e["o"]["T"].as_i64().unwrap()))
        .count();
    assert_eq!(got, expect);
    server.shutdown().await;
}

#[tokio::test]
async fn futures_connection_limits_and_faults() {
    let server = busy(WsFaults {
        ping_interval: Duration::from_millis(100),
        ..WsFaults::futures()
    })
    .await;
    let fws = server.fws_url();
    // 1024 streams a connection on USDⓈ-M (any USDT-quoted symbol is served; liquidations are
    // quiet), 200 on COIN-M.
    let names: Vec<String> = (0..1025).map(|i| format!("c{i}usdt@forceOrder")).collect();
    assert_eq!(
        refused(&format!("{fws}/market/stream?streams={}", names.join("/"))).await,
        400
    );
    let mut ws = connect(&format!(
        "{fws}/market/stream?streams={}",
        names[..1024].join("/")
    ))
    .await;
    let r = reply(
        &mut ws,
        serde_json::json!({"method":"SUBSCRIBE","params":[names[1024]],"id":1}),
    )
    .await;
    assert_eq!(r["error"]["code"], 2, "{r}");
    drop(ws);
    // COIN-M keeps 200 (its 8 perpetuals have fewer distinct streams than that to connect with).
    let f = WsFaults::futures();
    assert_eq!(
        (
            f.max_streams_in(SimMarket::UsdM),
            f.max_streams_in(SimMarket::CoinM)
        ),
        (1024, 200)
    );

    // Server pings at the futures interval; spot connections keep spot's (20 s).
    let mut fut = connect(&format!("{fws}/market/ws/btcusdt@markPrice@1s")).await;
    let mut spot = connect(&format!("{}/ws/btcusdt@aggTrade", server.ws_url())).await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while pings < 3 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_secs(1), fut.next()).await
        {
            pings += 1;
        }
    }
    assert!(pings >= 3);
    // 10 incoming messages a second are fine, the 11th closes the connection.
    for i in 0..10 {
        let r = reply(
            &mut fut,
            serde_json::json!({"method":"LIST_SUBSCRIPTIONS","id":i}),
        )
        .await;
        assert_eq!(r["result"][0], "btcusdt@markPrice@1s");
    }
    fut.send(Message::text(
        "{\"method\":\"LIST_SUBSCRIPTIONS\",\"id\":99}",
    ))
    .await
    .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), fut.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break true,
            Ok(Some(Ok(_))) => {}
            Err(_) => break false,
        }
    };
    assert!(closed);
    // disconnect_all reaches futures connections too.
    let mut fut = connect(&format!("{}/ws/bnbusd_perp@bookTicker", server.dws_url())).await;
    assert!(next_json(&mut fut, Duration::from_secs(2)).await.is_some());
    let n = server.disconnect_all();
    assert!(n >= 2, "{n}");
    assert!(ends(&mut fut, Duration::from_secs(3)).await);
    assert!(ends(&mut spot, Duration::from_secs(3)).await);
    // /sim/futures_ws reads and changes the futures knobs only.
    let v = rest(server.local_addr(), "/sim/futures_ws").await;
    assert_eq!(v["max_streams"], 1024);
    assert_eq!(v["max_incoming_per_sec"], 10);
    assert_eq!(server.ws_faults(), WsFaults::default());
    server.shutdown().await;
}

/// A lagging connection (`lag_all`, `/sim/ws/lag`) delivers everything late but in order and
/// complete, its `serverShutdown` notice and close frame after what it held; connections opened
/// later are on time, so a client that switches to one is ahead of the old one.
#[tokio::test]
async fn a_lagging_connection_delivers_late_in_order_and_complete() {
    let server = busy(WsFaults {
        shutdown_grace: Duration::from_secs(3),
        ..WsFaults::futures()
    })
    .await;
    let url = format!("{}/market/ws/btcusdt@markPrice@1s", server.fws_url());
    let mut old = connect(&url).await;
    let first = wait_for(&mut old, Duration::from_secs(3), |v| {
        v["e"] == "markPriceUpdate"
    })
    .await;
    let lag = Duration::from_millis(1500);
    let r = common::request(server.local_addr(), "POST", "/sim/ws/lag?ms=1500", &[]).await;
    assert_eq!(r.json()["connections"], 1, "{}", r.text());
    // Events stamped after this were made after the lag was set.
    let lagged_from = now_ms();
    assert_eq!(
        common::request(server.local_addr(), "POST", "/sim/ws/lag?ms=x", &[])
            .await
            .status,
        400
    );
    // Every second, in order, each no earlier than its lag allows.
    let mut last = first["E"].as_i64().unwrap();
    let mut check = |v: &Value| {
        let e = v["E"].as_i64().unwrap();
        assert_eq!(e, last + 1000, "in order, none lost");
        last = e;
        if e > lagged_from {
            assert!(now_ms() >= e + lag.as_millis() as i64, "held for the lag");
        }
        e
    };
    // Once the lag shows, a fresh connection is ahead of the old one.
    loop {
        let v = wait_for(&mut old, Duration::from_secs(5), |v| {
            v["e"] == "markPriceUpdate"
        })
        .await;
        if check(&v) > lagged_from {
            break;
        }
    }
    let mut fresh = connect(&url).await;
    let fresh_first = wait_for(&mut fresh, Duration::from_secs(3), |v| {
        v["e"] == "markPriceUpdate"
    })
    .await;
    assert_eq!(server.send_server_shutdown(), 2);
    // The old connection goes on, the notice among its events, the close after the last.
    let mut behind = false;
    let mut notice = false;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), old.next())
            .await
            .expect("the old connection ends");
        let v: Value = match msg {
            Some(Ok(Message::Text(t))) => serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("{e}"),
        };
        if v["e"] == "serverShutdown" {
            notice = true;
            continue;
        }
        behind |= check(&v) < fresh_first["E"].as_i64().unwrap();
    }
    assert!(notice, "the notice arrives");
    assert!(
        behind,
        "the old connection still delivered what the fresh one never had"
    );
    drop(fresh);
    server.shutdown().await;
}
