//! Futures live types end to end, per futures market: the simulator's `fstream`/`dstream`
//! (routed `/public` and `/market` endpoints) streams and drops connections; aggregate trades
//! must come through a reconnect complete (Binance offers a backfill for them), the order book
//! must follow the futures `pu` chain and resync after a lost event, and mark prices,
//! liquidations, book tickers and diff depth must publish on both sides of a reconnect with
//! nothing doubled and equal to the exchange's own values.

mod support;

use std::time::Duration;

use exchange_sim::{data, SimConfig, SimMarket, SimServer, WsFaults};
use serde_json::Value;
use support::broker::Broker;
use support::loader::{
    fresh_topic, live_range, live_range_after, published, read_records, run_loader_async,
    verify_topic, wait_until, with,
};

#[derive(Clone, Copy)]
struct Futures {
    market: &'static str,
    sim: SimMarket,
    symbol: &'static str,
    others: [&'static str; 2],
}

const USDM: Futures = Futures {
    market: "usdm",
    sim: SimMarket::UsdM,
    symbol: "BTCUSDT",
    others: ["ETHUSDT", "BNBUSDT"],
};
const COINM: Futures = Futures {
    market: "coinm",
    sim: SimMarket::CoinM,
    symbol: "BTCUSD_PERP",
    others: ["ETHUSD_PERP", "BNBUSD_PERP"],
};

async fn sim(spacing_ms: i64, futures_ws: WsFaults) -> SimServer {
    let cfg = SimConfig {
        agg_trade_spacing_ms: spacing_ms,
        futures_ws,
        ..SimConfig::default()
    };
    support::sim(cfg).await
}

fn env(
    sim: &SimServer,
    m: Futures,
    topic: &str,
    symbols: &str,
    ty: &str,
    range: (i64, i64),
) -> Vec<(&'static str, String)> {
    let (rest, ws) = match m.market {
        "usdm" => ("BINANCE_FAPI_URL", "BINANCE_FWS_URL"),
        _ => ("BINANCE_DAPI_URL", "BINANCE_DWS_URL"),
    };
    let (rest_url, ws_url) = match m.market {
        "usdm" => (sim.fapi_url(), sim.fws_url()),
        _ => (sim.dapi_url(), sim.dws_url()),
    };
    vec![
        ("MARKET", m.market.to_string()),
        ("SYMBOL", symbols.to_string()),
        ("TYPE", ty.to_string()),
        ("KAFKA_TOPIC", topic.to_string()),
        ("KAFKA_BOOTSTRAP_SERVERS", Broker::shared().bootstrap()),
        (rest, rest_url),
        (ws, ws_url),
        ("METRICS_PORT", "0".to_string()),
        ("WS_IDLE_TIMEOUT", "1.5".to_string()),
        ("TIME_RANGE", format!("{}:{}", range.0, range.1)),
    ]
}

fn verify_ok(topic: &str, range: (i64, i64)) {
    let v = verify_topic(
        topic,
        &format!("{}:{}", range.0, range.1),
        &[],
        &["--offline"],
    );
    assert_eq!(v.code, Some(0), "verify: {}{}", v.stdout, v.stderr);
}

/// Starts a live job, waits until it has published `before` records, drops every connection
/// of the simulator, and returns the finished run's records.
async fn run_through_a_disconnect(
    sim: &SimServer,
    env: Vec<(&'static str, String)>,
    topic: &str,
    range: (i64, i64),
    before: usize,
) -> Vec<Value> {
    let handle = tokio::spawn(run_loader_async(env, vec![]));
    // The range may start some seconds ahead: the deadline counts from its start.
    let until_start = Duration::from_millis((range.0 - sim.clock().now_ms()).max(0) as u64);
    wait_until(
        "records of the range published",
        until_start + Duration::from_secs(20),
        || published(topic) >= before,
    )
    .await;
    assert!(
        sim.disconnect_all() > 0,
        "the loader is connected mid-range"
    );
    let run = handle.await.unwrap();
    run.assert_ok();
    read_records(topic)
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_trades_come_through_a_reconnect_complete() {
    let sim = sim(50, WsFaults::futures()).await;
    for m in [USDM, COINM] {
        let topic = fresh_topic(&format!("{}-ws-agg", m.market));
        let range = live_range(6);
        let opened = sim.stats().ws_connections_opened;
        let records = run_through_a_disconnect(
            &sim,
            env(&sim, m, &topic, m.symbol, "ws_aggtrades", range),
            &topic,
            range,
            20,
        )
        .await;
        assert!(
            sim.stats().ws_connections_opened >= opened + 2,
            "reconnected"
        );
        let expected = SimConfig {
            agg_trade_spacing_ms: 50,
            ..SimConfig::default()
        }
        .data()
        .trades_between_in(m.sim, m.symbol, range.0, range.1 - 1);
        let got: Vec<u64> = records
            .iter()
            .map(|r| r["trade_id"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = expected.iter().map(|t| t.id).collect();
        assert_eq!(
            got, want,
            "{}: every aggregate trade, once, in order",
            m.market
        );
        for (r, t) in records.iter().zip(&expected) {
            assert_eq!(r["price"], t.price);
            assert_eq!(r["market"], m.market);
            assert!(r.get("is_best_match").is_none());
        }
        verify_ok(&topic, range);
        // The stream went to the routed market endpoint.
        let key = format!("{}_{}_agg_{}", m.market, m.symbol, want[0]);
        assert_eq!(records[0]["_key"], key);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_order_book_follows_the_pu_chain_and_resyncs_after_a_lost_event() {
    let sim = sim(
        250,
        WsFaults {
            depth_gap_every: 15,
            ..WsFaults::futures()
        },
    )
    .await;
    for m in [USDM, COINM] {
        let topic = fresh_topic(&format!("{}-ws-book", m.market));
        let range = live_range(5);
        let run = run_loader_async(
            with(
                env(&sim, m, &topic, m.symbol, "ws_orderbook", range),
                &[
                    ("ORDERBOOK_SNAPSHOT_INTERVAL", "0.5"),
                    ("ORDERBOOK_DEPTH", "10"),
                ],
            ),
            vec![],
        )
        .await;
        run.assert_ok();
        assert!(
            run.stderr.contains("resyncing from a new snapshot"),
            "{}",
            run.stderr
        );
        let records = read_records(&topic);
        assert!(records.len() >= 5, "{}: {}", m.market, records.len());
        let mut resynced = false;
        for r in &records {
            let book = data::order_book_in(m.sim, m.symbol, r["timestamp"].as_i64().unwrap());
            assert_eq!(r["last_update_id"], book.last_update_id, "{r}");
            let side = |levels: &[(String, String)]| {
                serde_json::json!(levels
                    .iter()
                    .take(10)
                    .map(|(p, q)| [p.clone(), q.clone()])
                    .collect::<Vec<_>>())
            };
            assert_eq!(r["bids"], side(&book.bids), "{}: bids", m.market);
            assert_eq!(r["asks"], side(&book.asks), "{}: asks", m.market);
            resynced |= r["resyncs"].as_u64().unwrap() > 0;
        }
        assert!(resynced, "{}: snapshots record the resync", m.market);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mark_prices_liquidations_tickers_and_depth_publish_through_a_reconnect() {
    let sim = sim(250, WsFaults::futures()).await;
    for m in [USDM, COINM] {
        let symbols = format!("{},{},{}", m.symbol, m.others[0], m.others[1]);
        // Diff depth first, without a reconnect (Binance has no backfill for it: a reconnect
        // is a real gap, which verify reports): the `pu` chain holds from end to end.
        let topic = fresh_topic(&format!("{}-ws-depth", m.market));
        let range = live_range_after(sim.clock().now_ms(), 4);
        run_loader_async(env(&sim, m, &topic, &symbols, "ws_depth", range), vec![])
            .await
            .assert_ok();
        let records = read_records(&topic);
        assert!(records.len() > 30, "{}", records.len());
        assert!(records
            .iter()
            .all(|r| r["sequence_break"] == false && r["previous_final_update_id"].is_u64()));
        verify_ok(&topic, range);
        for ty in ["ws_mark_price", "ws_bookticker", "ws_liquidations"] {
            let topic = fresh_topic(&format!("{}-{ty}", m.market));
            let range = match ty {
                // Liquidations are sparse (a few a minute): the exchange's own schedule is
                // searched for the next 8 s holding at least three, so one arrives before the
                // disconnect and more after it, and the exchange's clock is put just before
                // them (the loader follows it).
                "ws_liquidations" => {
                    let symbols = [m.symbol, m.others[0], m.others[1]];
                    let from = live_range_after(sim.clock().now_ms(), 0).0;
                    let start = (0..6 * 3_600)
                        .map(|s| from + s * 1000)
                        .find(|&a| {
                            symbols
                                .iter()
                                .map(|sym| data::liquidations(m.sim, sym, a, a + 8_000 - 1).len())
                                .sum::<usize>()
                                >= 3
                        })
                        .expect("three liquidations in 8 s within six hours of the schedule");
                    sim.clock().set_now_ms(start - 2_000);
                    (start, start + 8_000)
                }
                _ => live_range_after(sim.clock().now_ms(), 8),
            };
            // Wait for the first record before cutting the connection.
            let records = run_through_a_disconnect(
                &sim,
                env(&sim, m, &topic, &symbols, ty, range),
                &topic,
                range,
                1,
            )
            .await;
            assert!(!records.is_empty(), "{} {ty}", m.market);
            assert!(records.iter().all(|r| r["market"] == m.market));
            verify_ok(&topic, range);
            match ty {
                "ws_mark_price" => {
                    for r in &records {
                        let t = r["timestamp"].as_i64().unwrap();
                        let sym = r["symbol"].as_str().unwrap();
                        assert_eq!(r["mark_price"], data::mark_price(m.sim, sym, t), "{r}");
                        assert!(r["funding_rate"].is_string() && r["next_funding_time"].is_i64());
                    }
                    // One a second per symbol on both sides of the reconnect.
                    let mid = (range.0 + range.1) / 2;
                    assert!(records
                        .iter()
                        .any(|r| r["timestamp"].as_i64().unwrap() < mid));
                    assert!(records
                        .iter()
                        .any(|r| r["timestamp"].as_i64().unwrap() >= mid));
                }
                "ws_liquidations" => {
                    // Every one published is the exchange's, and none is doubled.
                    for r in &records {
                        let sym = r["symbol"].as_str().unwrap();
                        let t = r["timestamp"].as_i64().unwrap();
                        let l = data::liquidations(m.sim, sym, t, t);
                        assert_eq!(l.len(), 1, "{r}");
                        assert_eq!(r["side"], l[0].side);
                        assert_eq!(r["price"], l[0].price);
                        assert_eq!(r["quantity"], l[0].qty);
                    }
                }
                _ => {}
            }
        }
    }
    sim.shutdown().await;
}

/// On a connection switch the connection being replaced may lag behind its replacement (a
/// congested link; here even Binance's `serverShutdown` notice arrives late): what the old one
/// still holds is published before the new one takes over, so mark prices keep every second
/// and diff depth keeps its `pu` chain, although Binance has no backfill for either.
#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_connection_hands_over_everything_it_had() {
    let sim = sim(
        250,
        WsFaults {
            shutdown_grace: Duration::from_secs(4),
            ..WsFaults::futures()
        },
    )
    .await;
    let m = USDM;
    let symbols = format!("{},{},{}", m.symbol, m.others[0], m.others[1]);
    for ty in ["ws_mark_price", "ws_depth"] {
        let topic = fresh_topic(&format!("{}-{ty}-lag", m.market));
        let range = live_range(10);
        let opened = sim.stats().ws_connections_opened;
        let handle = tokio::spawn(run_loader_async(
            env(&sim, m, &topic, &symbols, ty, range),
            vec![],
        ));
        let until_start =
            Duration::from_millis((range.0 - support::loader::now_ms()).max(0) as u64);
        wait_until(
            "records of the range published",
            until_start + Duration::from_secs(20),
            || published(&topic) >= 6,
        )
        .await;
        assert!(sim.lag_all(Duration::from_millis(1500)) > 0);
        assert!(sim.send_server_shutdown() > 0);
        handle.await.unwrap().assert_ok();
        assert!(
            sim.stats().ws_connections_opened >= opened + 2,
            "{ty}: the loader switched connections"
        );
        let records = read_records(&topic);
        verify_ok(&topic, range);
        match ty {
            "ws_mark_price" => {
                for sym in [m.symbol, m.others[0], m.others[1]] {
                    let mut times: Vec<i64> = records
                        .iter()
                        .filter(|r| r["symbol"] == sym)
                        .map(|r| r["timestamp"].as_i64().unwrap())
                        .collect();
                    times.sort_unstable();
                    assert!(
                        times.windows(2).all(|w| w[1] - w[0] == 1000),
                        "{sym}: a second is missing or doubled: {times:?}"
                    );
                    assert_eq!(times.last(), Some(&(range.1 - 1000)), "{sym}: {times:?}");
                }
            }
            _ => {
                assert!(records.len() > 30, "{}", records.len());
                let broken: Vec<&Value> = records
                    .iter()
                    .filter(|r| r["sequence_break"] != false)
                    .collect();
                assert!(broken.is_empty(), "updates lost at the switch: {broken:?}");
            }
        }
    }
    sim.shutdown().await;
}

/// Binance pushes `@forceOrder` only when a liquidation happens: a range in which none does is
/// a complete load of nothing (exit 0), not a stream that failed (a retried Job would fail for
/// good).
#[tokio::test(flavor = "multi_thread")]
async fn a_range_without_liquidations_is_a_complete_empty_load() {
    let sim = sim(60_000, WsFaults::futures()).await;
    let m = USDM;
    // The exchange's own schedule picks a 3 s range, within the next two minutes, in which the
    // symbol has no liquidation, nor in the seconds before it while the loader connects early,
    // nor in the seconds after it while the loader waits for late events (a liquidation there
    // reaches the stream, and a stream that delivered is not a silent one).
    let range = (0..120)
        .map(|s| {
            let (a, b) = live_range(3);
            (a + s * 1000, b + s * 1000)
        })
        .find(|&(a, b)| data::liquidations(m.sim, m.symbol, a - 5_000, b + 3_000).is_empty())
        .expect("a quiet 3 s within two minutes");
    let topic = fresh_topic("usdm-quiet-liquidations");
    let run = run_loader_async(
        env(&sim, m, &topic, m.symbol, "ws_liquidations", range),
        vec![],
    )
    .await;
    run.assert_ok();
    assert!(
        run.stderr.contains("pushes only when something happens"),
        "{}",
        run.stderr
    );
    assert_eq!(published(&topic), 0);
    sim.shutdown().await;
}
