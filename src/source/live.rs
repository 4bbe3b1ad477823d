//! `LiveSource`: live WebSocket data (`ws_*` types) for a set of symbols over combined streams,
//! with nothing lost and nothing doubled across reconnects, rotations and server shutdowns.
//!
//! Every connection's events go through one loop, so de-duplication is a comparison with the last
//! id published per symbol. A connection is replaced before Binance's 24-hour cut (or on
//! `serverShutdown`) by opening the new one first and dropping the old one when the new one
//! delivers. A dead connection is replaced with backoff, within Binance's connection-attempt
//! limit. Whatever a gap let through is fetched over REST before the next record is published:
//! trades and aggregate trades by id, candles by time; order books are rebuilt from a new snapshot
//! when their diff sequence breaks, and say how often they were.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SourceSummary;
use crate::binance::stream::{self, ConnectionAttempts, StreamMessage};
use crate::binance::{exchange_error, Exchange, Interval};
use crate::config::{LiveConfig, LiveType};
use crate::error::{LoaderError, Result};
use crate::record::{
    BookTickerRecord, DepthUpdateRecord, OrderBookRecord, RawAggTrade, RawKline, RecordBatch,
    TradeRecord,
};
use crate::status::LiveStatus;
use crate::time_range::TimeRange;

const HOUR_MS: i64 = 3_600_000;

/// Everything a live source needs.
pub struct LiveSource {
    pub exchange: Arc<Exchange>,
    pub live_type: LiveType,
    pub symbols: Vec<Arc<str>>,
    pub range: Option<TimeRange>,
    pub ws_url: String,
    pub cfg: LiveConfig,
    pub page_limit: u32,
    pub status: Arc<LiveStatus>,
    pub stop: CancellationToken,
}

#[derive(Deserialize)]
struct WsTrade<'a> {
    #[serde(rename = "E")]
    event_time: i64,
    t: u64,
    p: &'a str,
    q: &'a str,
    #[serde(rename = "T")]
    time: i64,
    m: bool,
    #[serde(rename = "M", default)]
    best_match: bool,
}

#[derive(Deserialize)]
struct WsKlineEvent<'a> {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(borrow)]
    k: WsKline<'a>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsKline<'a> {
    t: i64,
    T: i64,
    o: &'a str,
    c: &'a str,
    h: &'a str,
    l: &'a str,
    v: &'a str,
    n: u64,
    x: bool,
    q: &'a str,
    V: &'a str,
    Q: &'a str,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsDepth<'a> {
    E: i64,
    U: u64,
    u: u64,
    #[serde(borrow)]
    b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    a: Vec<[&'a str; 2]>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsBookTicker<'a> {
    u: u64,
    b: &'a str,
    B: &'a str,
    a: &'a str,
    A: &'a str,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RestTrade<'a> {
    id: u64,
    price: &'a str,
    qty: &'a str,
    time: i64,
    isBuyerMaker: bool,
    #[serde(default)]
    isBestMatch: bool,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RestDepth {
    lastUpdateId: u64,
    bids: Vec<[String; 2]>,
    asks: Vec<[String; 2]>,
}

/// A price as an integer of 1e-8 units, so levels sort exactly.
fn price_key(p: &str) -> Option<i128> {
    let (int, frac) = p.split_once('.').unwrap_or((p, ""));
    if frac.len() > 18 {
        return None;
    }
    let mut v: i128 = int.parse().ok()?;
    let mut digits = 0;
    for ch in frac.bytes().take(8) {
        v = v * 10 + (ch as char).to_digit(10)? as i128;
        digits += 1;
    }
    for _ in digits..8 {
        v *= 10;
    }
    Some(v)
}

fn is_zero(q: &str) -> bool {
    q.bytes().all(|b| b == b'0' || b == b'.')
}

/// A local order book per Binance's procedure: snapshot, then contiguous diffs.
#[derive(Default)]
struct Book {
    bids: BTreeMap<i128, (String, String)>,
    asks: BTreeMap<i128, (String, String)>,
    last_update_id: u64,
    /// No snapshot yet, or the sequence broke.
    needs_snapshot: bool,
    /// The snapshot is in place; the first applied diff must straddle it.
    awaiting_first: bool,
    last_event_ms: i64,
    published_update_id: u64,
}

impl Book {
    fn apply_levels(side: &mut BTreeMap<i128, (String, String)>, levels: &[[&str; 2]]) {
        for [p, q] in levels {
            let Some(k) = price_key(p) else { continue };
            if is_zero(q) {
                side.remove(&k);
            } else {
                side.insert(k, (p.to_string(), q.to_string()));
            }
        }
    }

    fn load_snapshot(&mut self, snap: RestDepth) {
        self.bids.clear();
        self.asks.clear();
        for [p, q] in &snap.bids {
            Self::apply_levels(&mut self.bids, &[[p.as_str(), q.as_str()]]);
        }
        for [p, q] in &snap.asks {
            Self::apply_levels(&mut self.asks, &[[p.as_str(), q.as_str()]]);
        }
        self.last_update_id = snap.lastUpdateId;
        self.needs_snapshot = false;
        self.awaiting_first = true;
    }
}

/// Per-symbol progress.
struct SymbolState {
    symbol: Arc<str>,
    batch: RecordBatch,
    summary: SourceSummary,
    /// Last trade id / aggregate id / depth or ticker update id published.
    last_id: Option<u64>,
    /// Last closed candle open time published.
    last_open: Option<i64>,
    /// Reached the range end.
    done: bool,
    book: Book,
}

/// A connection task and when it started.
struct Conn {
    id: u64,
    opened: Instant,
    task: JoinHandle<()>,
    delivered: bool,
}

impl LiveSource {
    fn streams(&self) -> Vec<String> {
        self.symbols
            .iter()
            .map(|s| self.live_type.stream(s))
            .collect()
    }

    fn new_batch(&self, symbol: &Arc<str>) -> RecordBatch {
        RecordBatch::new(symbol.clone(), 256)
    }

    pub async fn run(self, tx: mpsc::Sender<RecordBatch>) -> Result<Vec<SourceSummary>> {
        let mut states: Vec<SymbolState> = self
            .symbols
            .iter()
            .map(|s| SymbolState {
                symbol: s.clone(),
                batch: self.new_batch(s),
                summary: SourceSummary {
                    symbol: s.to_string(),
                    ..Default::default()
                },
                last_id: None,
                last_open: None,
                done: false,
                book: Book {
                    needs_snapshot: true,
                    ..Default::default()
                },
            })
            .collect();
        let by_stream: HashMap<String, usize> = self
            .streams()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i))
            .collect();

        // Wait for the range to begin (connecting a moment early so its first trades are seen).
        if let Some(r) = self.range {
            let wait = r.start_ms - self.exchange.server_now_ms() - 2_000;
            if wait > 0 {
                tracing::info!(
                    wait_s = wait / 1000,
                    "TIME_RANGE starts in the future: waiting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = self.stop.cancelled() => return Ok(states.into_iter().map(|s| s.summary).collect()),
                }
            }
        }

        let url = stream::combined_url(&self.ws_url, &self.streams());
        let (msg_tx, mut msg_rx) = mpsc::channel::<StreamMessage>(8192);
        let mut attempts = ConnectionAttempts::new(300, Duration::from_secs(300));
        let mut next_id = 0u64;
        let mut spawn = |delay: Duration, attempts: &mut ConnectionAttempts| -> Conn {
            next_id += 1;
            let id = next_id;
            let delay = delay.max(attempts.reserve());
            let (url, tx, idle) = (url.clone(), msg_tx.clone(), self.cfg.idle_timeout);
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                stream::run_connection(url, id, idle, tx).await;
            });
            Conn {
                id,
                opened: Instant::now() + delay,
                task,
                delivered: false,
            }
        };
        let mut active = spawn(Duration::ZERO, &mut attempts);
        let mut pending: Option<Conn> = None;
        let mut failures = 0u32;
        let mut reconnects = 0u64;

        let mut flush = tokio::time::interval(Duration::from_millis(100));
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        let mut book_tick = tokio::time::interval(self.cfg.book_snapshot_interval);
        let is_book = self.live_type == LiveType::OrderBook;

        let outcome: Result<()> = loop {
            tokio::select! {
                _ = self.stop.cancelled() => break Ok(()),
                msg = msg_rx.recv() => {
                    let Some(msg) = msg else { break Ok(()) };
                    match msg {
                        StreamMessage::Connected { conn } => tracing::info!(conn, "live stream connected"),
                        StreamMessage::Event { conn, stream, data } => {
                            if pending.as_ref().is_some_and(|p| p.id == conn) {
                                // The replacement delivers: switch over, drop the old one.
                                let new = pending.take().unwrap();
                                active.task.abort();
                                tracing::info!(old = active.id, new = new.id, "switched to the new connection");
                                active = new;
                            }
                            if conn == active.id {
                                active.delivered = true;
                                failures = 0;
                            }
                            let Some(&idx) = by_stream.get(&stream) else {
                                tracing::debug!(stream, "event for an unknown stream");
                                continue;
                            };
                            if let Err(e) = self.on_event(&mut states[idx], data.get()).await {
                                break Err(e);
                            }
                        }
                        StreamMessage::ServerShutdown { conn } => {
                            if conn == active.id && pending.is_none() {
                                tracing::warn!(conn, "Binance announced a server shutdown: opening a replacement connection");
                                pending = Some(spawn(Duration::ZERO, &mut attempts));
                            }
                        }
                        StreamMessage::Closed { conn, reason } => {
                            if conn == active.id {
                                reconnects += 1;
                                tracing::warn!(conn, %reason, "live connection lost");
                                if let Some(p) = pending.take() {
                                    active = p;
                                } else {
                                    failures += 1;
                                    let delay = if active.delivered && failures == 1 { Duration::ZERO } else { backoff(failures) };
                                    active = spawn(delay, &mut attempts);
                                }
                            } else if pending.as_ref().is_some_and(|p| p.id == conn) {
                                tracing::warn!(conn, %reason, "replacement connection failed; will retry");
                                pending = None;
                            }
                        }
                    }
                }
                _ = flush.tick() => {
                    if let Err(e) = self.flush(&mut states, &tx).await {
                        break Err(e);
                    }
                }
                _ = book_tick.tick(), if is_book => {
                    for st in states.iter_mut() {
                        publish_book(st, self.cfg.book_depth);
                    }
                }
                _ = housekeeping.tick() => {
                    if pending.is_none() && active.opened.elapsed() >= self.cfg.rotate_after {
                        tracing::info!(conn = active.id, "rotating the connection before Binance's 24-hour cut");
                        pending = Some(spawn(Duration::ZERO, &mut attempts));
                    }
                    if let Some(r) = self.range {
                        // Give the last events a moment to arrive, then close the range by REST.
                        if self.exchange.server_now_ms() >= r.end_ms + 1_500 {
                            let mut result = Ok(());
                            for st in states.iter_mut() {
                                if let Err(e) = self.backfill_to_end(st, r.end_ms).await {
                                    result = Err(e);
                                    break;
                                }
                            }
                            break result;
                        }
                    }
                }
            }
        };
        active.task.abort();
        if let Some(p) = pending {
            p.task.abort();
        }
        // Whatever was received is published, also on stop.
        if is_book {
            for st in states.iter_mut() {
                publish_book(st, self.cfg.book_depth);
            }
        }
        self.flush(&mut states, &tx).await?;
        outcome?;
        let mut out: Vec<SourceSummary> = states.into_iter().map(|s| s.summary).collect();
        if let Some(first) = out.first_mut() {
            first.reconnects = reconnects;
        }
        Ok(out)
    }

    async fn flush(
        &self,
        states: &mut [SymbolState],
        tx: &mpsc::Sender<RecordBatch>,
    ) -> Result<()> {
        for st in states.iter_mut() {
            if st.batch.is_empty() {
                continue;
            }
            let batch = std::mem::replace(&mut st.batch, self.new_batch(&st.symbol));
            st.summary.note(&batch);
            if tx.send(batch).await.is_err() {
                return Err(LoaderError::Other("the Kafka sink stopped".into()));
            }
        }
        Ok(())
    }

    fn in_range(&self, t: i64) -> RangePos {
        match self.range {
            Some(r) if t < r.start_ms => RangePos::Before,
            Some(r) if t >= r.end_ms => RangePos::After,
            _ => RangePos::In,
        }
    }

    /// Whether an event at `t` belongs to the range; one past its end finishes the symbol.
    fn admit(&self, st: &mut SymbolState, t: i64) -> bool {
        match self.in_range(t) {
            RangePos::In => true,
            RangePos::Before => false,
            RangePos::After => {
                st.done = true;
                false
            }
        }
    }

    fn note_event(&self, t: i64) {
        self.status.last_event_ms.fetch_max(t, Ordering::Relaxed);
    }

    async fn on_event(&self, st: &mut SymbolState, data: &str) -> Result<()> {
        if st.done {
            return Ok(());
        }
        let bad = |e: serde_json::Error| {
            LoaderError::Exchange(format!("unexpected live event ({e}): {data:.200}"))
        };
        match self.live_type {
            LiveType::AggTrades => {
                let t: RawAggTrade = serde_json::from_str(data).map_err(bad)?;
                self.note_event(t.time);
                if self.before_first(st, t.time).await? {
                    return Ok(());
                }
                if self.catch_up(st, t.a).await? {
                    self.push_agg(st, &t);
                }
            }
            LiveType::Trades => {
                let t: WsTrade = serde_json::from_str(data).map_err(bad)?;
                self.note_event(t.event_time);
                if self.before_first(st, t.time).await? {
                    return Ok(());
                }
                if self.catch_up(st, t.t).await? {
                    self.push_raw(st, t.t, t.p, t.q, t.time, t.m, t.best_match);
                }
            }
            LiveType::Candles(iv) => {
                let ev: WsKlineEvent = serde_json::from_str(data).map_err(bad)?;
                self.note_event(ev.event_time);
                let k = &ev.k;
                if !k.x {
                    if self.cfg.all_kline_updates
                        && self.in_range(k.t) == RangePos::In
                        && st.last_open.is_none_or(|l| k.t > l)
                    {
                        push_kline(st, iv, k);
                    }
                    return Ok(());
                }
                if !self.admit(st, k.t) {
                    return Ok(());
                }
                let from = match st.last_open {
                    Some(last) if k.t <= last => return Ok(()),
                    Some(last) => Some(iv.next_open(last)),
                    None => self.range.map(|r| iv.align_up(r.start_ms)),
                };
                if let Some(from) = from.filter(|&f| f < k.t) {
                    self.backfill_klines(st, iv, from, k.t).await?;
                }
                push_kline(st, iv, k);
                st.last_open = Some(k.t);
            }
            LiveType::Depth => {
                let d: WsDepth = serde_json::from_str(data).map_err(bad)?;
                self.note_event(d.E);
                if !self.admit(st, d.E) {
                    return Ok(());
                }
                let mut sequence_break = false;
                if let Some(last) = st.last_id {
                    if d.u <= last {
                        return Ok(());
                    }
                    if d.U != last + 1 {
                        sequence_break = true;
                        st.summary.sequence_breaks += 1;
                        tracing::warn!(symbol = %st.symbol, expected = last + 1, got = d.U, "diff depth sequence broke: updates were lost");
                    }
                }
                let key = format!("{}_depth_{}", st.symbol, d.u);
                let symbol = st.symbol.clone();
                st.batch.push_record(
                    d.E,
                    &key,
                    &DepthUpdateRecord {
                        _key: &key,
                        symbol: &symbol,
                        timestamp: d.E,
                        first_update_id: d.U,
                        final_update_id: d.u,
                        bids: &d.b,
                        asks: &d.a,
                        sequence_break,
                    },
                );
                st.last_id = Some(d.u);
            }
            LiveType::BookTicker => {
                let b: WsBookTicker = serde_json::from_str(data).map_err(bad)?;
                let now = chrono::Utc::now().timestamp_millis();
                self.note_event(now);
                if !self.admit(st, now) {
                    return Ok(());
                }
                if st.last_id.is_some_and(|last| b.u <= last) {
                    return Ok(());
                }
                let key = format!("{}_bookticker_{}", st.symbol, b.u);
                let symbol = st.symbol.clone();
                st.batch.push_record(
                    now,
                    &key,
                    &BookTickerRecord {
                        _key: &key,
                        symbol: &symbol,
                        timestamp: now,
                        update_id: b.u,
                        best_bid_price: b.b,
                        best_bid_qty: b.B,
                        best_ask_price: b.a,
                        best_ask_qty: b.A,
                    },
                );
                st.last_id = Some(b.u);
            }
            LiveType::OrderBook => {
                let d: WsDepth = serde_json::from_str(data).map_err(bad)?;
                self.note_event(d.E);
                if !self.admit(st, d.E) {
                    return Ok(());
                }
                self.on_book_diff(st, &d).await?;
            }
        }
        Ok(())
    }

    /// Checks a streamed trade id against the last one published: `false` for a duplicate (an
    /// overlapping connection); after a gap, the missing ids are fetched over REST first.
    async fn catch_up(&self, st: &mut SymbolState, id: u64) -> Result<bool> {
        if let Some(last) = st.last_id {
            if id <= last {
                return Ok(false);
            }
            if id > last + 1 {
                self.backfill_ids(st, last + 1, id).await?;
            }
        }
        Ok(true)
    }

    /// Trades with ids in `[from, to)` over REST: raw trades or aggregate trades by type.
    async fn backfill_ids(&self, st: &mut SymbolState, from: u64, to: u64) -> Result<()> {
        if self.live_type == LiveType::Trades {
            self.backfill_raw(st, from, to).await
        } else {
            self.backfill_agg(st, from, to).await
        }
    }

    /// For trade streams: is this trade before the range (skip it)? On the first in-range trade
    /// of a range that started in the past, fetches the trades since the start first.
    async fn before_first(&self, st: &mut SymbolState, time: i64) -> Result<bool> {
        if !self.admit(st, time) {
            return Ok(true);
        }
        if st.last_id.is_none() {
            if let Some(r) = self.range.filter(|r| r.start_ms < time) {
                if let Some((agg_id, raw_id)) = self
                    .first_ids_at_or_after(&st.symbol, r.start_ms, time)
                    .await?
                {
                    let first = if self.live_type == LiveType::Trades {
                        raw_id
                    } else {
                        agg_id
                    };
                    // Everything from the start up to (not including) the streamed trade.
                    st.last_id = Some(first.saturating_sub(1));
                    if first == 0 {
                        st.last_id = None;
                    }
                }
            }
        }
        Ok(false)
    }

    /// The first aggregate id (and its first raw trade id) at or after `t`, before `until`.
    async fn first_ids_at_or_after(
        &self,
        symbol: &str,
        t: i64,
        until: i64,
    ) -> Result<Option<(u64, u64)>> {
        let mut from = t;
        while from < until {
            let to = (from + HOUR_MS - 1).min(until - 1);
            let q = [
                ("symbol", symbol.to_string()),
                ("startTime", from.to_string()),
                ("endTime", to.to_string()),
                ("limit", "1".to_string()),
            ];
            let body = self.rest("/api/v3/aggTrades", &q, 4, symbol).await?;
            let rows: Vec<RawAggTrade> = parse(&body)?;
            if let Some(r) = rows.first() {
                return Ok(Some((r.a, r.f)));
            }
            from = to + 1;
        }
        Ok(None)
    }

    async fn rest(
        &self,
        path: &str,
        q: &[(&str, String)],
        weight: u32,
        symbol: &str,
    ) -> Result<bytes::Bytes> {
        self.exchange
            .client
            .get(path, q, weight)
            .await
            .map_err(|e| exchange_error(e, Some(symbol)))
    }

    fn push_agg(&self, st: &mut SymbolState, t: &RawAggTrade<'_>) {
        st.batch.push_agg_trade(t);
        st.last_id = Some(t.a);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_raw(
        &self,
        st: &mut SymbolState,
        id: u64,
        price: &str,
        qty: &str,
        time: i64,
        maker: bool,
        best: bool,
    ) {
        let key = format!("{}_trade_{}", st.symbol, id);
        let symbol = st.symbol.clone();
        st.batch.push_record(
            time,
            &key,
            &TradeRecord {
                _key: &key,
                symbol: &symbol,
                trade_id: id,
                price,
                quantity: qty,
                timestamp: time,
                is_buyer_maker: maker,
                is_best_match: best,
            },
        );
        st.last_id = Some(id);
    }

    /// Aggregate trades with ids in `[from, to)` from REST, within the range.
    async fn backfill_agg(&self, st: &mut SymbolState, mut from: u64, to: u64) -> Result<()> {
        tracing::info!(symbol = %st.symbol, from, to, "backfilling aggregate trades missed by the stream");
        while from < to {
            let limit = (to - from).min(self.page_limit as u64);
            let q = [
                ("symbol", st.symbol.to_string()),
                ("fromId", from.to_string()),
                ("limit", limit.to_string()),
            ];
            let body = self.rest("/api/v3/aggTrades", &q, 4, &st.symbol).await?;
            let rows: Vec<RawAggTrade> = parse(&body)?;
            let mut progressed = false;
            let lo = from;
            for r in rows.iter().filter(|r| r.a >= lo && r.a < to) {
                if self.in_range(r.time) == RangePos::After {
                    st.done = true;
                    return Ok(());
                }
                if r.a > from {
                    st.summary.gaps.push((from, r.a - 1));
                }
                self.push_agg(st, r);
                st.summary.backfilled += 1;
                from = r.a + 1;
                progressed = true;
            }
            if !progressed {
                // The exchange has none of these ids: a real gap in its data.
                st.summary.gaps.push((from, to - 1));
                break;
            }
        }
        Ok(())
    }

    /// Raw trades with ids in `[from, to)` from REST (`historicalTrades`, weight 25).
    async fn backfill_raw(&self, st: &mut SymbolState, mut from: u64, to: u64) -> Result<()> {
        tracing::info!(symbol = %st.symbol, from, to, "backfilling trades missed by the stream");
        while from < to {
            let limit = (to - from).min(self.page_limit as u64);
            let q = [
                ("symbol", st.symbol.to_string()),
                ("fromId", from.to_string()),
                ("limit", limit.to_string()),
            ];
            let body = self
                .rest("/api/v3/historicalTrades", &q, 25, &st.symbol)
                .await?;
            let rows: Vec<RestTrade> = parse(&body)?;
            let mut progressed = false;
            let lo = from;
            for r in rows.iter().filter(|r| r.id >= lo && r.id < to) {
                if self.in_range(r.time) == RangePos::After {
                    st.done = true;
                    return Ok(());
                }
                if r.id > from {
                    st.summary.gaps.push((from, r.id - 1));
                }
                self.push_raw(
                    st,
                    r.id,
                    r.price,
                    r.qty,
                    r.time,
                    r.isBuyerMaker,
                    r.isBestMatch,
                );
                st.summary.backfilled += 1;
                from = r.id + 1;
                progressed = true;
            }
            if !progressed {
                st.summary.gaps.push((from, to - 1));
                break;
            }
        }
        Ok(())
    }

    /// Closed candles with open time in `[from, to)` from REST.
    async fn backfill_klines(
        &self,
        st: &mut SymbolState,
        iv: Interval,
        mut from: i64,
        to: i64,
    ) -> Result<()> {
        tracing::info!(symbol = %st.symbol, from, to, "backfilling candles missed by the stream");
        let now = self.exchange.server_now_ms();
        let iv_name = iv.to_string();
        while from < to {
            let q = [
                ("symbol", st.symbol.to_string()),
                ("interval", iv_name.clone()),
                ("startTime", from.to_string()),
                ("endTime", (to - 1).to_string()),
                ("limit", self.page_limit.to_string()),
            ];
            let body = self.rest("/api/v3/klines", &q, 2, &st.symbol).await?;
            let rows: Vec<RawKline> = parse(&body)?;
            let n = rows.len();
            let lo = from;
            for r in rows.iter().filter(|r| r.0 >= lo && r.0 < to && r.6 < now) {
                st.batch.push_kline(&iv_name, r);
                st.last_open = Some(r.0);
                st.summary.backfilled += 1;
                from = iv.next_open(r.0);
            }
            if n < self.page_limit as usize {
                break;
            }
        }
        Ok(())
    }

    /// At the range end: fetch what the stream had not delivered yet, so the range is complete.
    async fn backfill_to_end(&self, st: &mut SymbolState, end: i64) -> Result<()> {
        match self.live_type {
            LiveType::AggTrades | LiveType::Trades => {
                let Some(last) = st.last_id else {
                    return Ok(());
                };
                // The first id at or after the end bounds what is still missing.
                let until = self.exchange.server_now_ms();
                let Some((agg_end, raw_end)) =
                    self.first_ids_at_or_after(&st.symbol, end, until).await?
                else {
                    return Ok(());
                };
                st.done = false;
                let end_id = if self.live_type == LiveType::Trades {
                    raw_end
                } else {
                    agg_end
                };
                self.backfill_ids(st, last + 1, end_id).await?;
                st.done = true;
            }
            LiveType::Candles(iv) => {
                let from = match (st.last_open, self.range) {
                    (Some(l), _) => iv.next_open(l),
                    (None, Some(r)) => iv.align_up(r.start_ms),
                    _ => return Ok(()),
                };
                self.backfill_klines(st, iv, from, end).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_book_diff(&self, st: &mut SymbolState, d: &WsDepth<'_>) -> Result<()> {
        loop {
            if st.book.needs_snapshot {
                let q = [
                    ("symbol", st.symbol.to_string()),
                    ("limit", "1000".to_string()),
                ];
                let body = self.rest("/api/v3/depth", &q, 50, &st.symbol).await?;
                let snap: RestDepth = serde_json::from_slice(&body).map_err(|e| {
                    LoaderError::Exchange(format!("unexpected depth snapshot: {e}"))
                })?;
                tracing::info!(symbol = %st.symbol, last_update_id = snap.lastUpdateId, "order book snapshot loaded");
                st.book.load_snapshot(snap);
            }
            let book = &mut st.book;
            if d.u <= book.last_update_id {
                return Ok(()); // already in the snapshot, or a duplicate
            }
            let fits = if book.awaiting_first {
                d.U <= book.last_update_id + 1
            } else {
                d.U == book.last_update_id + 1
            };
            if !fits {
                st.summary.resyncs += 1;
                tracing::warn!(symbol = %st.symbol, expected = book.last_update_id + 1, got = d.U,
                    "order book diff sequence broke: resyncing from a new snapshot");
                book.needs_snapshot = true;
                continue;
            }
            Book::apply_levels(&mut book.bids, &d.b);
            Book::apply_levels(&mut book.asks, &d.a);
            book.last_update_id = d.u;
            book.awaiting_first = false;
            book.last_event_ms = d.E;
            return Ok(());
        }
    }
}

fn publish_book(st: &mut SymbolState, depth: usize) {
    let book = &mut st.book;
    if book.needs_snapshot || book.awaiting_first || book.last_update_id == book.published_update_id
    {
        return;
    }
    let bids: Vec<[&str; 2]> = book
        .bids
        .values()
        .rev()
        .take(depth)
        .map(|(p, q)| [p.as_str(), q.as_str()])
        .collect();
    let asks: Vec<[&str; 2]> = book
        .asks
        .values()
        .take(depth)
        .map(|(p, q)| [p.as_str(), q.as_str()])
        .collect();
    let (ts, id, resyncs) = (book.last_event_ms, book.last_update_id, st.summary.resyncs);
    let key = format!("{}_book_{}", st.symbol, id);
    let symbol = st.symbol.clone();
    st.batch.push_record(
        ts,
        &key,
        &OrderBookRecord {
            _key: &key,
            symbol: &symbol,
            timestamp: ts,
            last_update_id: id,
            bids,
            asks,
            resyncs,
        },
    );
    book.published_update_id = id;
}

fn push_kline(st: &mut SymbolState, iv: Interval, k: &WsKline<'_>) {
    let raw = RawKline(
        k.t, k.o, k.h, k.l, k.c, k.v, k.T, k.q, k.n, k.V, k.Q, IgnoredAny,
    );
    st.batch.push_kline(iv.as_str(), &raw);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangePos {
    Before,
    In,
    After,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        LoaderError::Exchange(format!("unexpected REST answer while backfilling: {e}"))
    })
}

/// Reconnect backoff with jitter: 250 ms doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    let cap = 250u64.saturating_mul(1 << failures.min(7)).min(30_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_sort_exactly() {
        assert_eq!(price_key("33365.39000000"), Some(3_336_539_000_000));
        assert_eq!(price_key("0.00000001"), Some(1));
        assert_eq!(price_key("12"), Some(1_200_000_000));
        assert!(price_key("1.2x").is_none());
        assert!(is_zero("0.00000000") && !is_zero("0.00000001"));
    }
}
