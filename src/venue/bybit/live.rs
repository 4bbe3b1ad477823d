//! Bybit's live feed (`EXCHANGE=bybit`, `ws_*` types) from its v5 public streams
//! (`BYBIT_WS_URL`, `/v5/public/{category}`): trades (`publicTrade`), closed candles
//! (`kline`), the best bid and ask (`orderbook.1`), a local order book (`orderbook.{depth}`,
//! a snapshot and then deltas) and liquidations (`allLiquidation`). The rules it keeps are in
//! [`rules`] (WebSocket Connect, Trade, Kline, Orderbook and All Liquidation pages of
//! bybit-exchange.github.io/docs/v5/websocket/public).
//!
//! What a gap costs differs by type:
//! - trades carry no sequence (a derivatives trade's id is a UUID): each is keyed by its
//!   millisecond and its rank among that millisecond's trades, as the archive's are, and a
//!   stream that may have missed some (its first event, a connection lost) is backfilled from
//!   `recent-trade`, which holds only the latest trades ([`rules::recent_trade_limit`]): a gap
//!   longer than that is counted (`sequence_breaks`) and said, since nothing can fill it
//!   before the archive has the day;
//! - closed candles missed are fetched over REST (`kline`), as history;
//! - a book delta that does not follow the last one (`u` + 1) asks for a fresh subscription,
//!   whose snapshot rebuilds the book (Bybit has no REST snapshot that chains with the
//!   stream's updates); a snapshot on the stream (`u` = 1 after Bybit restarts a service)
//!   replaces the book as well;
//! - liquidations carry no id and Bybit serves no history of them: each is keyed by its
//!   millisecond and its rank among that millisecond's (told apart by side, size and price),
//!   a reconnect's overlap is recognised, and what no connection received is lost (the
//!   connection's `interrupted` summary and `verify` cannot tell more).

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::klines::BybitKlines;
use super::{rules, BybitSession};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::{tag, BookTickerRecord, Candle, RankedTrade, RecordBatch, TradeId};
use crate::registry::{LiveType, Origin};
use crate::time_range::TimeRange;
use crate::venue::live::book::Book;
use crate::venue::live::wire::{Grammar, Keepalive, Read, StreamPlan};
use crate::venue::live::{
    ConnectionAllowance, Liquidation, LiveFeed, LiveScope, RangePos, SymbolState,
};
use crate::venue::Session;

/// Whether Bybit streams `t` through this loader; `Err` says what it does stream.
pub fn streams(t: LiveType, market: Market) -> Result<(), String> {
    match t {
        LiveType::Liquidations if market == Market::Spot => Err(
            "Bybit's spot market has no liquidations: use MARKET=linear or MARKET=inverse".into(),
        ),
        LiveType::Trades | LiveType::BookTicker | LiveType::OrderBook | LiveType::Liquidations => {
            Ok(())
        }
        LiveType::Candles(iv) => match rules::kline_interval(iv) {
            Some(_) => Ok(()),
            None => Err(format!(
                "Bybit has no {} candles (its intervals: {})",
                iv.as_str(),
                rules::KLINE_INTERVALS
            )),
        },
        _ => Err(
            "Bybit's streams are loaded as ws_trades, ws_candles_<interval>, \
                  ws_bookticker, ws_orderbook and ws_liquidations"
                .into(),
        ),
    }
}

/// Bybit's feed of one live type for one job.
pub struct BybitFeed {
    pub session: Arc<BybitSession>,
    pub scope: LiveScope,
    /// `BYBIT_WS_URL`: the stream host.
    pub ws_url: String,
}

impl BybitFeed {
    /// The topic of `t` for `symbol`.
    fn topic(&self, symbol: &str) -> String {
        match self.scope.live_type {
            LiveType::Trades => format!("publicTrade.{symbol}"),
            LiveType::Candles(iv) => format!(
                "kline.{}.{symbol}",
                rules::kline_interval(iv).expect("only Bybit's intervals get a feed")
            ),
            LiveType::BookTicker => format!("orderbook.{}.{symbol}", rules::BBO_DEPTH),
            LiveType::Liquidations => format!("{}.{symbol}", rules::LIQUIDATION_TOPIC),
            _ => format!("orderbook.{}.{symbol}", self.book_depth()),
        }
    }

    /// The smallest of Bybit's book depths that holds every level published.
    fn book_depth(&self) -> usize {
        let want = self.scope.cfg.book_depth;
        rules::BOOK_DEPTHS
            .into_iter()
            .find(|d| *d >= want)
            .unwrap_or(rules::BOOK_DEPTHS[rules::BOOK_DEPTHS.len() - 1])
    }

    fn market(&self) -> Market {
        self.session.market
    }
}

impl LiveFeed for BybitFeed {
    fn scope(&self) -> &LiveScope {
        &self.scope
    }

    fn venue(&self) -> Venue {
        Venue::Bybit
    }

    fn market(&self) -> Market {
        self.session.market
    }

    fn ws_url(&self) -> &str {
        &self.ws_url
    }

    fn grammar(&self) -> Arc<dyn Grammar> {
        Arc::new(BybitGrammar)
    }

    fn plan(&self, symbols: &[Arc<str>]) -> (StreamPlan, Vec<String>) {
        let topics: Vec<String> = symbols.iter().map(|s| self.topic(s)).collect();
        let subscribe = topics
            .chunks(rules::ARGS_PER_SUBSCRIBE)
            .enumerate()
            .map(|(i, chunk)| {
                serde_json::json!({"req_id": (i + 1).to_string(), "op": "subscribe", "args": chunk})
                    .to_string()
            })
            .collect();
        let plan = StreamPlan {
            url: format!("{}{}", self.ws_url, rules::stream_path(self.market())),
            subscribe,
            spacing: std::time::Duration::from_millis(50),
        };
        (plan, topics)
    }

    fn allowance(&self) -> ConnectionAllowance {
        ConnectionAllowance {
            attempts: rules::CONNECTIONS,
            window: rules::CONNECTION_WINDOW,
        }
    }

    fn max_streams_per_connection(&self) -> usize {
        rules::STREAMS_PER_CONNECTION
    }

    fn now_ms(&self) -> i64 {
        self.session.clock().now_ms()
    }

    fn ws_var(&self) -> (&'static str, &'static str) {
        ("BYBIT_WS_URL", rules::DEFAULT_WS_URL)
    }

    fn ordinal(&self, data: &str) -> Option<i64> {
        match self.scope.live_type {
            LiveType::Trades => serde_json::from_str::<Push<'_, Vec<TradeTime>>>(data)
                .ok()?
                .data
                .first()
                .map(|t| t.T),
            LiveType::Candles(_) => serde_json::from_str::<Push<'_, Vec<CandleStart>>>(data)
                .ok()?
                .data
                .first()
                .map(|c| c.start),
            LiveType::Liquidations => serde_json::from_str::<Push<'_, Vec<TradeTime>>>(data)
                .ok()?
                .data
                .first()
                .map(|l| l.T),
            _ => serde_json::from_str::<Push<'_, UpdateId>>(data)
                .ok()
                .map(|p| p.data.u as i64),
        }
    }

    fn on_event<'a>(&'a self, st: &'a mut SymbolState, data: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let bad = |e: serde_json::Error| {
                LoaderError::Exchange(format!("unexpected Bybit stream event ({e}): {data:.200}"))
            };
            match self.scope.live_type {
                LiveType::Trades => {
                    let push: Push<'_, Vec<WsTrade>> = serde_json::from_str(data).map_err(bad)?;
                    self.on_trades(st, push).await
                }
                LiveType::Candles(iv) => {
                    let push: Push<'_, Vec<WsCandle>> = serde_json::from_str(data).map_err(bad)?;
                    self.on_candles(st, iv, push).await
                }
                LiveType::BookTicker => {
                    let push: Push<'_, WsBook> = serde_json::from_str(data).map_err(bad)?;
                    self.on_best(st, push)
                }
                LiveType::Liquidations => {
                    let push: Push<'_, Vec<WsLiquidation>> =
                        serde_json::from_str(data).map_err(bad)?;
                    self.on_liquidations(st, push)
                }
                _ => {
                    let push: Push<'_, WsBook> = serde_json::from_str(data).map_err(bad)?;
                    self.on_book(st, push);
                    Ok(())
                }
            }
        })
    }

    fn close_range<'a>(
        &'a self,
        st: &'a mut SymbolState,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.scope.live_type {
                LiveType::Candles(iv) => {
                    let history = self.klines(iv);
                    let clock = self.session.clock();
                    self.scope.close_candles(st, range, &history, clock).await
                }
                // What the stream missed at the end is in recent-trade, if anywhere.
                LiveType::Trades => self.fill_trades(st, range.end_ms).await,
                _ => Ok(()),
            }
        })
    }

    fn has_rest(&self) -> bool {
        matches!(
            self.scope.live_type,
            LiveType::Trades | LiveType::Candles(_)
        )
    }
}

/// A topic's message: `{"topic","type","ts","data"}` (the fields read).
#[derive(Deserialize)]
struct Push<'a, T> {
    ts: i64,
    /// Borrowed from the frame: read on every message.
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    data: T,
}

/// `publicTrade`'s trade (Trade: `T` ms, `S` the taker's side, `v` size, `p` price, `i` the
/// trade id, numeric on spot and a UUID on the derivatives).
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsTrade<'a> {
    T: i64,
    #[serde(borrow)]
    S: Cow<'a, str>,
    #[serde(borrow)]
    v: Cow<'a, str>,
    #[serde(borrow)]
    p: Cow<'a, str>,
    #[serde(borrow)]
    i: Cow<'a, str>,
}

/// The time of a trade or liquidation (`T`).
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct TradeTime {
    T: i64,
}

/// `allLiquidation`'s liquidation (All Liquidation: `T` ms, `S` the position's side, `v` size,
/// `p` bankruptcy price).
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsLiquidation<'a> {
    T: i64,
    #[serde(borrow)]
    S: Cow<'a, str>,
    #[serde(borrow)]
    v: Cow<'a, str>,
    #[serde(borrow)]
    p: Cow<'a, str>,
}

/// `kline`'s candle (Kline: `confirm` true once it closed; volume and turnover as REST's).
#[derive(Deserialize)]
struct WsCandle<'a> {
    start: i64,
    #[serde(borrow)]
    open: Cow<'a, str>,
    #[serde(borrow)]
    high: Cow<'a, str>,
    #[serde(borrow)]
    low: Cow<'a, str>,
    #[serde(borrow)]
    close: Cow<'a, str>,
    #[serde(borrow)]
    volume: Cow<'a, str>,
    #[serde(borrow)]
    turnover: Cow<'a, str>,
    confirm: bool,
}

#[derive(Deserialize)]
struct CandleStart {
    start: i64,
}

/// `orderbook`'s data (Orderbook: `b` bids and `a` asks as `[price, size]`, size "0" deletes
/// a level; `u` the update id, 1 on a snapshot after a service restart).
#[derive(Deserialize)]
struct WsBook<'a> {
    #[serde(borrow)]
    b: Vec<[Cow<'a, str>; 2]>,
    #[serde(borrow)]
    a: Vec<[Cow<'a, str>; 2]>,
    u: u64,
}

#[derive(Deserialize)]
struct UpdateId {
    u: u64,
}

/// recent-trade's row.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecentTrade {
    exec_id: String,
    price: String,
    size: String,
    side: String,
    time: String,
}

#[derive(Deserialize)]
struct RecentTrades {
    #[serde(default)]
    list: Vec<RecentTrade>,
}

/// Whether the taker sold: the buyer made the market.
fn buyer_maker(side: &str) -> Result<bool> {
    if side.eq_ignore_ascii_case("sell") {
        Ok(true)
    } else if side.eq_ignore_ascii_case("buy") {
        Ok(false)
    } else {
        Err(LoaderError::Exchange(format!(
            "Bybit sent a trade whose side is not Buy or Sell: {side:?}"
        )))
    }
}

impl BybitFeed {
    /// A trade's id as the archive gives it: a number on spot, the UUID on the derivatives.
    fn trade_id<'a>(&self, id: &'a str) -> TradeId<'a> {
        match (self.market(), id.parse::<u64>()) {
            (Market::Spot, Ok(n)) => TradeId::Number(n),
            _ => TradeId::Text(id),
        }
    }

    /// Offers a trade to the symbol: ranked among its millisecond's, published when the
    /// range and the cursor admit it.
    fn offer_trade(
        &self,
        st: &mut SymbolState,
        time: i64,
        id: &str,
        price: &str,
        quantity: &str,
        side: &str,
    ) -> Result<()> {
        let Some(ordinal) = self.scope.rank_record(st, time, id)? else {
            return Ok(());
        };
        st.batch.push_ranked_trade(&RankedTrade {
            ordinal,
            id: self.trade_id(id),
            price,
            quantity,
            time,
            is_buyer_maker: buyer_maker(side)?,
        })
    }

    async fn on_trades(
        &self,
        st: &mut SymbolState,
        push: Push<'_, Vec<WsTrade<'_>>>,
    ) -> Result<()> {
        self.scope.note_event(push.ts);
        let Some(first) = push.data.first() else {
            return Ok(());
        };
        if st.interrupted && self.scope.position(first.T) != RangePos::Before {
            st.interrupted = false;
            Box::pin(self.fill_trades(st, first.T)).await?;
        }
        for t in &push.data {
            self.offer_trade(st, t.T, &t.i, &t.p, &t.v, &t.S)?;
        }
        Ok(())
    }

    /// A message of liquidations, each ranked among its millisecond's.
    fn on_liquidations(
        &self,
        st: &mut SymbolState,
        push: Push<'_, Vec<WsLiquidation<'_>>>,
    ) -> Result<()> {
        self.scope.note_event(push.ts);
        for l in &push.data {
            let side = rules::liquidation_order_side(&l.S).ok_or_else(|| {
                LoaderError::Exchange(format!(
                    "Bybit sent a liquidation whose side is not Buy or Sell: {:?}",
                    l.S
                ))
            })?;
            let liquidation = Liquidation {
                time: l.T,
                side,
                quantity: &l.v,
                price: &l.p,
                event_time: Some(push.ts),
            };
            self.scope
                .ranked_liquidation(st, (Venue::Bybit, self.market()), &liquidation)?;
        }
        Ok(())
    }

    /// What the stream may have missed before `until` (inclusive: that millisecond's trades
    /// are taken whole from REST, so the stream's own are recognised by id), from the last
    /// trade published or the range's start, out of recent-trade.
    async fn fill_trades(&self, st: &mut SymbolState, until: i64) -> Result<()> {
        let from = match (st.cursor.last_time, self.scope.range) {
            (Some(t), _) => t,
            (None, Some(r)) => r.start_ms,
            // A stream without a range starts now: nothing before it is wanted.
            (None, None) => return Ok(()),
        };
        if from > until {
            return Ok(());
        }
        st.flush().await?;
        let limit = rules::recent_trade_limit(self.market());
        let page: RecentTrades = self
            .session
            .market_data(
                rules::RECENT_TRADE,
                &st.symbol,
                &[("limit", limit.to_string())],
            )
            .await?;
        let mut rows = page.list;
        rows.reverse(); // oldest first
        let mut parsed = Vec::with_capacity(rows.len());
        for r in &rows {
            let time = r.time.parse::<i64>().map_err(|_| {
                LoaderError::Exchange(format!(
                    "Bybit sent a recent trade whose time is not a number: {:?}",
                    r.time
                ))
            })?;
            parsed.push((time, r));
        }
        // Trades must come oldest first; a page out of time order orders nothing.
        if parsed.windows(2).any(|w| w[1].0 < w[0].0) {
            return Err(LoaderError::Exchange(
                "Bybit's recent-trade answer is not in time order".into(),
            ));
        }
        let oldest = parsed.first().map(|p| p.0);
        // The page covers `from` when it reaches before it, or holds fewer than asked (it is
        // every trade Bybit has left).
        let covers = oldest.is_none_or(|o| o < from) || parsed.len() < limit as usize;
        let mut start = from;
        if !covers {
            let oldest = oldest.expect("a full page");
            st.out.summary.sequence_breaks += 1;
            tracing::warn!(
                symbol = %st.symbol,
                from = %crate::time_range::fmt_ms(from),
                to = %crate::time_range::fmt_ms(oldest),
                "Bybit's trades from the last one published to the oldest recent-trade holds cannot \
                 be fetched (recent-trade holds only the latest {limit}): they are missing from the \
                 topic; the archive has them once the day is published"
            );
            // The page's first millisecond may be cut: start after it.
            start = oldest + 1;
            st.ties.reset();
        } else {
            // That millisecond's trades are ranked again from the first one, as the archive
            // ranks them: the ones already published keep their keys and are not admitted.
            st.ties.reset();
        }
        // The stream's records were flushed: the batch holds the backfill alone.
        for (time, r) in parsed.iter().filter(|(t, _)| *t >= start && *t <= until) {
            self.offer_trade(st, *time, &r.exec_id, &r.price, &r.size, &r.side)?;
        }
        let fresh = RecordBatch::new(Venue::Bybit, self.market(), st.symbol.clone(), 256);
        let batch = std::mem::replace(&mut st.batch, fresh);
        st.out.summary.backfilled += batch.len() as u64;
        st.out.send(batch, Origin::Rest).await
    }

    async fn on_candles(
        &self,
        st: &mut SymbolState,
        iv: kline_interval::Interval,
        push: Push<'_, Vec<WsCandle<'_>>>,
    ) -> Result<()> {
        self.scope.note_event(push.ts);
        let history = self.klines(iv);
        for k in &push.data {
            let candle = Candle {
                open_time: k.start,
                close_time: iv.close_time(k.start),
                open: &k.open,
                high: &k.high,
                low: &k.low,
                close: &k.close,
                volume: &k.volume,
                quote_volume: &k.turnover,
            };
            self.scope
                .candle(st, k.confirm, &candle, &history, self.session.clock())
                .await?;
        }
        Ok(())
    }

    /// Bybit's candle history, which fills what the stream missed.
    fn klines(&self, interval: kline_interval::Interval) -> BybitKlines {
        BybitKlines {
            interval,
            session: self.session.clone(),
        }
    }

    /// `orderbook.1`: the best bid and ask, published once per update id (Bybit repeats an
    /// unchanged one every 3 s).
    fn on_best(&self, st: &mut SymbolState, push: Push<'_, WsBook<'_>>) -> Result<()> {
        self.scope.note_event(push.ts);
        let d = &push.data;
        if !self.scope.gate(st, push.ts) {
            return Ok(());
        }
        if push.kind.as_deref() == Some("snapshot")
            && d.u == 1
            && st.cursor.last.is_some_and(|l| l > 1)
        {
            // Bybit restarted the service: its update ids start again.
            tracing::warn!(symbol = %st.symbol, "Bybit's best bid and ask restarted at update id 1");
            st.cursor.last = None;
        }
        if !st.cursor.admit(push.ts, d.u as i64) {
            return Ok(());
        }
        let (Some(bid), Some(ask)) = (d.b.first(), d.a.first()) else {
            // One side empty: no best price to publish.
            return Ok(());
        };
        let key = st.batch.key(tag::BOOK_TICKER, d.u);
        let market = Venue::Bybit.market_name(self.market());
        st.batch.push_record(
            push.ts,
            &key,
            &BookTickerRecord {
                _key: &key,
                exchange: Venue::Bybit.record_field(),
                market,
                symbol: &st.symbol,
                timestamp: push.ts,
                update_id: d.u,
                best_bid_price: &bid[0],
                best_bid_qty: &bid[1],
                best_ask_price: &ask[0],
                best_ask_qty: &ask[1],
            },
        )?;
        Ok(())
    }

    /// `orderbook.{depth}`: a snapshot replaces the book; a delta applies when it follows the
    /// last update, else the book waits for the fresh subscription it asks for.
    fn on_book(&self, st: &mut SymbolState, push: Push<'_, WsBook<'_>>) {
        self.scope.note_event(push.ts);
        // Messages before the range build the book (its snapshot comes first); the live
        // source publishes it from the range's start.
        if self.scope.position(push.ts) == RangePos::After {
            self.scope.gate(st, push.ts);
            return;
        }
        let d = &push.data;
        let bids: Vec<[&str; 2]> = d.b.iter().map(|[p, q]| [p.as_ref(), q.as_ref()]).collect();
        let asks: Vec<[&str; 2]> = d.a.iter().map(|[p, q]| [p.as_ref(), q.as_ref()]).collect();
        let broke = apply(
            &mut st.book,
            push.kind.as_deref(),
            d.u,
            push.ts,
            &bids,
            &asks,
        );
        if broke {
            tracing::warn!(symbol = %st.symbol, u = d.u, "Bybit's book delta does not follow the last one: subscribing again for a new snapshot");
            st.wants_new_connection = true;
        }
    }
}

/// Applies one `orderbook` message to `book` per Bybit's rules; `true` when the sequence broke
/// (a delta that does not follow the last update), so a fresh snapshot is needed.
fn apply(
    book: &mut Book,
    kind: Option<&str>,
    u: u64,
    ts: i64,
    bids: &[[&str; 2]],
    asks: &[[&str; 2]],
) -> bool {
    if kind == Some("snapshot") {
        if !book.needs_snapshot && u > 1 && u <= book.last_update_id {
            return false; // a repeat of what the book holds (a hand-over's overlap)
        }
        book.load_snapshot(u, bids.iter().copied(), asks.iter().copied());
        book.apply_diff(u, ts, &[], &[]);
        return false;
    }
    if book.needs_snapshot {
        return false; // waiting for the snapshot of the fresh subscription
    }
    if u <= book.last_update_id {
        return false; // already applied (a hand-over's overlap)
    }
    if u != book.last_update_id + 1 {
        book.break_sequence();
        return true;
    }
    book.apply_diff(u, ts, bids, asks);
    false
}

/// Bybit's frames: a topic's message (`topic`), an answer to a request (`op`, `success`,
/// `ret_msg`), a pong.
pub struct BybitGrammar;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(borrow, default)]
    ret_msg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    op: Option<Cow<'a, str>>,
}

impl Grammar for BybitGrammar {
    fn read<'t>(&self, text: &'t str) -> Read<'t> {
        // Bybit writes the topic first: the name is taken without reading the message.
        if let Some(rest) = text.strip_prefix(r#"{"topic":""#) {
            if let Some(end) = memchr::memchr(b'"', rest.as_bytes()) {
                let name = &rest[..end];
                if !name.contains('\\') {
                    return Read::Event {
                        stream: Cow::Borrowed(name),
                        data: text,
                    };
                }
            }
        }
        let Ok(f) = serde_json::from_str::<Frame>(text) else {
            return Read::Other;
        };
        if let Some(topic) = f.topic {
            return Read::Event {
                stream: topic,
                data: text,
            };
        }
        match (f.op.as_deref(), f.success) {
            (Some("subscribe"), Some(true)) => Read::Answered,
            (_, Some(false)) => Read::Refused(format!(
                "Bybit: {}",
                f.ret_msg.as_deref().unwrap_or("refused")
            )),
            _ => Read::Other,
        }
    }

    fn keepalive(&self) -> Option<Keepalive> {
        Some(Keepalive {
            every: rules::PING_EVERY,
            text: rules::PING,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_as_bybit_writes_them() {
        let g = BybitGrammar;
        let trade = r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[]}"#;
        assert_eq!(
            g.read(trade),
            Read::Event {
                stream: Cow::Borrowed("publicTrade.BTCUSDT"),
                data: trade
            }
        );
        let reordered = r#"{"data":[],"topic":"kline.1.BTCUSDT","ts":1,"type":"snapshot"}"#;
        assert!(
            matches!(g.read(reordered), Read::Event { stream, .. } if stream == "kline.1.BTCUSDT")
        );
        assert_eq!(
            g.read(r#"{"success":true,"ret_msg":"","conn_id":"c","req_id":"1","op":"subscribe"}"#),
            Read::Answered
        );
        assert!(matches!(
            g.read(r#"{"success":false,"ret_msg":"error:handler not found,topic:x","conn_id":"c","op":"subscribe"}"#),
            Read::Refused(m) if m.contains("handler not found")
        ));
        assert_eq!(
            g.read(r#"{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}"#),
            Read::Other
        );
        assert_eq!(
            g.read(r#"{"req_id":"","op":"pong","args":["1"],"conn_id":"c"}"#),
            Read::Other
        );
    }

    #[test]
    fn book_deltas_follow_their_update_ids() {
        let mut book = Book::new();
        assert!(
            !apply(&mut book, Some("delta"), 5, 1, &[], &[]),
            "no snapshot yet: waits"
        );
        assert!(book.needs_snapshot);
        assert!(!apply(
            &mut book,
            Some("snapshot"),
            10,
            1,
            &[["1", "2"]],
            &[["3", "4"]]
        ));
        assert_eq!(book.last_update_id, 10);
        assert!(
            !apply(&mut book, Some("delta"), 10, 2, &[], &[]),
            "a repeat"
        );
        assert!(!apply(&mut book, Some("delta"), 11, 2, &[["1", "0"]], &[]));
        assert!(
            apply(&mut book, Some("delta"), 13, 3, &[], &[]),
            "12 is missing"
        );
        assert!(book.needs_snapshot);
        assert_eq!(book.resyncs, 1);
        assert!(
            !apply(&mut book, Some("delta"), 14, 3, &[], &[]),
            "waits for the snapshot"
        );
        assert!(!apply(&mut book, Some("snapshot"), 20, 4, &[], &[]));
        assert!(!book.needs_snapshot);
        // A service restart: the ids start again with a snapshot.
        assert!(!apply(&mut book, Some("snapshot"), 1, 5, &[], &[]));
        assert_eq!(book.last_update_id, 1);
    }
}
