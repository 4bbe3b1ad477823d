//! OKX's live feed (`EXCHANGE=okx`, `ws_*` types) from its v5 public WebSocket (`OKX_WS_URL`):
//! trades (`trades`), the books (`books`, `bbo-tbt`) and liquidations (`liquidation-orders`)
//! on `/ws/v5/public`, closed candles (`candle<bar>`) on `/ws/v5/business`. The rules it keeps
//! are in [`rules`] ("Overview: WebSocket", the "WS / Trades", "WS / Candlesticks", "WS / Order
//! book" and "WS / Liquidation orders" channels of www.okx.com/docs-v5/en/).
//!
//! What a gap costs differs by type:
//! - a trade is keyed by its millisecond and its rank among that millisecond's trades in
//!   trade-id order, as history-trades and the archive key it ([`super::trades`]): the stream's
//!   trades come in that order, so a trade's rank is its place among the ones the stream gave
//!   for its millisecond ([`crate::venue::live::Ties`]). What the stream may have missed (its
//!   first event, a connection lost, a trade id skipped, a message that aggregates several
//!   trades) is fetched from history-trades, which serves three months, from the last trade
//!   published (or the range's start) up to and including the millisecond of the trade that
//!   showed the gap: that millisecond is taken whole from REST, so its trades get the ranks
//!   history gives them and the stream's own are recognised by id. At the range's end, the
//!   same fetch completes what the stream did not deliver.
//! - closed candles missed are fetched over REST (history-candles), as history, once OKX
//!   answers them closed ([`rules::CONFIRM_MARGIN_MS`]);
//! - a book update that does not follow the last one (`prevSeqId`), or whose checksum (where
//!   OKX still sends one) does not match the book, asks for a fresh subscription, whose
//!   snapshot rebuilds the book (OKX has no REST snapshot that chains with the stream);
//! - liquidations come on one stream per instrument type, shared by every symbol of the job
//!   (each takes its own instrument's): each is keyed by its millisecond and its rank among
//!   that millisecond's (told apart by side, size and price), a reconnect's overlap is
//!   recognised, and what no connection received is lost.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use kline_interval::Interval;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::klines::OkxKlines;
use super::trades::OkxTrades;
use super::{rules, OkxSession};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::{tag, BookTickerRecord, Candle, RankedTrade, RecordBatch, TradeId};
use crate::registry::{time_rank, LiveType, Origin};
use crate::time_range::{fmt_ms, TimeRange};
use crate::venue::live::book::Book;
use crate::venue::live::wire::{Grammar, Keepalive, Read, StreamPlan};
use crate::venue::live::{
    ConnectionAllowance, Liquidation, LiveFeed, LiveScope, RangePos, SymbolState,
};
use crate::venue::Session;

/// Whether OKX streams `t` through this loader; `Err` says what it does stream.
pub fn streams(t: LiveType, market: Market) -> Result<(), String> {
    match t {
        LiveType::Liquidations if market == Market::Spot => {
            Err("OKX's spot market has no liquidations: use MARKET=swap or MARKET=futures".into())
        }
        LiveType::Trades | LiveType::BookTicker | LiveType::OrderBook | LiveType::Liquidations => {
            Ok(())
        }
        LiveType::Candles(iv) => match rules::bar(iv) {
            Some(_) => Ok(()),
            None => Err(format!(
                "OKX has no {} candles aligned to UTC (its bars: {})",
                iv.as_str(),
                rules::BARS
            )),
        },
        _ => Err(
            "OKX's streams are loaded as ws_trades, ws_candles_<interval>, ws_bookticker, \
             ws_orderbook and ws_liquidations"
                .into(),
        ),
    }
}

/// The stream name of `channel` for `inst_id` (or, for a channel subscribed per instrument
/// type, for `instType`), as the grammar reports an event's.
fn stream_name(channel: &str, inst_id: &str) -> String {
    format!("{channel}:{inst_id}")
}

/// The `id` of a subscribe request whose last arg is `channel` of `inst_id` (or `instType`).
/// OKX answers every arg on its own and echoes the request's `id` in each answer; the answer to
/// the last arg is the one whose arg this id names, so a request counts as answered once, when
/// all of its args were (a connection expects one answer per request). Letters and digits, as OKX
/// wants ids.
fn answer_id(channel: &str, inst_id: &str) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(channel.as_bytes());
    h.update(b":");
    h.update(inst_id.as_bytes());
    format!("s{:08x}", h.finalize())
}

/// The subscribe requests of `channel` for `symbols`: [`rules::ARGS_PER_SUBSCRIBE`] args each,
/// each with the `id` its last arg's answer carries ([`answer_id`]).
fn subscribe_requests(channel: &str, symbols: &[Arc<str>]) -> Vec<String> {
    symbols
        .chunks(rules::ARGS_PER_SUBSCRIBE)
        .map(|chunk| {
            let args: Vec<serde_json::Value> = chunk
                .iter()
                .map(|s| serde_json::json!({"channel": channel, "instId": &**s}))
                .collect();
            let last = chunk.last().expect("chunks are not empty");
            serde_json::json!({
                "id": answer_id(channel, last),
                "op": "subscribe",
                "args": args,
            })
            .to_string()
        })
        .collect()
}

/// How long a backfill waits before asking history-trades again for the streamed trade that
/// showed a gap (doubling each time), and the longest wait: about 4 s in all.
const CATCH_UP_FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
const CATCH_UP_LAST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// OKX's feed of one live type for one job.
pub struct OkxFeed {
    session: Arc<OkxSession>,
    scope: LiveScope,
    /// `OKX_WS_URL`: the stream host.
    ws_url: String,
    /// Per symbol, the highest trade id seen (`ws_trades`): a later one that skips ids, or a
    /// message that aggregates trades, shows trades the stream did not give one by one.
    trade_ids: Mutex<HashMap<Arc<str>, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OkxFeed {
    pub fn new(session: Arc<OkxSession>, scope: LiveScope, ws_url: String) -> OkxFeed {
        OkxFeed {
            session,
            scope,
            ws_url,
            trade_ids: Mutex::default(),
        }
    }

    fn market(&self) -> Market {
        self.session.market
    }

    /// The channel of the job's type.
    fn channel(&self) -> String {
        match self.scope.live_type {
            LiveType::Trades => rules::TRADES_CHANNEL.into(),
            LiveType::Candles(iv) => rules::candle_channel(iv).expect("only OKX's bars get a feed"),
            LiveType::BookTicker => rules::BBO_CHANNEL.into(),
            LiveType::Liquidations => rules::LIQUIDATION_CHANNEL.into(),
            _ => rules::BOOKS_CHANNEL.into(),
        }
    }

    /// The service the channel is on.
    fn path(&self) -> &'static str {
        match self.scope.live_type {
            LiveType::Candles(_) => rules::BUSINESS_PATH,
            _ => rules::PUBLIC_PATH,
        }
    }

    fn bad(&self, what: impl fmt::Display, data: &str) -> LoaderError {
        LoaderError::Exchange(format!("unexpected OKX stream event ({what}): {data:.200}"))
    }
}

impl LiveFeed for OkxFeed {
    fn scope(&self) -> &LiveScope {
        &self.scope
    }

    fn venue(&self) -> Venue {
        Venue::Okx
    }

    fn market(&self) -> Market {
        self.session.market
    }

    fn ws_url(&self) -> &str {
        &self.ws_url
    }

    fn grammar(&self) -> Arc<dyn Grammar> {
        Arc::new(OkxGrammar)
    }

    fn plan(&self, symbols: &[Arc<str>]) -> (StreamPlan, Vec<String>) {
        let channel = self.channel();
        let (streams, subscribe) = if self.scope.live_type == LiveType::Liquidations {
            // One subscription for the instrument type: every symbol reads the same stream.
            let inst_type = rules::inst_type(self.market());
            let request = serde_json::json!({
                "id": answer_id(&channel, inst_type),
                "op": "subscribe",
                "args": [{"channel": &channel, "instType": inst_type}],
            });
            (
                vec![stream_name(&channel, inst_type); symbols.len()],
                vec![request.to_string()],
            )
        } else {
            let streams = symbols.iter().map(|s| stream_name(&channel, s)).collect();
            (streams, subscribe_requests(&channel, symbols))
        };
        let plan = StreamPlan {
            url: format!("{}{}", self.ws_url, self.path()),
            subscribe,
            spacing: rules::SUBSCRIBE_SPACING,
        };
        (plan, streams)
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
        ("OKX_WS_URL", rules::DEFAULT_WS_URL)
    }

    fn ordinal(&self, data: &str) -> Option<i64> {
        match self.scope.live_type {
            // Trade ids grow with the trades.
            LiveType::Trades => serde_json::from_str::<Push<Vec<TradeKey>>>(data)
                .ok()?
                .data
                .first()
                .and_then(|t| t.trade_id.parse::<i64>().ok()),
            LiveType::Candles(_) => serde_json::from_str::<Push<Vec<Vec<Text>>>>(data)
                .ok()?
                .data
                .first()
                .and_then(|row| row.first())
                .and_then(|ts| ts.0.parse().ok()),
            LiveType::Liquidations => serde_json::from_str::<Push<Vec<WsLiquidations>>>(data)
                .ok()?
                .data
                .iter()
                .flat_map(|g| &g.details)
                .filter_map(|d| d.ts.parse().ok())
                .min(),
            _ => serde_json::from_str::<Push<Vec<SeqKey>>>(data)
                .ok()?
                .data
                .first()
                .map(|d| d.seq_id),
        }
    }

    fn on_event<'a>(&'a self, st: &'a mut SymbolState, data: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.scope.live_type {
                LiveType::Trades => {
                    let push: Push<Vec<WsTrade>> =
                        serde_json::from_str(data).map_err(|e| self.bad(e, data))?;
                    let trades = push
                        .data
                        .iter()
                        .map(WsTrade::read)
                        .collect::<std::result::Result<Vec<_>, String>>()
                        .map_err(|e| self.bad(e, data))?;
                    self.on_trades(st, &trades).await
                }
                LiveType::Candles(iv) => {
                    let push: Push<Vec<Vec<Text>>> =
                        serde_json::from_str(data).map_err(|e| self.bad(e, data))?;
                    for row in &push.data {
                        let k = WsCandle::read(iv, row).map_err(|e| self.bad(e, data))?;
                        self.on_candle(st, iv, &k).await?;
                    }
                    Ok(())
                }
                LiveType::Liquidations => {
                    let push: Push<Vec<WsLiquidations>> =
                        serde_json::from_str(data).map_err(|e| self.bad(e, data))?;
                    self.on_liquidations(st, &push.data, data)
                }
                LiveType::BookTicker => {
                    let push: Push<Vec<WsBook>> =
                        serde_json::from_str(data).map_err(|e| self.bad(e, data))?;
                    for d in &push.data {
                        let ts = d.time().map_err(|e| self.bad(e, data))?;
                        let seq = d.seq().map_err(|e| self.bad(e, data))?;
                        self.on_best(st, d, ts, seq)?;
                    }
                    Ok(())
                }
                _ => {
                    let push: Push<Vec<WsBook>> =
                        serde_json::from_str(data).map_err(|e| self.bad(e, data))?;
                    let snapshot = push.action.as_deref() == Some("snapshot");
                    for d in &push.data {
                        self.on_book(st, snapshot, d)
                            .map_err(|e| self.bad(e, data))?;
                    }
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
                // What the stream did not deliver up to the end is in history-trades.
                LiveType::Trades => self.fill_trades(st, range.end_ms - 1, None).await,
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

/// A channel's message: `{"arg":{…},"action":…,"data":[…]}` (the fields read).
#[derive(Deserialize)]
struct Push<'a, T> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    data: T,
}

/// A string of a message, borrowed where it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// `trades`' trade (Trades channel: `tradeId`, `px`, `sz`, `side` the taker's, `ts` ms,
/// `count` the trades it aggregates).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WsTrade<'a> {
    #[serde(borrow)]
    trade_id: Cow<'a, str>,
    #[serde(borrow)]
    px: Cow<'a, str>,
    #[serde(borrow)]
    sz: Cow<'a, str>,
    #[serde(borrow)]
    side: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow, default)]
    count: Option<Cow<'a, str>>,
}

/// `liquidation-orders`' entry: an instrument's liquidations.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WsLiquidations<'a> {
    #[serde(borrow)]
    inst_id: Cow<'a, str>,
    #[serde(borrow)]
    details: Vec<WsLiquidation<'a>>,
}

/// One liquidation (`side` the order's, `sz` contracts, `bkPx` the bankruptcy price, `ts` ms).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WsLiquidation<'a> {
    #[serde(borrow)]
    bk_px: Cow<'a, str>,
    #[serde(borrow)]
    side: Cow<'a, str>,
    #[serde(borrow)]
    sz: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TradeKey<'a> {
    #[serde(borrow)]
    trade_id: Cow<'a, str>,
}

/// A streamed trade, read.
#[derive(Debug)]
struct StreamTrade<'a> {
    id: u64,
    time: i64,
    price: &'a str,
    size: &'a str,
    buyer_maker: bool,
    /// The trades the message stands for (1 but where OKX aggregated the fills of a taker
    /// order).
    count: u64,
}

impl<'a> WsTrade<'a> {
    fn read(&'a self) -> std::result::Result<StreamTrade<'a>, String> {
        let id = self
            .trade_id
            .parse::<u64>()
            .map_err(|_| format!("a tradeId that is not a number: {:?}", self.trade_id))?;
        let time = self
            .ts
            .parse::<i64>()
            .map_err(|_| format!("trade {id} has a ts that is not a number: {:?}", self.ts))?;
        let buyer_maker = match &*self.side {
            "sell" => true,
            "buy" => false,
            other => {
                return Err(format!(
                    "trade {id} has a side that is not buy or sell: {other:?}"
                ))
            }
        };
        let count = match self.count.as_deref() {
            None | Some("") => 1,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| format!("trade {id} has a count that is not a number: {c:?}"))?,
        };
        Ok(StreamTrade {
            id,
            time,
            price: &self.px,
            size: &self.sz,
            buyer_maker,
            count,
        })
    }
}

/// A candle row `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]` (Candlesticks channel),
/// read.
struct WsCandle<'r> {
    open: i64,
    row: &'r [Text<'r>],
    closed: bool,
}

impl<'r> WsCandle<'r> {
    fn read(iv: Interval, row: &'r [Text<'r>]) -> std::result::Result<WsCandle<'r>, String> {
        if row.len() < 9 {
            return Err(format!("a candle of {} fields, not 9", row.len()));
        }
        let open: i64 = row[0]
            .0
            .parse()
            .map_err(|_| format!("a candle whose ts is not a number: {:?}", row[0].0))?;
        if !iv.is_open_time(open) {
            return Err(format!(
                "a {} candle opened at {open}, off the UTC grid the loader expects",
                iv.as_str()
            ));
        }
        Ok(WsCandle {
            open,
            row,
            closed: row[8].0 == "1",
        })
    }

    /// The candle as history-candles' record has it (spot: vol in the base coin, volCcyQuote
    /// in the quote coin; contracts: vol in contracts).
    fn candle(&self, iv: Interval) -> Candle<'_> {
        Candle {
            open_time: self.open,
            close_time: iv.close_time(self.open),
            open: self.field(1),
            high: self.field(2),
            low: self.field(3),
            close: self.field(4),
            volume: self.field(5),
            quote_volume: self.field(7),
        }
    }

    fn field(&self, i: usize) -> &str {
        &self.row[i].0
    }
}

/// A book level `[price, size, "0", orders]` (the deprecated third field and the orders are
/// not read).
struct Level<'a>(Cow<'a, str>, Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Level<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Level<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a level [price, size, …]")
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Level<'a>, A::Error> {
                let price: Text<'a> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let size: Text<'a> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Level(price.0, size.0))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// `books`' and `bbo-tbt`'s data (Order book channel): levels best first, `ts`, the
/// (deprecated) `checksum`, `prevSeqId` (books only) and `seqId`.
#[derive(Deserialize)]
struct WsBook<'a> {
    #[serde(borrow)]
    asks: Vec<Level<'a>>,
    #[serde(borrow)]
    bids: Vec<Level<'a>>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(default)]
    checksum: Option<i64>,
    #[serde(rename = "prevSeqId", default)]
    prev_seq_id: Option<i64>,
    #[serde(rename = "seqId")]
    seq_id: i64,
}

impl WsBook<'_> {
    fn time(&self) -> std::result::Result<i64, String> {
        self.ts
            .parse()
            .map_err(|_| format!("a book whose ts is not a number: {:?}", self.ts))
    }

    fn seq(&self) -> std::result::Result<u64, String> {
        u64::try_from(self.seq_id).map_err(|_| format!("a negative seqId {}", self.seq_id))
    }
}

fn levels<'a>(side: &'a [Level<'_>]) -> Vec<[&'a str; 2]> {
    side.iter().map(|l| [&*l.0, &*l.1]).collect()
}

#[derive(Deserialize)]
struct SeqKey {
    #[serde(rename = "seqId")]
    seq_id: i64,
}

impl OkxFeed {
    /// The highest trade id seen of `symbol`, made at least `id`; what it was before.
    fn see_trade_id(&self, symbol: &Arc<str>, id: u64) -> Option<u64> {
        let mut ids = lock(&self.trade_ids);
        match ids.get_mut(symbol) {
            Some(last) => {
                let before = *last;
                *last = before.max(id);
                Some(before)
            }
            None => {
                ids.insert(symbol.clone(), id);
                None
            }
        }
    }

    /// Offers a trade to the symbol: ranked among its millisecond's, published (into
    /// `st.batch`) when the range and the cursor admit it.
    fn offer_trade(
        &self,
        st: &mut SymbolState,
        id: u64,
        time: i64,
        (price, quantity): (&str, &str),
        is_buyer_maker: bool,
    ) -> Result<()> {
        let mut text = itoa::Buffer::new();
        let Some(ordinal) = self.scope.rank_record(st, time, text.format(id))? else {
            return Ok(());
        };
        st.batch.push_ranked_trade(&RankedTrade {
            ordinal,
            id: TradeId::Number(id),
            price,
            quantity,
            time,
            is_buyer_maker,
        })
    }

    async fn on_trades(&self, st: &mut SymbolState, trades: &[StreamTrade<'_>]) -> Result<()> {
        let (Some(first), Some(last)) = (trades.first(), trades.last()) else {
            return Ok(());
        };
        self.scope.note_event(last.time);
        if st.interrupted && self.scope.position(first.time) != RangePos::Before {
            // The first event, or the first after a connection was lost: what came before it
            // since the last trade published (or the range's start) is fetched.
            st.interrupted = false;
            let reach = (self.scope.position(first.time) == RangePos::In).then_some(first.id);
            Box::pin(self.fill_trades(st, first.time, reach)).await?;
        }
        for t in trades {
            let seen = self.see_trade_id(&st.symbol, t.id);
            let skipped = seen.is_some_and(|s| t.id > s.saturating_add(1));
            if (skipped || t.count > 1) && self.scope.position(t.time) == RangePos::In {
                tracing::debug!(
                    symbol = %st.symbol,
                    trade_id = t.id,
                    last_seen = ?seen,
                    count = t.count,
                    "OKX's trades stream skipped trades or aggregated them: fetching them from history-trades"
                );
                Box::pin(self.fill_trades(st, t.time, Some(t.id))).await?;
            }
            if t.count > 1 {
                // It stands for several trades: they are published one by one from REST.
                continue;
            }
            self.offer_trade(st, t.id, t.time, (t.price, t.size), t.buyer_maker)?;
        }
        Ok(())
    }

    /// Every trade from the last one published (or the range's start) up to and including
    /// millisecond `until`, out of history-trades, published as history publishes them (that
    /// millisecond is taken whole, so the stream's own trades of it are recognised by id).
    /// `reach` is the streamed trade that showed the gap: once history-trades has it, it has
    /// every trade before it; until then it lags behind the stream, and is asked again a few
    /// times before the gap is given up (counted and said).
    async fn fill_trades(
        &self,
        st: &mut SymbolState,
        until: i64,
        reach: Option<u64>,
    ) -> Result<()> {
        let mut wait = CATCH_UP_FIRST_WAIT;
        loop {
            let Some(highest) = self.fetch_trades(st, until).await? else {
                return Ok(());
            };
            let Some(id) = reach.filter(|&id| highest.is_none_or(|h| h < id)) else {
                return Ok(());
            };
            if wait > CATCH_UP_LAST_WAIT {
                st.out.summary.sequence_breaks += 1;
                tracing::warn!(
                    symbol = %st.symbol,
                    trade_id = id,
                    at = %fmt_ms(until),
                    "OKX's history-trades has not caught up with its stream: trades the stream did \
                     not deliver before this one may be missing from the topic (verify names them)"
                );
                return Ok(());
            }
            tracing::debug!(symbol = %st.symbol, trade_id = id, wait_ms = wait.as_millis() as u64, "history-trades does not have the streamed trade yet: asking again");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.scope.stop.cancelled() => return Err(LoaderError::Cancelled),
            }
            wait *= 2;
        }
    }

    /// [`fill_trades`](Self::fill_trades)' fetch: `None` when there is nothing to fetch,
    /// else the highest trade id history-trades answered.
    async fn fetch_trades(&self, st: &mut SymbolState, until: i64) -> Result<Option<Option<u64>>> {
        let Some(range) = self.scope.range else {
            // A stream without a range starts now: nothing before it is wanted.
            return Ok(None);
        };
        let until = until.min(range.end_ms - 1);
        let from = match (st.cursor.last_time, st.cursor.last) {
            (Some(t), _) => t,
            // Resumed after an earlier attempt: from its last trade's millisecond.
            (None, Some(ordinal)) => time_rank::time(ordinal).max(range.start_ms),
            (None, None) => range.start_ms,
        };
        if from > until {
            return Ok(None);
        }
        st.flush().await?;
        let history = OkxTrades {
            market: self.market(),
            session: Some(self.session.clone()),
            archive: None,
        };
        let mut start = from;
        if let Some(oldest) = history.rest_start().filter(|&o| o > from) {
            st.out.summary.sequence_breaks += 1;
            tracing::warn!(
                symbol = %st.symbol,
                from = %fmt_ms(from),
                to = %fmt_ms(oldest),
                "OKX's trades from the last one published to the oldest history-trades serves \
                 (the last three months) cannot be fetched: they are missing from the topic; \
                 a history load (api_raw_trades) takes them from OKX's archive"
            );
            start = oldest;
        }
        if start > until {
            return Ok(None);
        }
        // That millisecond's trades are ranked again from its first one, as history ranks
        // them: the ones already published keep their keys and are not admitted again.
        st.ties.reset();
        let symbol = st.symbol.clone();
        let span = TimeRange {
            start_ms: start,
            end_ms: until + 1,
        };
        let mut windows = history.windows(&symbol, span);
        let mut highest = None;
        while let Some(trades) = windows.next().await? {
            for t in &trades {
                highest = highest.max(Some(t.id));
                self.offer_trade(st, t.id, t.time, (&t.price, &t.size), t.buyer_maker)?;
            }
            let fresh = RecordBatch::new(Venue::Okx, self.market(), symbol.clone(), 256);
            let batch = std::mem::replace(&mut st.batch, fresh);
            st.out.summary.backfilled += batch.len() as u64;
            st.out.send(batch, Origin::Rest).await?;
        }
        if let Some(id) = highest {
            self.see_trade_id(&symbol, id);
        }
        Ok(Some(highest))
    }

    async fn on_candle(&self, st: &mut SymbolState, iv: Interval, k: &WsCandle<'_>) -> Result<()> {
        self.scope
            .note_event(iv.close_time(k.open).min(self.now_ms()));
        let history = self.klines(iv);
        self.scope
            .candle(st, k.closed, &k.candle(iv), &history, self.session.clock())
            .await
    }

    /// OKX's candle history, which fills what the stream missed (once it answers the candles
    /// closed: a minute after they close, `rules::CONFIRM_MARGIN_MS`).
    fn klines(&self, interval: Interval) -> OkxKlines {
        OkxKlines {
            interval,
            session: self.session.clone(),
        }
    }

    /// A message of liquidations (of every instrument of the type): the symbol's, oldest first,
    /// each ranked among its millisecond's.
    fn on_liquidations(
        &self,
        st: &mut SymbolState,
        groups: &[WsLiquidations<'_>],
        data: &str,
    ) -> Result<()> {
        let mut mine = Vec::new();
        for d in groups
            .iter()
            .filter(|g| *g.inst_id == *st.symbol)
            .flat_map(|g| &g.details)
        {
            let time: i64 = d.ts.parse().map_err(|_| {
                self.bad(
                    format!("a liquidation whose ts is not a number: {:?}", d.ts),
                    data,
                )
            })?;
            let side = match &*d.side {
                "buy" => "BUY",
                "sell" => "SELL",
                other => {
                    return Err(self.bad(
                        format!("a liquidation whose side is not buy or sell: {other:?}"),
                        data,
                    ))
                }
            };
            mine.push((time, side, d));
        }
        // Ranks follow time: a message is taken oldest first whatever its order.
        mine.sort_by_key(|(time, ..)| *time);
        for (time, ..) in &mine {
            self.scope.note_event(*time);
        }
        for (time, side, d) in mine {
            let liquidation = Liquidation {
                time,
                side,
                quantity: &d.sz,
                price: &d.bk_px,
                event_time: None,
            };
            self.scope
                .ranked_liquidation(st, (Venue::Okx, self.market()), &liquidation)?;
        }
        Ok(())
    }

    /// `bbo-tbt`: the best bid and ask, published once per `seqId`.
    fn on_best(&self, st: &mut SymbolState, d: &WsBook<'_>, ts: i64, seq: u64) -> Result<()> {
        self.scope.note_event(ts);
        if !self.scope.gate(st, ts) {
            return Ok(());
        }
        if st.cursor.last.is_some_and(|l| d.seq_id <= l)
            && st.cursor.last_time.is_some_and(|t| ts > t)
        {
            // A later message with an earlier seqId: OKX started its ids again (after a
            // maintenance). A repeat (two connections during a hand-over) has its time too.
            tracing::warn!(symbol = %st.symbol, seq_id = d.seq_id, "OKX's best bid and ask started their seqId again");
            st.cursor.last = None;
        }
        if !st.cursor.admit(ts, d.seq_id) {
            return Ok(());
        }
        let (Some(bid), Some(ask)) = (d.bids.first(), d.asks.first()) else {
            // One side empty: no best price to publish.
            return Ok(());
        };
        let key = st.batch.key(tag::BOOK_TICKER, seq);
        let market = Venue::Okx.market_name(self.market());
        st.batch.push_record(
            ts,
            &key,
            &BookTickerRecord {
                _key: &key,
                exchange: Venue::Okx.record_field(),
                market,
                symbol: &st.symbol,
                timestamp: ts,
                update_id: seq,
                best_bid_price: &bid.0,
                best_bid_qty: &bid.1,
                best_ask_price: &ask.0,
                best_ask_qty: &ask.1,
            },
        )?;
        Ok(())
    }

    /// `books`: a snapshot replaces the book; an update applies when it follows the last one
    /// (and its checksum, if OKX sent one, matches), else the book waits for the fresh
    /// subscription it asks for.
    fn on_book(
        &self,
        st: &mut SymbolState,
        snapshot: bool,
        d: &WsBook<'_>,
    ) -> std::result::Result<(), String> {
        let ts = d.time()?;
        let seq = d.seq()?;
        self.scope.note_event(ts);
        // Messages before the range build the book (its snapshot comes first); the live source
        // publishes it from the range's start.
        if self.scope.position(ts) == RangePos::After {
            self.scope.gate(st, ts);
            return Ok(());
        }
        // After a connection was lost, the new one's snapshot replaces the book whatever it
        // holds.
        let fresh = snapshot && std::mem::take(&mut st.interrupted);
        let bids = levels(&d.bids);
        let asks = levels(&d.asks);
        let step = apply(
            &mut st.book,
            Update {
                snapshot,
                fresh,
                prev: d.prev_seq_id,
                seq,
                ts,
            },
            &bids,
            &asks,
        );
        let broke = match step {
            Step::Ignored => return Ok(()),
            Step::Broke => Some(format!(
                "prevSeqId {} does not follow the last seqId {}",
                d.prev_seq_id.unwrap_or(-1),
                st.book.last_update_id
            )),
            Step::Applied => Self::check(&st.book, d.checksum),
        };
        if let Some(why) = broke {
            if step == Step::Applied {
                st.book.break_sequence();
            }
            tracing::warn!(symbol = %st.symbol, seq_id = d.seq_id, "OKX's book {why}: subscribing again for a new snapshot");
            st.wants_new_connection = true;
            return Ok(());
        }
        Ok(())
    }

    /// Checks the message's checksum against the book it left; what is wrong, if anything.
    /// A checksum of 0 is no checksum (OKX's now).
    fn check(book: &Book, checksum: Option<i64>) -> Option<String> {
        let sent = checksum.filter(|&c| c != 0)?;
        let (bids, asks) = book.top(rules::CHECKSUM_LEVELS);
        let ours = book_checksum(&bids, &asks);
        (i64::from(ours) != sent)
            .then(|| format!("checksum {sent} does not match the book's ({ours})"))
    }
}

/// A `books` message as [`apply`] takes it.
#[derive(Debug, Clone, Copy)]
struct Update {
    snapshot: bool,
    /// A snapshot that must replace the book (the first after a connection was lost).
    fresh: bool,
    prev: Option<i64>,
    seq: u64,
    ts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Applied,
    /// A repeat of what the book holds (a hand-over's overlap), or an update while the book
    /// waits for a snapshot.
    Ignored,
    /// The update does not follow the last one: a fresh snapshot is needed.
    Broke,
}

/// Applies one `books` message to `book` per OKX's sequence rules: an update applies when its
/// `prevSeqId` is the last `seqId` (its own `seqId` is then larger, the same when nothing
/// changed, smaller after OKX started its ids again).
fn apply(book: &mut Book, u: Update, bids: &[[&str; 2]], asks: &[[&str; 2]]) -> Step {
    if u.snapshot {
        if !u.fresh && !book.needs_snapshot && u.seq <= book.last_update_id {
            return Step::Ignored;
        }
        book.load_snapshot(u.seq, bids.iter().copied(), asks.iter().copied());
        book.apply_diff(u.seq, u.ts, &[], &[]);
        return Step::Applied;
    }
    if book.needs_snapshot {
        return Step::Ignored;
    }
    let last = book.last_update_id;
    if u.prev.and_then(|p| u64::try_from(p).ok()) == Some(last) {
        book.apply_diff(u.seq, u.ts, bids, asks);
        return Step::Applied;
    }
    if u.seq <= last {
        return Step::Ignored;
    }
    book.break_sequence();
    Step::Broke
}

/// The text OKX's book checksum covers: the top [`rules::CHECKSUM_LEVELS`] bids and asks
/// (best first) interleaved, `bid1px:bid1sz:ask1px:ask1sz:bid2px:…`, a side that ran out left
/// out.
fn checksum_text(bids: &[[&str; 2]], asks: &[[&str; 2]]) -> String {
    let mut s = String::with_capacity(rules::CHECKSUM_LEVELS * 48);
    for i in 0..rules::CHECKSUM_LEVELS {
        for side in [bids, asks] {
            if let Some([p, q]) = side.get(i) {
                if !s.is_empty() {
                    s.push(':');
                }
                s.push_str(p);
                s.push(':');
                s.push_str(q);
            }
        }
    }
    s
}

/// OKX's book checksum: the CRC-32 (IEEE, zlib's) of [`checksum_text`], signed.
fn book_checksum(bids: &[[&str; 2]], asks: &[[&str; 2]]) -> i32 {
    crc32fast::hash(checksum_text(bids, asks).as_bytes()) as i32
}

/// OKX's frames: a channel's message (`arg` and `data`), an event (`subscribe`, `error`,
/// `notice`), the `pong` of the keep-alive.
pub struct OkxGrammar;

#[derive(Deserialize)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow, rename = "instId", default)]
    inst_id: Option<Cow<'a, str>>,
    /// Of a channel subscribed per instrument type (`liquidation-orders`).
    #[serde(borrow, rename = "instType", default)]
    inst_type: Option<Cow<'a, str>>,
}

impl Arg<'_> {
    /// What the channel is subscribed for: the instrument, or the instrument type.
    fn target(&self) -> &str {
        self.inst_id
            .as_deref()
            .or(self.inst_type.as_deref())
            .unwrap_or("")
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arg: Option<Arg<'a>>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(borrow, default)]
    msg: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Option<IgnoredAny>,
}

/// `text` up to its first `"`, and what follows that quote; `None` if it has no quote, or an
/// escape before it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let end = memchr::memchr(b'"', text.as_bytes())?;
    let value = &text[..end];
    (!value.contains('\\')).then(|| (value, &text[end + 1..]))
}

impl Grammar for OkxGrammar {
    fn read<'t>(&self, text: &'t str) -> Read<'t> {
        if text == rules::PONG {
            return Read::Other;
        }
        // OKX writes a message's arg first: the stream is named without reading the data.
        if let Some(rest) = text.strip_prefix(r#"{"arg":{"channel":""#) {
            if let Some((channel, rest)) = quoted(rest) {
                let target = rest
                    .strip_prefix(r#","instId":""#)
                    .or_else(|| rest.strip_prefix(r#","instType":""#))
                    .and_then(quoted);
                if let Some((inst_id, rest)) = target {
                    // A channel's message: the data follows (with the book's action first).
                    if rest.starts_with(r#"},"data":"#) || rest.starts_with(r#"},"action":"#) {
                        return Read::Event {
                            stream: Cow::Owned(stream_name(channel, inst_id)),
                            data: text,
                        };
                    }
                }
            }
        }
        let Ok(f) = serde_json::from_str::<Frame>(text) else {
            return Read::Other;
        };
        let code = || match &f.code {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        match (f.event.as_deref(), &f.arg) {
            (None, Some(arg)) if f.data.is_some() => Read::Event {
                stream: Cow::Owned(stream_name(&arg.channel, arg.target())),
                data: text,
            },
            (Some("subscribe"), Some(arg)) => match f.id.as_deref() {
                // The answer to one of a request's args that is not its last.
                Some(id) if id != answer_id(&arg.channel, arg.target()) => Read::Other,
                _ => Read::Answered,
            },
            (Some("subscribe"), None) => Read::Answered,
            (Some("error"), _) => Read::Refused(format!(
                "OKX error {}: {}",
                code(),
                f.msg.as_deref().unwrap_or("refused")
            )),
            (Some("notice"), _) if code() == rules::SERVICE_UPGRADE => Read::Shutdown,
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
    fn frames_are_read_as_okx_writes_them() {
        let g = OkxGrammar;
        let trade = r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3","source":"0","seqId":1234}]}"#;
        assert_eq!(
            g.read(trade),
            Read::Event {
                stream: Cow::Borrowed("trades:BTC-USDT"),
                data: trade
            }
        );
        let book =
            r#"{"arg":{"channel":"books","instId":"BTC-USDT-SWAP"},"action":"snapshot","data":[]}"#;
        assert!(
            matches!(g.read(book), Read::Event { stream, data } if stream == "books:BTC-USDT-SWAP" && data == book)
        );
        // Another order of the fields, or more of them in the arg: read whole.
        let reordered = r#"{"data":[["1","2","3","4","5","6","7","8","0"]],"arg":{"instId":"BTC-USDT","channel":"candle1m"}}"#;
        assert!(
            matches!(g.read(reordered), Read::Event { stream, .. } if stream == "candle1m:BTC-USDT")
        );
        let more = r#"{"arg":{"channel":"bbo-tbt","instId":"ETH-USDT","uid":"1"},"data":[]}"#;
        assert!(matches!(g.read(more), Read::Event { stream, .. } if stream == "bbo-tbt:ETH-USDT"));
        // Answers: the one to a request's last arg counts (the request echoes its id).
        let id = answer_id("trades", "ETH-USDT");
        assert_eq!(
            g.read(&format!(
                r#"{{"id":"{id}","event":"subscribe","arg":{{"channel":"trades","instId":"ETH-USDT"}},"connId":"a4d3ae55"}}"#
            )),
            Read::Answered
        );
        assert_eq!(
            g.read(&format!(
                r#"{{"id":"{id}","event":"subscribe","arg":{{"channel":"trades","instId":"BTC-USDT"}},"connId":"a4d3ae55"}}"#
            )),
            Read::Other,
            "an earlier arg of the same request"
        );
        assert_eq!(
            g.read(r#"{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4d3ae55"}"#),
            Read::Answered,
            "a request without an id: every answer counts"
        );
        assert!(matches!(
            g.read(r#"{"event":"error","code":"60018","msg":"Wrong URL or channel:candle1m,instId:BTC-USDT doesn't exist.","connId":"a4d3ae55"}"#),
            Read::Refused(m) if m.contains("60018") && m.contains("Wrong URL")
        ));
        assert_eq!(
            g.read(r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}"#),
            Read::Shutdown
        );
        assert_eq!(g.read("pong"), Read::Other);
        assert_eq!(
            g.read(r#"{"event":"unsubscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a"}"#),
            Read::Other
        );
        assert_eq!(g.read("not json"), Read::Other);
        // A channel subscribed per instrument type is one stream, named by the type.
        let liquidation = r#"{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"instId":"BTC-USDT-SWAP","details":[]}]}"#;
        assert!(
            matches!(g.read(liquidation), Read::Event { stream, data } if stream == "liquidation-orders:SWAP" && data == liquidation)
        );
        let reordered =
            r#"{"data":[],"arg":{"instType":"FUTURES","channel":"liquidation-orders"}}"#;
        assert!(
            matches!(g.read(reordered), Read::Event { stream, .. } if stream == "liquidation-orders:FUTURES")
        );
        let id = answer_id("liquidation-orders", "SWAP");
        assert_eq!(
            g.read(&format!(
                r#"{{"id":"{id}","event":"subscribe","arg":{{"channel":"liquidation-orders","instType":"SWAP"}},"connId":"a"}}"#
            )),
            Read::Answered
        );
    }

    #[test]
    fn a_plan_subscribes_in_requests_of_fifty_args_answered_once_each() {
        let symbols: Vec<Arc<str>> = (0..120).map(|i| Arc::from(format!("C{i}-USDT"))).collect();
        let requests = subscribe_requests("trades", &symbols);
        assert_eq!(requests.len(), 3);
        // Every request's answers (OKX answers each arg, echoing the id): one of them counts.
        let g = OkxGrammar;
        for (request, chunk) in requests
            .iter()
            .zip(symbols.chunks(rules::ARGS_PER_SUBSCRIBE))
        {
            let r: serde_json::Value = serde_json::from_str(request).unwrap();
            assert_eq!(r["op"], "subscribe");
            let args = r["args"].as_array().unwrap();
            assert_eq!(args.len(), chunk.len());
            assert_eq!(
                args[0],
                serde_json::json!({"channel": "trades", "instId": &*chunk[0]})
            );
            let id = r["id"].as_str().unwrap();
            assert!(
                id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{id}"
            );
            let answered = args
                .iter()
                .filter(|arg| {
                    let ack = serde_json::json!({"id": id, "event": "subscribe", "arg": arg, "connId": "c"});
                    g.read(&ack.to_string()) == Read::Answered
                })
                .count();
            assert_eq!(answered, 1);
        }
    }

    #[test]
    fn trades_are_read_with_the_takers_side_and_their_count() {
        let push: Push<Vec<WsTrade>> = serde_json::from_str(
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"42","px":"30000.1","sz":"0.5","side":"sell","ts":"1700000000000","count":"2"},{"instId":"BTC-USDT","tradeId":"43","px":"1","sz":"1","side":"buy","ts":"1700000000001"}]}"#,
        )
        .unwrap();
        let t = push.data[0].read().unwrap();
        assert_eq!(
            (t.id, t.time, t.price, t.size, t.buyer_maker, t.count),
            (42, 1_700_000_000_000, "30000.1", "0.5", true, 2)
        );
        let t = push.data[1].read().unwrap();
        assert!(!t.buyer_maker && t.count == 1);
        let bad: Push<Vec<WsTrade>> = serde_json::from_str(
            r#"{"data":[{"tradeId":"x","px":"1","sz":"1","side":"buy","ts":"1"}]}"#,
        )
        .unwrap();
        assert!(bad.data[0].read().unwrap_err().contains("tradeId"));
    }

    #[test]
    fn book_levels_take_price_and_size() {
        let push: Push<Vec<WsBook>> = serde_json::from_str(
            r#"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["8476.98","415","0","13"]],"bids":[["8476.97","256","0","12"],["8475.55","0","0","0"]],"ts":"1597026383085","checksum":-855196043,"prevSeqId":123456,"seqId":123457}]}"#,
        )
        .unwrap();
        assert_eq!(push.action.as_deref(), Some("update"));
        let d = &push.data[0];
        assert_eq!(levels(&d.asks), [["8476.98", "415"]]);
        assert_eq!(levels(&d.bids), [["8476.97", "256"], ["8475.55", "0"]]);
        assert_eq!(
            (d.prev_seq_id, d.seq_id, d.checksum),
            (Some(123_456), 123_457, Some(-855_196_043))
        );
        assert_eq!(d.time().unwrap(), 1_597_026_383_085);
    }

    fn update(snapshot: bool, prev: i64, seq: u64) -> Update {
        Update {
            snapshot,
            fresh: false,
            prev: Some(prev),
            seq,
            ts: seq as i64,
        }
    }

    #[test]
    fn book_updates_follow_their_seq_ids() {
        let mut book = Book::new();
        assert_eq!(
            apply(&mut book, update(false, 4, 5), &[], &[]),
            Step::Ignored,
            "no snapshot yet: waits"
        );
        assert_eq!(
            apply(
                &mut book,
                update(true, -1, 10),
                &[["1", "2"]],
                &[["3", "4"]]
            ),
            Step::Applied
        );
        assert_eq!(book.last_update_id, 10);
        assert_eq!(
            apply(&mut book, update(false, 10, 15), &[["1", "0"]], &[]),
            Step::Applied
        );
        assert_eq!(book.last_update_id, 15);
        // Nothing changed: the same seqId again.
        assert_eq!(
            apply(&mut book, update(false, 15, 15), &[], &[]),
            Step::Applied
        );
        // A repeat of an update applied (a hand-over's overlap), and of the snapshot.
        assert_eq!(
            apply(&mut book, update(false, 10, 15), &[], &[]),
            Step::Ignored
        );
        assert_eq!(
            apply(&mut book, update(true, -1, 10), &[], &[]),
            Step::Ignored
        );
        // An update lost: 15 → 20 never came.
        assert_eq!(
            apply(&mut book, update(false, 20, 26), &[], &[]),
            Step::Broke
        );
        assert!(book.needs_snapshot);
        assert_eq!(book.resyncs, 1);
        assert_eq!(
            apply(&mut book, update(false, 26, 30), &[], &[]),
            Step::Ignored,
            "waits for the snapshot"
        );
        assert_eq!(
            apply(&mut book, update(true, -1, 28), &[], &[]),
            Step::Applied
        );
        assert!(!book.needs_snapshot);
        // After a maintenance OKX starts its ids again: the update still follows the last.
        assert_eq!(
            apply(&mut book, update(false, 28, 3), &[], &[]),
            Step::Applied
        );
        assert_eq!(book.last_update_id, 3);
        // The first snapshot after a lost connection replaces the book, even an older one.
        let fresh = Update {
            fresh: true,
            ..update(true, -1, 2)
        };
        assert_eq!(apply(&mut book, fresh, &[], &[]), Step::Applied);
        assert_eq!(book.last_update_id, 2);
    }

    #[test]
    fn the_checksum_is_okxs_documented_one() {
        // The order book channel's examples (before the checksum was deprecated).
        let bids = [["3366.1", "7"], ["3366", "6"]];
        let asks = [["3366.8", "9"], ["3368", "8"]];
        assert_eq!(
            checksum_text(&bids, &asks),
            "3366.1:7:3366.8:9:3366:6:3368:8"
        );
        assert_eq!(book_checksum(&bids, &asks), -1_881_014_294);
        let bids = [["3366.1", "7"]];
        let asks = [["3366.8", "9"], ["3368", "8"], ["3372", "8"]];
        assert_eq!(
            checksum_text(&bids, &asks),
            "3366.1:7:3366.8:9:3368:8:3372:8"
        );
        assert_eq!(book_checksum(&bids, &asks), 831_078_360);
        // Only 25 levels a side count.
        let many: Vec<(String, String)> = (0..30)
            .map(|i| (format!("{}", 100 - i), "1".into()))
            .collect();
        let many: Vec<[&str; 2]> = many.iter().map(|(p, q)| [p.as_str(), q.as_str()]).collect();
        assert_eq!(checksum_text(&many, &[]).split(':').count(), 50);
    }

    #[test]
    fn the_books_levels_give_the_checksum() {
        let mut book = Book::new();
        book.load_snapshot(
            1,
            [["3366", "6"], ["3366.1", "7"], ["3360", "1"]],
            [["3368", "8"], ["3366.8", "9"]],
        );
        // A deleted level, its price written otherwise.
        book.apply_diff(2, 1, &[["3360.0", "0"]], &[]);
        assert_eq!(OkxFeed::check(&book, Some(-1_881_014_294)), None);
        assert!(OkxFeed::check(&book, Some(5)).is_some());
        assert_eq!(OkxFeed::check(&book, Some(0)), None, "0: no checksum");
    }

    #[test]
    fn only_okxs_utc_bars_are_streamed() {
        assert!(streams(LiveType::Trades, Market::Spot).is_ok());
        assert!(streams(LiveType::Candles(Interval::M1), Market::Spot).is_ok());
        assert_eq!(
            rules::candle_channel(Interval::H6).as_deref(),
            Some("candle6Hutc")
        );
        assert!(streams(LiveType::Candles(Interval::S1), Market::Spot)
            .unwrap_err()
            .contains("its bars"));
        assert!(streams(LiveType::AggTrades, Market::Spot)
            .unwrap_err()
            .contains("ws_trades"));
        assert!(streams(LiveType::Liquidations, Market::UsdM).is_ok());
        assert!(streams(LiveType::Liquidations, Market::Spot)
            .unwrap_err()
            .contains("MARKET=swap or MARKET=futures"));
    }
}
