//! OKX's live types (`EXCHANGE=okx`, `ws_*`) end to end: the real binary streams from the
//! simulator's OKX WebSocket into the real broker. Trades are exactly OKX's trades of the
//! range, keyed as history-trades and the archive key them (millisecond and rank), also through
//! a dropped connection and trade messages the stream swallowed (both backfilled from
//! history-trades), and `verify` passes; closed candles equal history-candles' (one closed
//! before the stream started is fetched); the best bid and ask are published once per seqId;
//! the order book equals OKX's book at each published time, and resyncs on a new connection
//! when its seqId chain breaks or its checksum does not match. The simulator's clock is set or
//! read, never waited on beyond the live ranges themselves.

mod support;

use std::time::Duration;

use exchange_sim::okx;
use exchange_sim::okx_ws::{self, OkxWsConfig};
use exchange_sim::{Interval, SimConfig, SimServer};
use serde_json::Value;
use support::broker::Broker;
use support::loader::{
    fresh_topic, live_range_after, published, read_records, run_loader_async, verify_topic,
    wait_until, with, Run,
};

/// `time_rank`'s ordinals per millisecond.
const PER_MS: i64 = 1_000_000;
const MIN: i64 = 60_000;
const TRADES: &str = "/api/v5/market/history-trades";

/// A simulator whose instruments trade often (several trades a millisecond at times), so a
/// few seconds hold a few hundred trades.
async fn busy_sim() -> SimServer {
    support::sim(SimConfig {
        agg_trade_spacing_ms: 20,
        ..SimConfig::default()
    })
    .await
}

fn env(
    sim: &SimServer,
    topic: &str,
    market: &str,
    inst_id: &str,
    ty: &str,
    range: (i64, i64),
) -> Vec<(&'static str, String)> {
    vec![
        ("EXCHANGE", "okx".into()),
        ("MARKET", market.into()),
        ("SYMBOL", inst_id.into()),
        ("TYPE", ty.into()),
        ("TIME_RANGE", format!("{}:{}", range.0, range.1)),
        ("KAFKA_TOPIC", topic.into()),
        ("KAFKA_BOOTSTRAP_SERVERS", Broker::shared().bootstrap()),
        ("OKX_API_URL", sim.okx_url()),
        ("OKX_WS_URL", sim.okx_ws_url()),
        ("QUEUE_ID", format!("test-{topic}")),
        ("METRICS_PORT", "0".into()),
        ("WS_IDLE_TIMEOUT", "3".into()),
    ]
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

fn trade_requests(sim: &SimServer) -> u64 {
    sim.stats()
        .okx
        .per_endpoint
        .get(TRADES)
        .copied()
        .unwrap_or(0)
}

/// OKX's trades of `[range.0, range.1)` (history-trades' and the archive's), oldest first,
/// each keyed by its millisecond and its rank in it: the fields [`trade_fields`] lists.
fn okx_trades(sim: &SimServer, market: &str, inst_id: &str, range: (i64, i64)) -> Vec<Value> {
    let want = okx::trades(&sim.data(), inst_id, range.0, range.1).expect("an OKX instrument");
    assert!(want.len() > 50, "the simulator trades: {}", want.len());
    assert!(
        want.windows(2).any(|w| w[0].time == w[1].time),
        "trades share milliseconds"
    );
    let mut keys = Vec::with_capacity(want.len());
    let mut rank = 0;
    for (k, t) in want.iter().enumerate() {
        rank = match k {
            0 => 0,
            _ if want[k - 1].time == t.time => rank + 1,
            _ => 0,
        };
        keys.push(format!(
            "okx_{market}_{inst_id}_trade_{}",
            t.time * PER_MS + rank
        ));
    }
    keys.into_iter()
        .zip(want)
        .map(|(key, t)| {
            serde_json::json!({
                "_key": key,
                "trade_id": t.trade_id,
                "timestamp": t.time,
                "price": t.px,
                "quantity": t.sz,
                "is_buyer_maker": t.side == "sell",
            })
        })
        .collect()
}

/// The fields of `records` that [`okx_trades`] lists.
fn trade_fields(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            assert_eq!(r["exchange"], "okx", "{r}");
            serde_json::json!({
                "_key": r["_key"],
                "trade_id": r["trade_id"],
                "timestamp": r["timestamp"],
                "price": r["price"],
                "quantity": r["quantity"],
                "is_buyer_maker": r["is_buyer_maker"],
            })
        })
        .collect()
}

/// What a live job's summary says of a symbol.
#[derive(Debug)]
struct LiveSummary {
    from_stream: u64,
    backfilled: u64,
    reconnects: u64,
    resyncs: u64,
}

fn live_summary(run: &Run, symbol: &str) -> LiveSummary {
    let prefix = format!("{symbol}: ");
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains("records from the stream"))
        .unwrap_or_else(|| panic!("no live summary of {symbol}: {}", run.stdout));
    let numbers: Vec<u64> = line[prefix.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    LiveSummary {
        from_stream: numbers[0],
        backfilled: numbers[1],
        reconnects: numbers[2],
        resyncs: numbers[3],
    }
}

fn verify(sim: &SimServer, topic: &str, market: &str, inst_id: &str, range: (i64, i64)) -> Run {
    verify_topic(
        topic,
        &format!("{}:{}", range.0, range.1),
        &[
            ("EXCHANGE", "okx".into()),
            ("MARKET", market.into()),
            ("SYMBOL", inst_id.into()),
            ("OKX_API_URL", sim.okx_url()),
        ],
        &[],
    )
}

/// A few seconds of spot trades from the stream: exactly OKX's trades of the range, in order,
/// keyed as history keys them (the range's first milliseconds, before the first streamed trade,
/// come from history-trades), and `verify` agrees.
#[tokio::test(flavor = "multi_thread")]
async fn okx_trades_stream_exactly_as_history_has_them_and_verify() {
    let sim = busy_sim().await;
    let topic = fresh_topic("okx-ws-trades");
    let range = live_range_after(sim.clock().now_ms(), 4);
    // OKX_WS_URL written with a service's path: the host is taken.
    let url = format!("{}/ws/v5/public/", sim.okx_ws_url());
    let run = run_loader_async(
        with(
            env(&sim, &topic, "spot", "BTC-USDT", "ws_trades", range),
            &[("OKX_WS_URL", &url)],
        ),
        vec![],
    )
    .await;
    assert_ok(&run);
    let records = read_records(&topic);
    assert_eq!(
        trade_fields(&records),
        okx_trades(&sim, "spot", "BTC-USDT", range),
        "every trade of the range exactly once, in order, keyed and written as history's"
    );
    let summary = live_summary(&run, "BTC-USDT");
    assert!(
        summary.from_stream > 0 && summary.reconnects == 0,
        "{summary:?}"
    );
    let run = verify(&sim, &topic, "spot", "BTC-USDT", range);
    assert_ok(&run);
}

/// Mid-range the stream swallows trade messages (a gap in the trade ids), then every
/// connection drops: the topic still holds every trade of the range exactly once, in order,
/// keyed as history keys them (both gaps fetched from history-trades), and `verify` agrees.
#[tokio::test(flavor = "multi_thread")]
async fn okx_trades_survive_swallowed_messages_and_a_dropped_connection() {
    let sim = busy_sim().await;
    let topic = fresh_topic("okx-ws-trades-gaps");
    let inst = "BTC-USDT-SWAP";
    // Long enough that the faults below land mid-range on a busy machine too.
    let range = live_range_after(sim.clock().now_ms(), 15);
    let handle = tokio::spawn(run_loader_async(
        env(&sim, &topic, "swap", inst, "ws_trades", range),
        vec![],
    ));
    wait_until("trades streamed", Duration::from_secs(20), || {
        published(&topic) > 20
    })
    .await;
    // The stream swallows trade messages; the next trade shows the gap in the trade ids, and
    // it is fetched from history-trades.
    let before = trade_requests(&sim);
    sim.okx_ws_drop_trades(inst, 7);
    wait_until("the gap fetched", Duration::from_secs(5), || {
        sim.okx_ws_stats().trade_messages_dropped >= 7 && trade_requests(&sim) > before
    })
    .await;
    let opened = sim.okx_ws_stats().connections_opened;
    let dropped = sim.okx_ws_disconnect_all();
    assert!(
        dropped > 0,
        "connected mid-range: {:?}, now {} in {range:?}",
        sim.okx_ws_stats(),
        sim.clock().now_ms()
    );
    wait_until("a new connection", Duration::from_secs(10), || {
        sim.okx_ws_stats().connections_opened > opened
    })
    .await;
    let run = handle.await.unwrap();
    assert_ok(&run);
    let summary = live_summary(&run, inst);
    assert!(
        summary.backfilled >= 7 && summary.reconnects >= 1 && summary.from_stream > 0,
        "{summary:?}"
    );
    let records = read_records(&topic);
    assert_eq!(
        trade_fields(&records),
        okx_trades(&sim, "swap", inst, range),
        "every trade of the range exactly once, in order, keyed and written as history's"
    );
    let ws = sim.okx_ws_stats();
    assert!(
        ws.trade_messages_dropped == 7 && ws.forced_disconnects >= 1,
        "{ws:?}"
    );
    let run = verify(&sim, &topic, "swap", inst, range);
    assert_ok(&run);
}

/// The last seconds of a minute: the range holds the minute before (closed before the stream
/// starts: fetched from history-candles) and this one (closed on the stream); both equal what
/// a history load of the range publishes.
#[tokio::test(flavor = "multi_thread")]
async fn okx_closed_candles_stream_and_a_missed_one_is_fetched() {
    let sim = support::sim(SimConfig::default()).await;
    let real = sim.clock().now_ms();
    let minute = real - real.rem_euclid(MIN) + 2 * MIN;
    sim.clock().set_now_ms(minute - 3_000);
    let range = (minute - 2 * MIN, minute);
    let topic = fresh_topic("okx-ws-candles");
    let run = run_loader_async(
        env(
            &sim,
            &topic,
            "swap",
            "BTC-USDT-SWAP",
            "ws_candles_1m",
            range,
        ),
        vec![],
    )
    .await;
    assert_ok(&run);
    let records = read_records(&topic);
    let opens: Vec<i64> = records
        .iter()
        .map(|r| r["open_time"].as_i64().unwrap())
        .collect();
    assert_eq!(opens, [minute - 2 * MIN, minute - MIN]);
    let data = sim.data();
    for r in &records {
        let open = r["open_time"].as_i64().unwrap();
        let k = okx::kline(&data, "BTC-USDT-SWAP", Interval::M1, open).unwrap();
        assert_eq!(r["close"].as_str(), Some(k.close.as_str()), "{r}");
        assert_eq!(r["exchange"], "okx");
    }
    // Each equals history's record (a load of the same range once OKX answers it closed).
    sim.clock().advance(Duration::from_secs(120));
    let rest_topic = fresh_topic("okx-rest-candles");
    let run = run_loader_async(
        env(
            &sim,
            &rest_topic,
            "swap",
            "BTC-USDT-SWAP",
            "api_candles_1m",
            range,
        ),
        vec![],
    )
    .await;
    assert_ok(&run);
    assert_eq!(records, read_records(&rest_topic));
}

/// The best bid and ask once per seqId, OKX's at that time; the order book, OKX's book at
/// each published time, through a broken seqId chain and a wrong checksum (each resynced on a
/// new connection, counted in `resyncs`).
#[tokio::test(flavor = "multi_thread")]
async fn okx_best_bid_ask_and_book_follow_okxs_book_through_resyncs() {
    let sim = support::sim(SimConfig::default()).await;
    // The deprecated checksum sent, so that the loader checks it.
    sim.set_okx_ws_config(OkxWsConfig {
        book_checksum: true,
        ..OkxWsConfig::default()
    });
    let inst = "BTC-USDT-SWAP";
    // Long enough that the fault below lands mid-range on a busy machine too.
    let range = live_range_after(sim.clock().now_ms(), 15);
    let bbo = fresh_topic("okx-ws-bbo");
    let book = fresh_topic("okx-ws-book");
    let bbo_run = tokio::spawn(run_loader_async(
        env(&sim, &bbo, "swap", inst, "ws_book_ticker", range),
        vec![],
    ));
    let book_run = tokio::spawn(run_loader_async(
        with(
            env(&sim, &book, "swap", inst, "ws_orderbook", range),
            &[("ORDERBOOK_SNAPSHOT_INTERVAL", "0.2")],
        ),
        vec![],
    ));
    wait_until("books published", Duration::from_secs(20), || {
        published(&book) > 2
    })
    .await;
    let opened = sim.okx_ws_stats().connections_opened;
    sim.okx_ws_break_next_seq();
    wait_until(
        "a new connection for the book",
        Duration::from_secs(10),
        || sim.okx_ws_stats().connections_opened > opened,
    )
    .await;
    // Once the book is rebuilt from the new connection's snapshot and the old connection is
    // gone (the best bid and ask keep one), the next update's checksum is wrong.
    wait_until("the book resynced", Duration::from_secs(10), || {
        let last = read_records(&book).last().cloned();
        last.is_some_and(|b| b["resyncs"] == 1) && sim.okx_ws_stats().connections_open == 2
    })
    .await;
    let opened = sim.okx_ws_stats().connections_opened;
    sim.okx_ws_corrupt_next_checksum();
    wait_until(
        "another new connection for the book",
        Duration::from_secs(10),
        || sim.okx_ws_stats().connections_opened > opened,
    )
    .await;
    assert_ok(&bbo_run.await.unwrap());
    let book_run = book_run.await.unwrap();
    assert_ok(&book_run);
    assert_eq!(live_summary(&book_run, inst).resyncs, 2);
    let ws = sim.okx_ws_stats();
    assert!(ws.seq_breaks == 1 && ws.checksums_corrupted == 1, "{ws:?}");

    let tickers = read_records(&bbo);
    assert!(tickers.len() > 5, "{} tickers", tickers.len());
    let mut seen = std::collections::HashSet::new();
    for t in &tickers {
        assert_eq!(
            (t["exchange"].as_str(), t["market"].as_str()),
            (Some("okx"), Some("swap"))
        );
        assert!(
            seen.insert(t["_key"].as_str().unwrap().to_string()),
            "one record per seqId: {t}"
        );
        let ts = t["timestamp"].as_i64().unwrap();
        assert!((range.0..range.1).contains(&ts), "{t}");
        let want = okx_ws::order_book(inst, ts).unwrap();
        assert_eq!(t["update_id"].as_i64(), Some(want.seq_id), "{t}");
        assert_eq!(t["best_bid_price"].as_str(), Some(want.bids[0].0.as_str()));
        assert_eq!(t["best_bid_qty"].as_str(), Some(want.bids[0].1.as_str()));
        assert_eq!(t["best_ask_price"].as_str(), Some(want.asks[0].0.as_str()));
        assert_eq!(t["best_ask_qty"].as_str(), Some(want.asks[0].1.as_str()));
    }

    let books = read_records(&book);
    assert!(books.len() > 5, "{} books", books.len());
    let level = |l: &(String, String)| serde_json::json!([l.0, l.1]);
    for b in &books {
        assert_eq!(
            (b["exchange"].as_str(), b["market"].as_str()),
            (Some("okx"), Some("swap"))
        );
        let ts = b["timestamp"].as_i64().unwrap();
        assert!((range.0..range.1).contains(&ts), "{b}");
        let want = okx_ws::order_book(inst, ts).unwrap();
        assert_eq!(b["last_update_id"].as_i64(), Some(want.seq_id), "{b}");
        let depth = b["bids"].as_array().unwrap().len();
        assert_eq!(depth, 20, "ORDERBOOK_DEPTH's default");
        let bids: Vec<Value> = want.bids.iter().take(depth).map(level).collect();
        let asks: Vec<Value> = want.asks.iter().take(depth).map(level).collect();
        assert_eq!(b["bids"], Value::Array(bids), "at {ts}");
        assert_eq!(b["asks"], Value::Array(asks), "at {ts}");
    }
    let resyncs: Vec<u64> = books
        .iter()
        .map(|b| b["resyncs"].as_u64().unwrap())
        .collect();
    assert!(resyncs.windows(2).all(|w| w[0] <= w[1]), "{resyncs:?}");
    assert_eq!(resyncs[0], 0);
    assert_eq!(
        *resyncs.last().unwrap(),
        2,
        "resynced after the broken chain and after the wrong checksum: {resyncs:?}"
    );
}

/// What OKX does not stream through the loader, and a stream URL that is not one, are refused
/// at start naming the variable; nothing connects.
#[tokio::test(flavor = "multi_thread")]
async fn okx_refuses_live_types_it_does_not_stream_and_bad_stream_urls() {
    let sim = support::sim(SimConfig::default()).await;
    let topic = fresh_topic("okx-ws-refused");
    let range = live_range_after(sim.clock().now_ms(), 2);
    let cases: [(&[(&'static str, &str)], &str); 3] = [
        (
            &[("TYPE", "ws_aggtrades")],
            "TYPE ws_aggtrades: OKX's streams are loaded as ws_trades, ws_candles_<interval>",
        ),
        (
            &[("TYPE", "ws_candles_1s")],
            "TYPE ws_candles_1s: OKX has no 1s candles aligned to UTC",
        ),
        (
            &[("OKX_WS_URL", "ws.okx.example")],
            "is not a ws(s) URL, e.g. wss://ws.okx.com:8443",
        ),
    ];
    for (extra, message) in cases {
        let run = run_loader_async(
            with(
                env(&sim, &topic, "spot", "BTC-USDT", "ws_trades", range),
                extra,
            ),
            vec![],
        )
        .await;
        assert_eq!(run.code, Some(2), "{extra:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(message), "{extra:?}: {}", run.stderr);
        if extra[0].0 == "OKX_WS_URL" {
            assert!(run.stderr.contains("OKX_WS_URL"), "{}", run.stderr);
        }
    }
    assert_eq!(sim.okx_ws_stats().connections_opened, 0);
}

/// OKX's `liquidation-orders` is subscribed once for the instrument type and pushes every
/// swap's liquidations (at most one a second per contract), several instruments in one
/// message at times. A job of two swaps reads its own from the one stream: through connection
/// rotations (each handed over), each symbol's records are exactly OKX's liquidations of it in
/// the range, once each, keyed by time rank, and `verify` passes.
#[tokio::test(flavor = "multi_thread")]
async fn okx_liquidations_of_two_swaps_from_one_stream_exactly_once() {
    use exchange_sim::data::okx_liquidations;
    let sim = support::sim(SimConfig::default()).await;
    let topic = fresh_topic("okx-ws-liquidations");
    let insts = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"];
    // The schedule is searched for 8 s in which both liquidate at one millisecond (one push
    // carries both), and the exchange's clock put just before (the loader follows it).
    let from = live_range_after(sim.clock().now_ms(), 0).0;
    let start = (0..6 * 3_600)
        .map(|s| from + s * 1000)
        .find(|&a| {
            let btc = okx_liquidations(insts[0], a, a + 8_000 - 1);
            let eth = okx_liquidations(insts[1], a, a + 8_000 - 1);
            btc.len() >= 2
                && eth.len() >= 2
                && btc.iter().any(|b| eth.iter().any(|e| e.time == b.time))
        })
        .expect("a shared millisecond within six hours of the schedule");
    sim.clock().set_now_ms(start - 2_000);
    let range = (start, start + 8_000);
    let opened = sim.okx_ws_stats().connections_opened;
    let run = run_loader_async(
        with(
            env(
                &sim,
                &topic,
                "swap",
                &insts.join(","),
                "ws_liquidations",
                range,
            ),
            &[("WS_ROTATE_AFTER", "2")],
        ),
        vec![],
    )
    .await;
    assert_ok(&run);
    assert!(
        sim.okx_ws_stats().connections_opened >= opened + 3,
        "the connection was rotated: {:?}",
        sim.okx_ws_stats()
    );
    let records = read_records(&topic);
    for inst in insts {
        let want: Vec<_> = okx_liquidations(inst, range.0, range.1 - 1)
            .into_iter()
            .map(|l| {
                (
                    format!("okx_swap_{inst}_liquidation_{}", l.time * PER_MS),
                    l.time,
                    l.side.to_uppercase(),
                    l.size,
                    l.price,
                )
            })
            .collect();
        let got: Vec<_> = records
            .iter()
            .filter(|r| r["symbol"] == inst)
            .map(|r| {
                (
                    r["_key"].as_str().unwrap().to_string(),
                    r["timestamp"].as_i64().unwrap(),
                    r["side"].as_str().unwrap().to_string(),
                    r["quantity"].as_str().unwrap().to_string(),
                    r["price"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            got, want,
            "{inst}: every liquidation of the range exactly once, in order"
        );
    }
    assert_eq!(
        records.len(),
        records
            .iter()
            .filter(|r| insts.contains(&r["symbol"].as_str().unwrap()))
            .count(),
        "no other instrument's"
    );
    for r in &records {
        assert_eq!(r["exchange"], "okx");
        assert_eq!(r["market"], "swap");
        assert!(r.get("event_time").is_none(), "OKX sends none: {r}");
    }
    let run = verify_topic(
        &topic,
        &format!("{}:{}", range.0, range.1),
        &[
            ("EXCHANGE", "okx".into()),
            ("MARKET", "swap".into()),
            ("SYMBOL", insts.join(",")),
            ("TYPE", "ws_liquidations".into()),
            ("OKX_API_URL", sim.okx_url()),
        ],
        &[],
    );
    assert_ok(&run);
}
