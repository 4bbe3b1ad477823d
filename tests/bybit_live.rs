//! Bybit's live types (`EXCHANGE=bybit`, `ws_*`) end to end: the real binary streams from the
//! simulator's Bybit WebSocket into the real broker. Trades come through a dropped connection
//! exactly once, keyed as the archive keys them (the gap is backfilled from recent-trade), and
//! `verify` passes against the archive once the day is published; closed candles equal REST's
//! (one missed before the stream started is backfilled); the best bid and ask and the order
//! book are published once per update, and a book restart (update id 1) is followed.

mod support;

use std::time::Duration;

use exchange_sim::bybit::BybitCategory;
use exchange_sim::bybit_archive;
use exchange_sim::{SimConfig, SimServer};
use serde_json::Value;
use support::broker::Broker;
use support::loader::{
    fresh_topic, live_range_after, published, read_records, run_loader_async, verify_topic,
    wait_until, with, Run,
};

const DAY: i64 = 86_400_000;
/// `time_rank`'s ordinals per millisecond.
const PER_MS: i64 = 1_000_000;

fn env(
    sim: &SimServer,
    topic: &str,
    market: &str,
    symbol: &str,
    ty: &str,
    range: (i64, i64),
) -> Vec<(&'static str, String)> {
    vec![
        ("EXCHANGE", "bybit".into()),
        ("MARKET", market.into()),
        ("SYMBOL", symbol.into()),
        ("TYPE", ty.into()),
        ("TIME_RANGE", format!("{}:{}", range.0, range.1)),
        ("KAFKA_TOPIC", topic.into()),
        ("KAFKA_BOOTSTRAP_SERVERS", Broker::shared().bootstrap()),
        ("BYBIT_API_URL", sim.bybit_url()),
        ("BYBIT_WS_URL", sim.bybit_ws_url()),
        ("QUEUE_ID", format!("test-{topic}")),
        ("METRICS_PORT", "0".into()),
        ("WS_IDLE_TIMEOUT", "3".into()),
    ]
}

fn key_prefix(market: &str) -> String {
    format!("bybit_{market}_")
}

/// The `_key`s the archive's trades of `[range.0, range.1)` get: each trade's millisecond and
/// its rank among that millisecond's trades.
fn archive_keys(
    category: BybitCategory,
    market: &str,
    symbol: &str,
    range: (i64, i64),
) -> Vec<String> {
    let trades = bybit_archive::trades_between(
        &SimConfig::default().data(),
        category,
        symbol,
        range.0,
        range.1 - 1,
    )
    .expect("a listed symbol");
    let mut keys = Vec::with_capacity(trades.len());
    let mut last: Option<(i64, i64)> = None;
    for t in &trades {
        let rank = match last {
            Some((ms, r)) if ms == t.time_ms => r + 1,
            _ => 0,
        };
        last = Some((t.time_ms, rank));
        keys.push(format!(
            "{}{symbol}_trade_{}",
            key_prefix(market),
            t.time_ms * PER_MS + rank
        ));
    }
    keys
}

fn keys(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["_key"].as_str().expect("a _key").to_string())
        .collect()
}

fn assert_ok(run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "loader failed:\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bybit_trades_stream_exactly_once_through_a_dropped_connection_and_verify() {
    let sim = support::sim(SimConfig::default()).await;
    let topic = fresh_topic("bybit-ws-trades");
    let now = sim.clock().now_ms();
    // The range starts before the loader connects: its first seconds come from recent-trade.
    // It ends well after: a loader slow to start on a busy machine still meets the faults
    // below mid-range.
    let range = (now / 1000 * 1000 - 2_000, now / 1000 * 1000 + 16_000);
    let handle = tokio::spawn(run_loader_async(
        env(&sim, &topic, "linear", "BTCUSDT", "ws_trades", range),
        vec![],
    ));
    wait_until("trades streamed", Duration::from_secs(20), || {
        sim.bybit_ws_stats().messages_sent > 20 && published(&topic) > 0
    })
    .await;
    let recent_before = sim
        .stats()
        .bybit
        .per_endpoint
        .get("/v5/market/recent-trade")
        .copied();
    // Five messages never reach the loader, and then the connection drops: nothing on the
    // stream says what was lost, so the reconnect backfills from the last trade published.
    sim.bybit_ws_drop_trades("publicTrade.BTCUSDT", 5);
    wait_until("trade messages dropped", Duration::from_secs(10), || {
        sim.bybit_ws_stats().trade_messages_dropped >= 5
    })
    .await;
    assert!(sim.bybit_ws_disconnect_all() > 0, "connected mid-range");
    let run = handle.await.unwrap();
    assert_ok(&run);
    let records = read_records(&topic);
    let expected = archive_keys(BybitCategory::Linear, "linear", "BTCUSDT", range);
    assert!(
        expected.len() > 50,
        "the simulator trades: {}",
        expected.len()
    );
    assert_eq!(
        keys(&records),
        expected,
        "every trade of the range exactly once, in order, keyed as the archive keys it"
    );
    let first = &records[0];
    assert_eq!(first["exchange"], "bybit");
    assert_eq!(first["market"], "linear");
    assert!(
        first["trade_id"].is_string(),
        "a derivatives trade id is a UUID"
    );
    let recent_after = sim
        .stats()
        .bybit
        .per_endpoint
        .get("/v5/market/recent-trade")
        .copied();
    assert!(
        recent_after.unwrap_or(0) > recent_before.unwrap_or(0),
        "the reconnect was backfilled from recent-trade"
    );
    // Once the day is published, `verify` checks the topic against the archive.
    sim.clock().set_now_ms(now + DAY);
    let run = verify_topic(
        &topic,
        &format!("{}:{}", range.0, range.1),
        &[
            ("EXCHANGE", "bybit".into()),
            ("MARKET", "linear".into()),
            ("SYMBOL", "BTCUSDT".into()),
            ("BYBIT_API_URL", sim.bybit_url()),
            ("BYBIT_ARCHIVE_URL", sim.bybit_archive_url()),
        ],
        &[],
    );
    assert_ok(&run);
}

#[tokio::test(flavor = "multi_thread")]
async fn bybit_spot_trades_stream_keyed_by_their_numeric_ids() {
    let sim = support::sim(SimConfig::default()).await;
    let topic = fresh_topic("bybit-ws-spot");
    let range = live_range_after(sim.clock().now_ms(), 3);
    let run = run_loader_async(
        env(&sim, &topic, "spot", "BTCUSDT", "ws_trades", range),
        vec![],
    )
    .await;
    assert_ok(&run);
    let records = read_records(&topic);
    assert_eq!(
        keys(&records),
        archive_keys(BybitCategory::Spot, "spot", "BTCUSDT", range)
    );
    assert!(
        records[0]["trade_id"].is_u64(),
        "spot trade ids are numbers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bybit_closed_candles_stream_and_a_missed_one_is_fetched() {
    let sim = support::sim(SimConfig::default()).await;
    // A minute's last seconds: the range holds the minute before (closed before the stream
    // starts: fetched over REST) and this one (closed on the stream).
    let real = sim.clock().now_ms();
    let minute = real - real.rem_euclid(60_000) + 120_000;
    sim.clock().set_now_ms(minute + 57_000);
    let range = (minute - 60_000, minute + 60_000);
    let topic = fresh_topic("bybit-ws-candles");
    let run = run_loader_async(
        env(&sim, &topic, "linear", "BTCUSDT", "ws_candles_1m", range),
        vec![],
    )
    .await;
    assert_ok(&run);
    let records = read_records(&topic);
    let opens: Vec<i64> = records
        .iter()
        .map(|r| r["open_time"].as_i64().unwrap())
        .collect();
    assert_eq!(opens, [minute - 60_000, minute]);
    // Each equals REST's candle (the history load of the same range).
    let rest_topic = fresh_topic("bybit-rest-candles");
    let run = run_loader_async(
        env(
            &sim,
            &rest_topic,
            "linear",
            "BTCUSDT",
            "api_candles_1m",
            range,
        ),
        vec![],
    )
    .await;
    assert_ok(&run);
    assert_eq!(records, read_records(&rest_topic));
}

#[tokio::test(flavor = "multi_thread")]
async fn bybit_best_bid_ask_and_book_are_published_once_per_update() {
    let sim = support::sim(SimConfig::default()).await;
    // Long enough that the reset below lands mid-range on a busy machine too.
    let range = live_range_after(sim.clock().now_ms(), 12);
    let bbo = fresh_topic("bybit-ws-bbo");
    let book = fresh_topic("bybit-ws-book");
    let bbo_run = tokio::spawn(run_loader_async(
        env(&sim, &bbo, "linear", "BTCUSDT", "ws_book_ticker", range),
        vec![],
    ));
    let book_run = tokio::spawn(run_loader_async(
        with(
            env(&sim, &book, "linear", "BTCUSDT", "ws_orderbook", range),
            &[("ORDERBOOK_SNAPSHOT_INTERVAL", "0.2")],
        ),
        vec![],
    ));
    // Mid-range, Bybit restarts its book service: update ids start again at 1.
    wait_until("books published", Duration::from_secs(20), || {
        published(&book) > 2
    })
    .await;
    assert!(sim.bybit_ws_reset_books() > 0);
    assert_ok(&bbo_run.await.unwrap());
    assert_ok(&book_run.await.unwrap());

    let tickers = read_records(&bbo);
    assert!(tickers.len() > 5, "{} tickers", tickers.len());
    let mut seen = std::collections::HashSet::new();
    for t in &tickers {
        assert_eq!(t["exchange"], "bybit");
        assert!(
            seen.insert(t["_key"].as_str().unwrap().to_string()),
            "one record per update"
        );
        let bid: f64 = t["best_bid_price"].as_str().unwrap().parse().unwrap();
        let ask: f64 = t["best_ask_price"].as_str().unwrap().parse().unwrap();
        assert!(bid < ask, "{t}");
    }

    let books = read_records(&book);
    assert!(books.len() > 3, "{} books", books.len());
    for b in &books {
        assert_eq!(b["exchange"], "bybit");
        let side = |name: &str| -> Vec<f64> {
            b[name]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l[0].as_str().unwrap().parse().unwrap())
                .collect()
        };
        let (bids, asks) = (side("bids"), side("asks"));
        assert!(!bids.is_empty() && !asks.is_empty());
        assert!(bids.windows(2).all(|w| w[0] > w[1]), "bids best first");
        assert!(asks.windows(2).all(|w| w[0] < w[1]), "asks best first");
        assert!(bids[0] < asks[0], "the book is not crossed");
    }
    let timestamps: Vec<i64> = books
        .iter()
        .map(|b| b["timestamp"].as_i64().unwrap())
        .collect();
    assert!(timestamps.windows(2).all(|w| w[0] <= w[1]), "in time order");
    assert!(
        timestamps.last().unwrap() > &(range.1 - 2_000),
        "the book was followed after the restart"
    );
}

/// Bybit's `allLiquidation` pushes every liquidation of the symbol each half second; two may
/// share a millisecond. Through connection rotations (each handed over), the topic holds
/// exactly the exchange's liquidations of the range, once each, keyed by time rank (the
/// millisecond's two apart, in Bybit's order), with the liquidation order's side (Bybit's `S`
/// names the position), and `verify` passes.
#[tokio::test(flavor = "multi_thread")]
async fn bybit_liquidations_stream_exactly_once_through_rotations() {
    use exchange_sim::data::bybit_liquidations;
    let sim = support::sim(SimConfig::default()).await;
    let topic = fresh_topic("bybit-ws-liquidations");
    // The exchange's own schedule is searched for 8 s holding a millisecond with two
    // liquidations, and its clock put just before them (the loader follows it).
    let from = live_range_after(sim.clock().now_ms(), 0).0;
    let start = (0..6 * 3_600)
        .map(|s| from + s * 1000)
        .find(|&a| {
            let l = bybit_liquidations(BybitCategory::Linear, "BTCUSDT", a, a + 8_000 - 1);
            l.len() >= 6 && l.windows(2).any(|w| w[0].time == w[1].time)
        })
        .expect("a tied millisecond within six hours of the schedule");
    sim.clock().set_now_ms(start - 2_000);
    let range = (start, start + 8_000);
    let opened = sim.bybit_ws_stats().connections_opened;
    let run = run_loader_async(
        with(
            env(&sim, &topic, "linear", "BTCUSDT", "ws_liquidations", range),
            &[("WS_ROTATE_AFTER", "2")],
        ),
        vec![],
    )
    .await;
    assert_ok(&run);
    assert!(
        sim.bybit_ws_stats().connections_opened >= opened + 3,
        "the connection was rotated: {:?}",
        sim.bybit_ws_stats()
    );
    let expected = bybit_liquidations(BybitCategory::Linear, "BTCUSDT", range.0, range.1 - 1);
    let records = read_records(&topic);
    let mut rank = 0;
    let mut want = Vec::new();
    for (i, l) in expected.iter().enumerate() {
        rank = if i > 0 && expected[i - 1].time == l.time {
            rank + 1
        } else {
            0
        };
        want.push((
            format!(
                "{}BTCUSDT_liquidation_{}",
                key_prefix("linear"),
                l.time * PER_MS + rank
            ),
            l.time,
            if l.side == "Buy" { "SELL" } else { "BUY" },
            l.size.clone(),
            l.price.clone(),
        ));
    }
    let got: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r["_key"].as_str().unwrap().to_string(),
                r["timestamp"].as_i64().unwrap(),
                match r["side"].as_str().unwrap() {
                    "SELL" => "SELL",
                    "BUY" => "BUY",
                    other => panic!("side {other}"),
                },
                r["quantity"].as_str().unwrap().to_string(),
                r["price"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "every liquidation of the range exactly once, in order"
    );
    for r in &records {
        assert_eq!(r["exchange"], "bybit");
        assert_eq!(r["market"], "linear");
        assert!(r["event_time"].as_i64().unwrap() % 500 == 0, "{r}");
        assert!(r.get("order_type").is_none(), "Binance's fields only: {r}");
    }
    let run = verify_topic(
        &topic,
        &format!("{}:{}", range.0, range.1),
        &[
            ("EXCHANGE", "bybit".into()),
            ("MARKET", "linear".into()),
            ("SYMBOL", "BTCUSDT".into()),
            ("TYPE", "ws_liquidations".into()),
            ("BYBIT_API_URL", sim.bybit_url()),
        ],
        &[],
    );
    assert_ok(&run);
}

/// Spot has no liquidations: the job is refused before it connects, naming the markets.
#[test]
fn bybit_spot_liquidations_are_refused() {
    let run = support::loader::run_loader(
        &[
            ("EXCHANGE", "bybit".into()),
            ("MARKET", "spot".into()),
            ("SYMBOL", "BTCUSDT".into()),
            ("TYPE", "ws_liquidations".into()),
            ("KAFKA_TOPIC", "unused".into()),
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1".into()),
        ],
        &[],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("ws_liquidations") && run.stderr.contains("MARKET=linear"),
        "{}",
        run.stderr
    );
}
