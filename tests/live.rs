//! Live (WebSocket) types end to end: the simulator streams, drops, rotates, shuts down and
//! stalls connections; the topic must still hold every trade id and candle of the range exactly
//! once, equal to the exchange's REST data; order books must match the exchange's book.

mod support;

use std::time::Duration;

use exchange_sim::{data, Interval, SimConfig, SimServer, WsFaults};
use serde_json::Value;
use support::broker::Broker;
use support::loader::{
    fresh_topic, job_env, live_range, now_ms, published, read_raw, read_records, run_loader_async,
    wait_until, with, Run,
};

async fn sim(spacing_ms: i64, ws: WsFaults) -> SimServer {
    let cfg = SimConfig {
        agg_trade_spacing_ms: spacing_ms,
        ws,
        ..SimConfig::default()
    };
    support::sim(cfg).await
}

fn env(
    sim: &SimServer,
    topic: &str,
    symbol: &str,
    ty: &str,
    range: Option<(i64, i64)>,
) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("SYMBOL", symbol.to_string()),
        ("TYPE", ty.to_string()),
        ("KAFKA_TOPIC", topic.to_string()),
        ("KAFKA_BOOTSTRAP_SERVERS", Broker::shared().bootstrap()),
        ("BINANCE_API_URL", sim.base_url()),
        ("BINANCE_WS_URL", sim.ws_url()),
        ("METRICS_PORT", "0".to_string()),
        ("WS_IDLE_TIMEOUT", "1.5".to_string()),
    ];
    if let Some((a, b)) = range {
        e.push(("TIME_RANGE", format!("{a}:{b}")));
    }
    e
}

/// The trade ids in `topic`, in order.
fn trade_ids(topic: &str) -> Vec<u64> {
    read_records(topic)
        .iter()
        .map(|r| r["trade_id"].as_u64().unwrap())
        .collect()
}

/// The simulator's aggregate trade ids of `symbol` in `[range.0, range.1)` at `spacing_ms`.
fn exchange_trade_ids(spacing_ms: i64, symbol: &str, range: (i64, i64)) -> Vec<u64> {
    SimConfig {
        agg_trade_spacing_ms: spacing_ms,
        ..SimConfig::default()
    }
    .data()
    .trades_between(symbol, range.0, range.1 - 1)
    .iter()
    .map(|t| t.id)
    .collect()
}

/// Records published so far (0 while the topic does not exist yet).
/// `verify`, asking the simulator (trades are checked up to the range's edges there).
fn verify(sim: &SimServer, topic: &str, range: (i64, i64)) -> Run {
    support::loader::run_loader(
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", Broker::shared().bootstrap()),
            ("KAFKA_TOPIC", topic.to_string()),
            ("TIME_RANGE", format!("{}:{}", range.0, range.1)),
            ("BINANCE_API_URL", sim.base_url()),
        ],
        &["verify"],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_trades_survive_drops_rotations_and_shutdowns() {
    // The loader rotates every 1.5 s; the exchange also drops every connection once and
    // announces a shutdown once, mid-range.
    let sim = sim(20, WsFaults::default()).await;
    let topic = fresh_topic("ws-agg");
    let range = live_range(9);
    let handle = tokio::spawn(run_loader_async(
        with(
            env(&sim, &topic, "BTCUSDT", "ws_aggtrades", Some(range)),
            &[("WS_ROTATE_AFTER", "1.5")],
        ),
        vec![],
    ));
    // Mid-range: the loader has published trades of the range.
    wait_until(
        "trades of the range published",
        Duration::from_secs(20),
        || published(&topic) >= 50,
    )
    .await;
    assert!(
        sim.disconnect_all() > 0,
        "the loader is connected mid-range"
    );
    // Once it has reconnected and streams again, Binance announces a shutdown.
    let opened = sim.stats().ws_connections_opened;
    wait_until(
        "a new connection streaming",
        Duration::from_secs(10),
        || {
            let st = sim.stats();
            st.ws_connections_opened > opened && st.ws_connections_open > 0
        },
    )
    .await;
    assert!(
        sim.send_server_shutdown() > 0,
        "the loader is connected again"
    );
    let run = handle.await.unwrap();
    run.assert_ok();
    let records = read_records(&topic);
    let expected = SimConfig {
        agg_trade_spacing_ms: 20,
        ..SimConfig::default()
    }
    .data()
    .trades_between("BTCUSDT", range.0, range.1 - 1);
    assert!(expected.len() > 200, "{}", expected.len());
    let got: Vec<u64> = records
        .iter()
        .map(|r| r["trade_id"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = expected.iter().map(|t| t.id).collect();
    assert_eq!(
        got, want,
        "every aggregate trade of the range, once, in order"
    );
    for (r, t) in records.iter().zip(&expected) {
        assert_eq!(r["price"], t.price);
        assert_eq!(r["timestamp"], t.time);
    }
    let st = sim.stats();
    assert!(
        st.ws_forced_disconnects > 0 && st.ws_shutdown_notices > 0 && st.ws_connections_opened >= 4,
        "{st:?}"
    );
    let v = verify(&sim, &topic, range);
    assert_eq!(v.code, Some(0), "{}", v.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_trades_are_backfilled_after_a_stalled_connection() {
    // Connections go silent 2 s after opening: the loader must notice and reconnect.
    let ws = WsFaults {
        stall_after: Some(Duration::from_secs(2)),
        ..WsFaults::default()
    };
    let sim = sim(20, ws).await;
    let topic = fresh_topic("ws-trades");
    let range = live_range(7);
    let run = run_loader_async(
        env(&sim, &topic, "ETHUSDT", "ws_trades", Some(range)),
        vec![],
    )
    .await;
    run.assert_ok();
    let records = read_records(&topic);
    let data = SimConfig {
        agg_trade_spacing_ms: 20,
        ..SimConfig::default()
    }
    .data();
    let aggs = data.trades_between("ETHUSDT", range.0, range.1 - 1);
    let want: Vec<u64> = aggs
        .iter()
        .flat_map(|a| a.first_trade_id..=a.last_trade_id)
        .collect();
    let got: Vec<u64> = records
        .iter()
        .map(|r| r["trade_id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want, "every raw trade of the range, once, in order");
    for r in &records {
        let t = data
            .raw_trade("ETHUSDT", r["trade_id"].as_u64().unwrap())
            .unwrap();
        assert_eq!(r["price"], t.price);
        assert_eq!(r["quantity"], t.qty);
        assert_eq!(r["_key"], format!("ETHUSDT_trade_{}", t.id));
    }
    assert!(sim.stats().ws_stalled > 0);
    assert!(run.stderr.contains("presumed dead"), "{}", run.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_candles_match_rest_across_forced_disconnects() {
    let ws = WsFaults {
        drop_every: Some(Duration::from_millis(2500)),
        ..WsFaults::default()
    };
    let sim = sim(250, ws).await;
    let topic = fresh_topic("ws-candles");
    let range = live_range(8);
    let run = run_loader_async(
        env(&sim, &topic, "BTCUSDT,ETHUSDT", "ws_candles", Some(range)),
        vec![],
    )
    .await;
    assert_eq!(
        run.code,
        Some(2),
        "ws_candles without INTERVAL is a configuration error: {}",
        run.stderr
    );
    let run = run_loader_async(
        with(
            env(&sim, &topic, "BTCUSDT,ETHUSDT", "ws_candles", Some(range)),
            &[("INTERVAL", "1s")],
        ),
        vec![],
    )
    .await;
    run.assert_ok();
    let records = read_records(&topic);
    let iv: Interval = "1s".parse().unwrap();
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let mine: Vec<&Value> = records.iter().filter(|r| r["symbol"] == symbol).collect();
        let opens = data::interval_open_times(iv, range.0, range.1);
        assert_eq!(
            mine.len(),
            opens.len(),
            "{symbol}: one closed candle per second of the range"
        );
        for (r, open) in mine.iter().zip(&opens) {
            let k = data::kline(&sim.data(), symbol, iv, *open);
            assert_eq!(r["open_time"], *open);
            assert_eq!(r["close"], k.close);
            assert_eq!(r["volume"], k.volume);
            assert_eq!(r["number_of_trades"], k.trades);
        }
    }
    assert!(sim.stats().ws_forced_disconnects > 0);
    let v = verify(&sim, &topic, range);
    assert_eq!(v.code, Some(0), "{}", v.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn order_book_resyncs_after_a_gap_and_matches_the_exchange() {
    let ws = WsFaults {
        depth_gap_every: 15,
        ..WsFaults::default()
    };
    let sim = sim(250, ws).await;
    let topic = fresh_topic("ws-book");
    let range = live_range(5);
    let run = run_loader_async(
        with(
            env(&sim, &topic, "BTCUSDT", "ws_orderbook", Some(range)),
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
    assert!(records.len() >= 5, "{}", records.len());
    let mut resynced = false;
    for r in &records {
        let book = data::order_book("BTCUSDT", r["timestamp"].as_i64().unwrap());
        assert_eq!(r["last_update_id"], book.last_update_id, "{r}");
        let bids: Vec<[String; 2]> = book
            .bids
            .iter()
            .take(10)
            .map(|(p, q)| [p.clone(), q.clone()])
            .collect();
        let asks: Vec<[String; 2]> = book
            .asks
            .iter()
            .take(10)
            .map(|(p, q)| [p.clone(), q.clone()])
            .collect();
        assert_eq!(
            r["bids"],
            serde_json::json!(bids),
            "bids at {}",
            r["last_update_id"]
        );
        assert_eq!(
            r["asks"],
            serde_json::json!(asks),
            "asks at {}",
            r["last_update_id"]
        );
        resynced |= r["resyncs"].as_u64().unwrap() > 0;
    }
    assert!(resynced, "snapshots record that the book was resynced");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_depth_and_book_ticker_are_contiguous_and_unique() {
    let sim = sim(250, WsFaults::default()).await;
    for ty in ["ws_depth", "ws_bookticker"] {
        let topic = fresh_topic(ty);
        let range = live_range(4);
        let run = run_loader_async(
            with(
                env(&sim, &topic, "BNBUSDT", ty, Some(range)),
                &[("WS_ROTATE_AFTER", "1")],
            ),
            vec![],
        )
        .await;
        run.assert_ok();
        let records = read_records(&topic);
        assert!(records.len() >= 4, "{ty}: {}", records.len());
        let v = verify(&sim, &topic, range);
        assert_eq!(v.code, Some(0), "{ty}: {}", v.stdout);
        if ty == "ws_depth" {
            assert!(records.iter().all(|r| r["sequence_break"] == false));
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_job_without_a_range_runs_until_sigterm() {
    let sim = sim(50, WsFaults::default()).await;
    let topic = fresh_topic("ws-open");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loader-producer"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env(&sim, &topic, "BTCUSDT", "ws_aggtrades", None) {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("trades published", Duration::from_secs(20), || {
        published(&topic) > 10
    })
    .await;
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A signal is not the platform's stop: the load is not complete (exit 143).
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Stopped by SIGTERM"), "{stdout}");
    let ids: Vec<u64> = read_records(&topic)
        .iter()
        .map(|r| r["trade_id"].as_u64().unwrap())
        .collect();
    assert!(ids.len() > 10);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "contiguous ids");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_pings_are_answered_so_the_connection_lives() {
    // Pings every 200 ms, closed after 1 s without a pong.
    let ws = WsFaults {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_secs(1),
        ..WsFaults::default()
    };
    let sim = sim(50, ws).await;
    let topic = fresh_topic("ws-ping");
    let range = live_range(4);
    run_loader_async(
        env(&sim, &topic, "BTCUSDT", "ws_aggtrades", Some(range)),
        vec![],
    )
    .await
    .assert_ok();
    let st = sim.stats();
    assert!(st.ws_pings_sent >= 5 && st.ws_pongs_received >= 5, "{st:?}");
    assert_eq!(st.ws_pong_timeouts, 0, "{st:?}");
    assert_eq!(
        st.ws_connections_opened, 1,
        "one connection for the whole range: {st:?}"
    );
    let v = verify(&sim, &topic, range);
    assert_eq!(v.code, Some(0), "{}", v.stdout);
    sim.shutdown().await;
}

/// The trades of `symbol` at `spacing_ms`: (id, time) of the first trade `a` at least `lead_ms`
/// from now such that trade `a + n` is followed by a pause of at least `pause_ms` (a quiet
/// market: at the range's close, no trade after its end exists yet).
fn quiet_stretch(spacing_ms: i64, symbol: &str, lead_ms: i64, n: u64, pause_ms: i64) -> (i64, i64) {
    let data = SimConfig {
        agg_trade_spacing_ms: spacing_ms,
        ..SimConfig::default()
    }
    .data();
    let mut a = data.first_id_at_or_after(symbol, now_ms() + lead_ms);
    loop {
        let last = data.trade_time(symbol, a + n);
        if data.trade_time(symbol, a + n + 1) - last >= pause_ms {
            return (data.trade_time(symbol, a), last + 1);
        }
        a += 1;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_illiquid_stream_lost_before_the_end_still_closes_the_range() {
    // One trade every 4 s on average; the range ends right after a trade that the next one
    // follows by at least 3.5 s, so when the range is closed no trade at or after its end
    // exists yet. The stream goes silent after the first trade of the range.
    let sim = sim(4000, WsFaults::default()).await;
    let topic = fresh_topic("ws-quiet");
    let range = quiet_stretch(4000, "BTCUSDT", 3000, 3, 3500);
    let handle = tokio::spawn(run_loader_async(
        env(&sim, &topic, "BTCUSDT", "ws_aggtrades", Some(range)),
        vec![],
    ));
    wait_until(
        "the first trade of the range streamed",
        Duration::from_secs(30),
        || published(&topic) > 0,
    )
    .await;
    sim.set_ws_faults(WsFaults {
        stall: true,
        ..WsFaults::default()
    });
    sim.stall_all();
    let run = handle.await.unwrap();
    run.assert_ok();
    let want = exchange_trade_ids(4000, "BTCUSDT", range);
    let got = trade_ids(&topic);
    assert_eq!(want.len(), 4);
    assert_eq!(
        got, want,
        "the trades after the stream went silent are fetched up to the end"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_delivers_nothing_is_reported_after_the_range_is_closed() {
    // Every connection is silent from the start: nothing streamed at all. The range is still
    // closed over REST (nothing lost), and the job says the stream is the problem.
    let ws = WsFaults {
        stall: true,
        ..WsFaults::default()
    };
    let sim = sim(4000, ws).await;
    let topic = fresh_topic("ws-silent");
    let range = quiet_stretch(4000, "ETHUSDT", 2500, 2, 3500);
    let run = run_loader_async(
        env(&sim, &topic, "ETHUSDT", "ws_aggtrades", Some(range)),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("delivered nothing") && run.stderr.contains("BINANCE_WS_URL"),
        "{}",
        run.stderr
    );
    assert_eq!(
        trade_ids(&topic),
        exchange_trade_ids(4000, "ETHUSDT", range)
    );

    // A BINANCE_WS_URL path Binance does not serve: the same report, nothing lost.
    sim.set_ws_faults(WsFaults::default());
    let topic = fresh_topic("ws-badpath");
    let range = quiet_stretch(4000, "ETHUSDT", 2500, 1, 2000);
    let bad = format!("{}/nope", sim.ws_url());
    let run = run_loader_async(
        with(
            env(&sim, &topic, "ETHUSDT", "ws_aggtrades", Some(range)),
            &[("BINANCE_WS_URL", bad.as_str())],
        ),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("delivered nothing"), "{}", run.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_candles_end_like_rest_candles_and_the_ws_url_may_name_ws() {
    // A range ending mid-candle: the candle open at its end is published (once it closes), as
    // api_candles publishes it. BINANCE_WS_URL as the platform writes it, with /ws.
    let sim = sim(250, WsFaults::default()).await;
    let (start, _) = live_range(0);
    let range = (start, start + 3_500);
    let topic = fresh_topic("ws-candles-end");
    let ws = format!("{}/ws", sim.ws_url());
    let run = run_loader_async(
        with(
            env(&sim, &topic, "BTCUSDT", "ws_candles_1s", Some(range)),
            &[("BINANCE_WS_URL", ws.as_str())],
        ),
        vec![],
    )
    .await;
    run.assert_ok();
    let rest_topic = fresh_topic("rest-candles-end");
    let r = format!("{}:{}", range.0, range.1);
    run_loader_async(
        job_env(
            &sim.base_url(),
            &rest_topic,
            "BTCUSDT",
            "api_candles_1s",
            &r,
        ),
        vec![],
    )
    .await
    .assert_ok();
    let live = read_raw(&topic);
    assert_eq!(live.len(), 4, "open times start .. start+3 s");
    assert!(
        live == read_raw(&rest_topic),
        "the same candles, byte for byte, as api_candles_1s"
    );
    assert!(
        sim.stats().ws_messages_sent > 0,
        "they came from the stream"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_streams_subscribe_instead_of_a_long_url() {
    // 120 symbols make a combined-stream URL of about 2,300 characters: the streams are
    // subscribed to with SUBSCRIBE messages, within Binance's 5 messages a second.
    let sim = sim(250, WsFaults::default()).await;
    let symbols: Vec<String> = (0..120).map(|i| format!("SYM{i:03}USDT")).collect();
    let topic = fresh_topic("ws-many");
    let range = live_range(3);
    let run = run_loader_async(
        env(
            &sim,
            &topic,
            &symbols.join(","),
            "ws_bookticker",
            Some(range),
        ),
        vec![],
    )
    .await;
    run.assert_ok();
    let records = read_records(&topic);
    for s in &symbols {
        assert!(
            records.iter().any(|r| r["symbol"] == s.as_str()),
            "no record of {s}"
        );
    }
    let st = sim.stats();
    assert_eq!(
        (st.ws_connections_opened, st.ws_rate_limit_closes),
        (1, 0),
        "{st:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_failure_reports_kafkas_reason() {
    // Order-book snapshots of 100 levels are several kilobytes; Kafka (librdkafka) refuses
    // messages over message.max.bytes. The error must say so, not only that the sink stopped.
    let sim = sim(250, WsFaults::default()).await;
    let topic = fresh_topic("ws-too-large");
    let run = run_loader_async(
        with(
            env(&sim, &topic, "BTCUSDT", "ws_orderbook", Some(live_range(3))),
            &[
                ("ORDERBOOK_DEPTH", "100"),
                ("ORDERBOOK_SNAPSHOT_INTERVAL", "0.2"),
                ("KAFKA_PRODUCER_CONFIG", "message.max.bytes=1000"),
            ],
        ),
        vec![],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.to_ascii_lowercase().contains("too large"),
        "the cause is lost: {last}"
    );
    assert!(!last.contains("sink stopped"), "{last}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_backfill_paused_by_retry_after_stops_within_seconds() {
    // A range that began a minute ago: the first streamed trade makes the loader fetch the
    // minute over REST, and Binance answers 429 with Retry-After: 60. SIGTERM must not wait
    // for that minute.
    let sim = sim(50, WsFaults::default()).await;
    let topic = fresh_topic("ws-sigterm-backfill");
    let now = now_ms();
    let range = (now - 60_000, now + 60_000);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loader-producer"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env(&sim, &topic, "BTCUSDT", "ws_aggtrades", Some(range)) {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once connected to Binance (exchangeInfo answered), every REST request is refused.
    wait_until("the loader connected", Duration::from_secs(20), || {
        sim.stats()
            .per_endpoint
            .contains_key("/api/v3/exchangeInfo")
    })
    .await;
    sim.set_faults(exchange_sim::Faults {
        storm: Some(exchange_sim::Storm {
            status: 429,
            count: 1_000,
            retry_after_secs: 60,
            code: None,
        }),
        ..exchange_sim::Faults::default()
    });
    wait_until(
        "the backfill hit the rate limit",
        Duration::from_secs(20),
        || sim.stats().responses_429 > 0,
    )
    .await;
    let signalled = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let took = signalled.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A signal is not the platform's stop: the load is not complete (exit 143).
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Stopped by SIGTERM"), "{stdout}");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    sim.shutdown().await;
}
