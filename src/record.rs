//! The records the loader publishes and their wire form: one JSON object per Kafka message.
//!
//! Decimals stay the strings Binance sent (lossless), times are integer epoch ms, and every record
//! carries `market`, `symbol`, `timestamp` and a deterministic `_key` (`[<market>_]<SYMBOL>_<tag>_<ordinal>`,
//! the market prefix for futures only) so downstream upserts make redelivery harmless and records
//! of several markets can share a topic. Records are serialised straight from the borrowed REST rows into one buffer per page:
//! no intermediate trees, one allocation per page rather than per record.

use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::error::{LoaderError, Result};
use crate::flat_json;
use crate::market::{Market, Venue};

/// The tag between symbol and ordinal in a record's `_key`, per record kind: the one place they
/// are written (`RecordKind::key_tag` and `RecordKind::from_key` read them from here). Candles
/// use their interval, price candles and futures statistics `<series>_<interval>`.
pub mod tag {
    pub const AGG_TRADE: &str = "agg";
    pub const TRADE: &str = "trade";
    pub const DEPTH_UPDATE: &str = "depth";
    pub const ORDER_BOOK: &str = "book";
    pub const BOOK_TICKER: &str = "bookticker";
    pub const FUNDING_RATE: &str = "funding";
    pub const MARK_PRICE: &str = "markprice";
    pub const LIQUIDATION: &str = "liquidation";
    pub const OPEN_INTEREST: &str = "open_interest";
    pub const GLOBAL_RATIO: &str = "global_ratio";
    pub const TOP_ACCOUNT_RATIO: &str = "top_account_ratio";
    pub const TOP_POSITION_RATIO: &str = "top_position_ratio";
}

/// One candle as published (`_key` = `SYMBOL_INTERVAL_OPENTIME`). Venues that do not count a
/// candle's trades or taker volumes (Bybit) leave those fields out; Binance's records have no
/// `exchange` (they predate venues), every other venue's do.
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct KlineRecord<'a> {
    pub _key: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    pub market: &'a str,
    pub symbol: &'a str,
    pub interval: &'a str,
    pub timestamp: i64,
    pub open_time: i64,
    pub open: &'a str,
    pub high: &'a str,
    pub low: &'a str,
    pub close: &'a str,
    pub volume: &'a str,
    pub close_time: i64,
    pub quote_asset_volume: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_trades: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_buy_base_asset_volume: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_buy_quote_asset_volume: Option<&'a str>,
}

/// A candle of a venue that reports open, high, low, close and the two volumes only (Bybit:
/// `volume` in the base coin, or contracts on inverse markets; `quote_volume` its turnover, in
/// the quote coin, or the base coin on inverse markets, as Binance's COIN-M candles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candle<'a> {
    pub open_time: i64,
    pub close_time: i64,
    pub open: &'a str,
    pub high: &'a str,
    pub low: &'a str,
    pub close: &'a str,
    pub volume: &'a str,
    pub quote_volume: &'a str,
}

/// One aggregate trade as published (`_key` = `SYMBOL_agg_ID`).
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct AggTradeRecord<'a> {
    pub _key: &'a str,
    pub market: &'a str,
    pub symbol: &'a str,
    pub trade_id: u64,
    pub price: &'a str,
    pub quantity: &'a str,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub timestamp: i64,
    pub is_buyer_maker: bool,
    /// Spot only: futures trades carry no best-match flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_best_match: Option<bool>,
}

/// One raw trade (`api_raw_trades`, `ws_trades`; `_key` = `SYMBOL_trade_ID`, or of a venue
/// whose trade ids carry no order `<venue>_<market>_SYMBOL_trade_<time_rank>`, see
/// [`crate::registry::time_rank`]).
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TradeRecord<'a> {
    pub _key: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    pub market: &'a str,
    pub symbol: &'a str,
    #[serde(borrow)]
    pub trade_id: TradeId<'a>,
    pub price: &'a str,
    pub quantity: &'a str,
    pub timestamp: i64,
    pub is_buyer_maker: bool,
    /// Spot only: futures trades carry no best-match flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_best_match: Option<bool>,
}

/// A trade's id as its venue gives it: a number (Binance's, Bybit's spot trades) or a string
/// (Bybit's derivatives trades, UUIDs).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum TradeId<'a> {
    Number(u64),
    Text(&'a str),
}

/// A trade of a venue whose trade ids carry no order, with its ordinal
/// ([`crate::registry::time_rank`]).
#[derive(Debug, Clone, Copy)]
pub struct RankedTrade<'a> {
    pub ordinal: i64,
    pub id: TradeId<'a>,
    pub price: &'a str,
    pub quantity: &'a str,
    pub time: i64,
    pub is_buyer_maker: bool,
}

/// One diff-depth event (`ws_depth`; `_key` = `SYMBOL_depth_FINALUPDATEID`). Price levels are
/// `[price, quantity]` strings as Binance sends them; quantity "0" removes the level.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DepthUpdateRecord<'a> {
    pub _key: &'a str,
    pub market: &'a str,
    pub symbol: &'a str,
    pub timestamp: i64,
    pub first_update_id: u64,
    pub final_update_id: u64,
    /// Futures only (`pu`): the previous event's final update id, which chains futures events
    /// (their ids are not contiguous between events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_final_update_id: Option<u64>,
    pub bids: &'a [[&'a str; 2]],
    pub asks: &'a [[&'a str; 2]],
    /// The previous event of this symbol did not end at `first_update_id - 1`: updates were lost.
    pub sequence_break: bool,
}

/// A local order-book snapshot (`ws_orderbook`; `_key` = `SYMBOL_book_LASTUPDATEID`), best levels
/// first.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OrderBookRecord<'a> {
    pub _key: &'a str,
    /// The venue, on every venue but Binance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    pub market: &'a str,
    pub symbol: &'a str,
    pub timestamp: i64,
    pub last_update_id: u64,
    pub bids: Vec<[&'a str; 2]>,
    pub asks: Vec<[&'a str; 2]>,
    /// Times this book was rebuilt from a new snapshot after its diff sequence broke.
    pub resyncs: u64,
}

/// Best bid and ask (`ws_bookticker`; `_key` = `SYMBOL_bookticker_UPDATEID`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BookTickerRecord<'a> {
    pub _key: &'a str,
    /// The venue, on every venue but Binance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    pub market: &'a str,
    pub symbol: &'a str,
    /// Receive time: Binance's spot bookTicker carries no event time.
    pub timestamp: i64,
    pub update_id: u64,
    pub best_bid_price: &'a str,
    pub best_bid_qty: &'a str,
    pub best_ask_price: &'a str,
    pub best_ask_qty: &'a str,
}

/// One futures mark-, index- or premium-index candle (`api_<series>_price_candles_<iv>`;
/// `_key` = `SYMBOL_<mark|index|premium>_<interval>_<open time>`). Binance's volume columns are
/// empty for these series, so they are not carried.
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct PriceKlineRecord<'a> {
    pub _key: &'a str,
    pub market: &'a str,
    pub symbol: &'a str,
    /// `mark`, `index` or `premium`.
    pub series: &'a str,
    pub interval: &'a str,
    pub timestamp: i64,
    pub open_time: i64,
    pub open: &'a str,
    pub high: &'a str,
    pub low: &'a str,
    pub close: &'a str,
    pub close_time: i64,
}

/// One funding-rate settlement (`api_funding_rate`; `_key` = `SYMBOL_funding_<funding time>`).
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct FundingRateRecord<'a> {
    pub _key: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    pub market: &'a str,
    pub symbol: &'a str,
    pub timestamp: i64,
    pub funding_time: i64,
    pub funding_rate: &'a str,
    /// USDⓈ-M only: the mark price at settlement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark_price: Option<&'a str>,
}

/// Open interest at the end of a period (`api_open_interest_<period>`;
/// `_key` = `SYMBOL_open_interest_<period>_<time>`).
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct OpenInterestRecord<'a> {
    pub _key: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    pub market: &'a str,
    pub symbol: &'a str,
    pub period: &'a str,
    pub timestamp: i64,
    /// Contracts (COIN-M) or base asset (USDⓈ-M).
    pub sum_open_interest: &'a str,
    /// In the quote asset (USDⓈ-M) or the base asset (COIN-M); venues that report no value
    /// (Bybit) leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_open_interest_value: Option<&'a str>,
}

/// A long/short ratio of a period (`api_long_short_ratio_<period>` and the top-trader ones;
/// `_key` = `SYMBOL_<global_ratio|top_account_ratio|top_position_ratio>_<period>_<time>`).
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct LongShortRatioRecord<'a> {
    pub _key: &'a str,
    pub market: &'a str,
    pub symbol: &'a str,
    /// `global_accounts`, `top_accounts` or `top_positions`.
    pub ratio: &'a str,
    pub period: &'a str,
    pub timestamp: i64,
    pub long_short_ratio: &'a str,
    /// Share of accounts (or of positions) that are long, 0..1.
    pub long_share: &'a str,
    pub short_share: &'a str,
}

/// A mark-price update (`ws_mark_price`; `_key` = `SYMBOL_markprice_<event time>`).
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct MarkPriceRecord<'a> {
    pub _key: &'a str,
    pub market: &'a str,
    pub symbol: &'a str,
    pub timestamp: i64,
    pub mark_price: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_price: Option<&'a str>,
    pub estimated_settle_price: &'a str,
    pub funding_rate: &'a str,
    pub next_funding_time: i64,
}

/// A liquidation order (`ws_liquidations`). Binance's `_key` is `SYMBOL_liquidation_<trade
/// time>`: it pushes the latest one per symbol each second, so its records are a sample, not
/// every liquidation. Other venues' keys end in the time-rank ordinal of the liquidation
/// (`time_rank`), since Bybit pushes every one and two can share a millisecond.
///
/// `side` is the liquidation order's side on every venue (`SELL` when a long position was
/// liquidated); `price` is the order's price (Binance), or the bankruptcy price (Bybit, OKX);
/// `quantity` is in the venue's order units (contracts on OKX and on inverse markets). The
/// order's type, time in force, fills and status are Binance's alone: other venues do not
/// publish them.
#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct LiquidationRecord<'a> {
    pub _key: &'a str,
    /// The venue, on every venue but Binance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'a str>,
    pub market: &'a str,
    pub symbol: &'a str,
    pub timestamp: i64,
    /// When the venue sent it (Binance's `E`, Bybit's message `ts`; OKX sends none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<i64>,
    /// `BUY` or `SELL`.
    pub side: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_type: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_in_force: Option<&'a str>,
    pub quantity: &'a str,
    pub price: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_price: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_filled_quantity: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filled_quantity: Option<&'a str>,
}

/// A REST kline row: `[openTime, open, high, low, close, volume, closeTime, quoteVolume, trades,
/// takerBuyBase, takerBuyQuote, ignore]`.
#[derive(Debug, Deserialize)]
pub struct RawKline<'a>(
    pub i64,
    pub &'a str,
    pub &'a str,
    pub &'a str,
    pub &'a str,
    pub &'a str,
    pub i64,
    pub &'a str,
    pub u64,
    pub &'a str,
    pub &'a str,
    pub IgnoredAny,
);

/// A REST raw-trade row (`historicalTrades`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawTrade<'a> {
    pub id: u64,
    pub price: &'a str,
    pub qty: &'a str,
    pub time: i64,
    pub is_buyer_maker: bool,
    #[serde(default)]
    pub is_best_match: Option<bool>,
}

/// A REST aggregate-trade row.
#[derive(Debug, Deserialize)]
pub struct RawAggTrade<'a> {
    pub a: u64,
    pub p: &'a str,
    pub q: &'a str,
    pub f: u64,
    pub l: u64,
    #[serde(rename = "T")]
    pub time: i64,
    pub m: bool,
    #[serde(rename = "M", default)]
    pub best_match: Option<bool>,
}

impl<'a> RawAggTrade<'a> {
    /// Reads one aggregate trade, as Binance writes it (the flat way, `flat_json`), or
    /// through serde_json: the same result either way.
    pub fn from_json(text: &'a str) -> serde_json::Result<Self> {
        flat_json::or_serde(text, Self::from_flat)
    }

    fn from_flat(text: &'a str) -> Option<Self> {
        Self::from_flat_at(text, 0)
            .filter(|&(_, end)| end == text.len())
            .map(|(t, _)| t)
    }

    /// The aggregate trade written at byte `at` of `text`, and where it ends.
    pub(crate) fn from_flat_at(text: &'a str, at: usize) -> Option<(Self, usize)> {
        let (mut a, mut p, mut q, mut f, mut l, mut time, mut m) = Default::default();
        let mut best_match: Option<Option<bool>> = None;
        let end = flat_json::object(text, at, |name, v| match name {
            "a" => flat_json::once(&mut a, v.u64()),
            "p" => flat_json::once(&mut p, v.str()),
            "q" => flat_json::once(&mut q, v.str()),
            "f" => flat_json::once(&mut f, v.u64()),
            "l" => flat_json::once(&mut l, v.u64()),
            "T" => flat_json::once(&mut time, v.i64()),
            "m" => flat_json::once(&mut m, v.bool()),
            "M" => flat_json::once(&mut best_match, v.opt_bool()),
            _ => Some(()),
        })?;
        let t = RawAggTrade {
            a: a?,
            p: p?,
            q: q?,
            f: f?,
            l: l?,
            time: time?,
            m: m?,
            best_match: best_match.flatten(),
        };
        Some((t, end))
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    end: u32,
    key_start: u32,
    key_end: u32,
}

/// Serialised records of one symbol, in order, ready for the sink.
#[derive(Debug)]
pub struct RecordBatch {
    pub venue: Venue,
    pub market: Market,
    pub symbol: Arc<str>,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    key_scratch: String,
    /// Timestamps of the oldest and newest record (progress reporting).
    pub first_timestamp: i64,
    pub last_timestamp: i64,
}

const KEY_PREFIX: &[u8] = b"{\"_key\":\"";

impl RecordBatch {
    pub fn new(venue: Venue, market: Market, symbol: Arc<str>, capacity: usize) -> Self {
        RecordBatch {
            venue,
            market,
            symbol,
            buf: Vec::with_capacity(capacity * 320),
            entries: Vec::with_capacity(capacity),
            key_scratch: String::with_capacity(48),
            first_timestamp: i64::MIN,
            last_timestamp: i64::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(payload, record key)` of each record, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut start = 0usize;
        self.entries.iter().map(move |e| {
            let payload = &self.buf[start..e.end as usize];
            start = e.end as usize;
            (payload, &self.buf[e.key_start as usize..e.key_end as usize])
        })
    }

    fn push_with<T: Serialize>(&mut self, timestamp: i64, key: &str, record: &T) -> Result<()> {
        let start = self.buf.len();
        serde_json::to_writer(&mut self.buf, record)
            .map_err(|e| LoaderError::Other(format!("a record does not serialise: {e}")))?;
        self.seal(start, timestamp, key)
    }

    /// Starts a record written by [`ObjectWriter`]: `_key`, `exchange` (where the record has
    /// one and the venue is not Binance), `market`, `symbol`. Returns where the record starts.
    fn begin(&mut self, key: &str, exchange: bool) -> (usize, ObjectWriter<'_>) {
        let start = self.buf.len();
        let mut o = ObjectWriter::new(&mut self.buf, key);
        if let Some(name) = self.venue.record_field().filter(|_| exchange) {
            o.str(field!("exchange"), name);
        }
        o.str(field!("market"), self.venue.market_name(self.market));
        o.str(field!("symbol"), &self.symbol);
        (start, o)
    }

    /// Ends the record written from `start` on: checks its `_key` and notes where it lies.
    fn seal(&mut self, start: usize, timestamp: i64, key: &str) -> Result<()> {
        // The message key (KAFKA_MESSAGE_KEY=record) is sliced out of the payload: `_key` must be
        // the first field, unescaped. Checked on every record, in release builds too.
        let key_start = start + KEY_PREFIX.len();
        let written = &self.buf[start..];
        if !(written.starts_with(KEY_PREFIX)
            && written[KEY_PREFIX.len()..].starts_with(key.as_bytes())
            && written.get(KEY_PREFIX.len() + key.len()) == Some(&b'"'))
        {
            self.buf.truncate(start);
            return Err(LoaderError::Other(format!(
                "record {key:?} does not start with its _key field; refusing to publish it with a wrong message key"
            )));
        }
        let key_len = key.len();
        if self.entries.is_empty() {
            self.first_timestamp = timestamp;
        }
        self.entries.push(Entry {
            end: self.buf.len() as u32,
            key_start: key_start as u32,
            key_end: (key_start + key_len) as u32,
        });
        self.last_timestamp = timestamp;
        Ok(())
    }

    /// Appends any record whose first field is `_key` (equal to `key`).
    /// The `_key` of this batch's record with `tag` ([`tag`], or an interval) and `ordinal`,
    /// written into the batch's scratch string (give it back with
    /// [`reuse_key`](Self::reuse_key)).
    pub fn key(&mut self, tag: &str, ordinal: impl itoa::Integer) -> String {
        self.key_of(&[tag], ordinal)
    }

    /// [`key`](Self::key) for a tag of several parts joined by `_` (`mark_1m`, `open_interest_5m`).
    pub fn key_of(&mut self, tag: &[&str], ordinal: impl itoa::Integer) -> String {
        let mut key = std::mem::take(&mut self.key_scratch);
        key.clear();
        key.push_str(self.venue.key_prefix(self.market));
        key.push_str(&self.symbol);
        for part in tag {
            key.push('_');
            key.push_str(part);
        }
        key.push('_');
        key.push_str(itoa::Buffer::new().format(ordinal));
        key
    }

    /// Gives the key's allocation back for the next record.
    pub fn reuse_key(&mut self, key: String) {
        self.key_scratch = key;
    }

    pub fn push_record<T: Serialize>(
        &mut self,
        timestamp: i64,
        key: &str,
        record: &T,
    ) -> Result<()> {
        self.push_with(timestamp, key, record)
    }

    /// Appends a candle: a [`KlineRecord`] with every field, written by [`ObjectWriter`].
    pub fn push_kline(&mut self, interval: &str, k: &RawKline<'_>) -> Result<()> {
        let key = self.key(interval, k.0);
        let (start, mut o) = self.begin(&key, true);
        o.str(field!("interval"), interval);
        o.int(field!("timestamp"), k.0);
        o.int(field!("open_time"), k.0);
        o.str(field!("open"), k.1);
        o.str(field!("high"), k.2);
        o.str(field!("low"), k.3);
        o.str(field!("close"), k.4);
        o.str(field!("volume"), k.5);
        o.int(field!("close_time"), k.6);
        o.str(field!("quote_asset_volume"), k.7);
        o.int(field!("number_of_trades"), k.8);
        o.str(field!("taker_buy_base_asset_volume"), k.9);
        o.str(field!("taker_buy_quote_asset_volume"), k.10);
        o.end();
        let r = self.seal(start, k.0, &key);
        self.key_scratch = key;
        r
    }

    /// A funding settlement at `funding_time` (`_key` = `SYMBOL_funding_<funding time>`), with
    /// the mark price where the venue reports it.
    pub fn push_funding(
        &mut self,
        funding_time: i64,
        funding_rate: &str,
        mark_price: Option<&str>,
    ) -> Result<()> {
        let key = self.key(tag::FUNDING_RATE, funding_time);
        let symbol = self.symbol.clone();
        let rec = FundingRateRecord {
            _key: &key,
            exchange: self.venue.record_field(),
            market: self.venue.market_name(self.market),
            symbol: &symbol,
            timestamp: funding_time,
            funding_time,
            funding_rate,
            mark_price,
        };
        let r = self.push_with(funding_time, &key, &rec);
        self.key_scratch = key;
        r
    }

    /// Open interest at `t` of a `period` (`_key` = `SYMBOL_open_interest_<period>_<t>`), and
    /// its value where the venue reports one.
    pub fn push_open_interest(
        &mut self,
        period: &str,
        t: i64,
        sum_open_interest: &str,
        sum_open_interest_value: Option<&str>,
    ) -> Result<()> {
        let key = self.key_of(&[tag::OPEN_INTEREST, period], t);
        let symbol = self.symbol.clone();
        let rec = OpenInterestRecord {
            _key: &key,
            exchange: self.venue.record_field(),
            market: self.venue.market_name(self.market),
            symbol: &symbol,
            period,
            timestamp: t,
            sum_open_interest,
            sum_open_interest_value,
        };
        let r = self.push_with(t, &key, &rec);
        self.key_scratch = key;
        r
    }

    /// A [`Candle`] as a [`KlineRecord`] without trade counts and taker volumes.
    pub fn push_candle(&mut self, interval: &str, c: &Candle<'_>) -> Result<()> {
        let key = self.key(interval, c.open_time);
        let symbol = self.symbol.clone();
        let rec = KlineRecord {
            _key: &key,
            exchange: self.venue.record_field(),
            market: self.venue.market_name(self.market),
            symbol: &symbol,
            interval,
            timestamp: c.open_time,
            open_time: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            close_time: c.close_time,
            quote_asset_volume: c.quote_volume,
            number_of_trades: None,
            taker_buy_base_asset_volume: None,
            taker_buy_quote_asset_volume: None,
        };
        let r = self.push_with(c.open_time, &key, &rec);
        self.key_scratch = key;
        r
    }

    /// Appends an aggregate trade: an [`AggTradeRecord`], written by [`ObjectWriter`].
    pub fn push_agg_trade(&mut self, t: &RawAggTrade<'_>) -> Result<()> {
        let key = self.key(tag::AGG_TRADE, t.a);
        // Only Binance has aggregate trades, and its records name no exchange.
        let (start, mut o) = self.begin(&key, false);
        o.int(field!("trade_id"), t.a);
        o.str(field!("price"), t.p);
        o.str(field!("quantity"), t.q);
        o.int(field!("first_trade_id"), t.f);
        o.int(field!("last_trade_id"), t.l);
        o.int(field!("timestamp"), t.time);
        o.bool(field!("is_buyer_maker"), t.m);
        if let Some(best) = t.best_match {
            o.bool(field!("is_best_match"), best);
        }
        o.end();
        let r = self.seal(start, t.time, &key);
        self.key_scratch = key;
        r
    }

    /// Appends a raw trade (`_key` = `SYMBOL_trade_ID`), from REST, the archive or the stream.
    pub fn push_trade(&mut self, t: &RawTrade<'_>) -> Result<()> {
        self.push_trade_keyed(
            &RankedTrade {
                ordinal: t.id as i64,
                id: TradeId::Number(t.id),
                price: t.price,
                quantity: t.qty,
                time: t.time,
                is_buyer_maker: t.is_buyer_maker,
            },
            t.is_best_match,
        )
    }

    /// Pushes a trade keyed by its time and rank (venues whose trade ids order nothing).
    pub fn push_ranked_trade(&mut self, t: &RankedTrade<'_>) -> Result<()> {
        self.push_trade_keyed(t, None)
    }

    /// Pushes a trade under `t.ordinal` (its id where ids are ordinals).
    /// A [`TradeRecord`], written by [`ObjectWriter`].
    fn push_trade_keyed(&mut self, t: &RankedTrade<'_>, is_best_match: Option<bool>) -> Result<()> {
        let key = self.key(tag::TRADE, t.ordinal);
        let (start, mut o) = self.begin(&key, true);
        match t.id {
            TradeId::Number(id) => o.int(field!("trade_id"), id),
            TradeId::Text(id) => o.str(field!("trade_id"), id),
        }
        o.str(field!("price"), t.price);
        o.str(field!("quantity"), t.quantity);
        o.int(field!("timestamp"), t.time);
        o.bool(field!("is_buyer_maker"), t.is_buyer_maker);
        if let Some(best) = is_best_match {
            o.bool(field!("is_best_match"), best);
        }
        o.end();
        let r = self.seal(start, t.time, &key);
        self.key_scratch = key;
        r
    }
}

/// Writes one JSON object into a buffer, byte for byte as serde_json writes the record structs
/// above (fields in their order, absent options left out), for the records published by the
/// million (candles, trades): serde's derived code escapes every field name and goes through
/// several calls per field, which cost the loader a tenth of its CPU on the REST trade path.
/// The test `fast_records_are_byte_for_byte_serde_json` holds the two together.
struct ObjectWriter<'b> {
    buf: &'b mut Vec<u8>,
}

/// `,"name":`, a field after the record's first (`_key`) as [`ObjectWriter`] writes it, made
/// at compile time: one copy a field instead of four. Names are the structs' field names:
/// nothing in them needs escaping.
macro_rules! field {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}
use field;

impl<'b> ObjectWriter<'b> {
    /// Opens the object with its first field, `_key`.
    fn new(buf: &'b mut Vec<u8>, key: &str) -> Self {
        buf.extend_from_slice(br#"{"_key":"#);
        let mut o = ObjectWriter { buf };
        o.string(key);
        o
    }

    /// A string value. What serde_json escapes: quotes, backslashes and control characters. A
    /// value without any (every decimal, symbol and key) is written as it is.
    fn string(&mut self, value: &str) {
        if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.buf.push(b'"');
            self.buf.extend_from_slice(value.as_bytes());
            self.buf.push(b'"');
        } else {
            let escaped = serde_json::Value::from(value).to_string();
            self.buf.extend_from_slice(escaped.as_bytes());
        }
    }

    /// A field (`field!`) with a string value.
    fn str(&mut self, field: &'static str, value: &str) {
        self.buf.extend_from_slice(field.as_bytes());
        self.string(value);
    }

    /// A field with an integer value, signed or not.
    fn int(&mut self, field: &'static str, value: impl itoa::Integer) {
        self.buf.extend_from_slice(field.as_bytes());
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn bool(&mut self, field: &'static str, value: bool) {
        self.buf.extend_from_slice(field.as_bytes());
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn end(self) {
        self.buf.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast way reads an aggregate trade exactly as serde_json does (spot's layout and
    /// futures', without `M`), and declines whatever serde_json refuses.
    #[test]
    fn agg_trades_read_the_fast_way_are_what_serde_json_reads() {
        let spot = r#"{"e":"aggTrade","E":1704067200123,"s":"BTCUSDT","a":3000000001,"p":"42000.10000000","q":"0.00100000","f":4000000001,"l":4000000003,"T":1704067200120,"m":true,"M":true}"#;
        let futures = r#"{"e":"aggTrade","E":1704067200123,"s":"BTCUSDT","a":5,"p":"42000.1","q":"0.001","f":100,"l":105,"T":1704067200120,"m":false}"#;
        for event in [spot, futures] {
            assert!(RawAggTrade::from_flat(event).is_some(), "{event}");
            let texts = flat_json::check::variants(event);
            let fast = flat_json::check::same_as_serde(&texts, RawAggTrade::from_flat);
            assert!(
                fast > 40,
                "the fast way took only {fast} of {}",
                texts.len()
            );
            // A REST page: the same rows in an array.
            let pages: Vec<(String, bool)> = texts
                .iter()
                .map(|(text, flat)| (format!("[{event},{text}]"), *flat))
                .chain([("[]".to_string(), true), ("[ ]".to_string(), false)])
                .collect();
            let fast = flat_json::check::same_as_serde(&pages, |page| {
                flat_json::array(page, |at| RawAggTrade::from_flat_at(page, at))
            });
            assert!(
                fast > 40,
                "the fast way took only {fast} of {} pages",
                pages.len()
            );
            flat_json::check::same_result(&texts, RawAggTrade::from_json);
        }
    }

    #[test]
    fn kline_rows_become_lossless_json_with_keys() {
        let body = br#"[[1672531200000,"16541.77000000","16545.70000000","16508.39000000","16529.67000000","4364.83570000",1672531259999,"72146210.91866570",5000,"2137.69070000","35333858.63540000","0"]]"#;
        let rows: Vec<RawKline> = serde_json::from_slice(body).unwrap();
        let mut batch = RecordBatch::new(Venue::Binance, Market::Spot, "BTCUSDT".into(), 1);
        batch.push_kline("1m", &rows[0]).unwrap();
        let (payload, key) = batch.iter().next().unwrap();
        assert_eq!(key, b"BTCUSDT_1m_1672531200000");
        let rec: KlineRecord = serde_json::from_slice(payload).unwrap();
        assert_eq!(rec.open, "16541.77000000");
        assert_eq!(rec.timestamp, 1672531200000);
        assert_eq!(rec.close_time, 1672531259999);
        assert_eq!(rec.number_of_trades, Some(5000));
        assert_eq!(rec.symbol, "BTCUSDT");
    }

    #[test]
    fn a_record_whose_first_field_is_not_its_key_is_refused() {
        #[derive(Serialize)]
        struct Misordered<'a> {
            symbol: &'a str,
            _key: &'a str,
        }
        let mut batch = RecordBatch::new(Venue::Binance, Market::Spot, "BTCUSDT".into(), 1);
        let rec = Misordered {
            symbol: "BTCUSDT",
            _key: "BTCUSDT_x_1",
        };
        let e = batch.push_record(1, "BTCUSDT_x_1", &rec).unwrap_err();
        assert!(e.to_string().contains("_key"), "{e}");
        assert!(batch.is_empty());
        #[derive(Serialize)]
        struct Keyed<'a> {
            _key: &'a str,
        }
        // The key given must be the one in the record.
        assert!(batch
            .push_record(
                1,
                "BTCUSDT_x_2",
                &Keyed {
                    _key: "BTCUSDT_x_1"
                }
            )
            .is_err());
        batch
            .push_record(
                1,
                "BTCUSDT_x_1",
                &Keyed {
                    _key: "BTCUSDT_x_1",
                },
            )
            .unwrap();
        assert_eq!(batch.iter().next().unwrap().1, b"BTCUSDT_x_1");
    }

    #[test]
    fn agg_trades_keep_ids_and_flags() {
        let body = br#"[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,"M":true},{"a":26130,"p":"0.1","q":"1","f":27782,"l":27783,"T":1498793709154,"m":false,"M":true}]"#;
        let rows: Vec<RawAggTrade> = serde_json::from_slice(body).unwrap();
        let mut batch = RecordBatch::new(Venue::Binance, Market::UsdM, "ETHBTC".into(), 2);
        for r in &rows {
            batch.push_agg_trade(r).unwrap();
        }
        let all: Vec<_> = batch.iter().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].1, b"usdm_ETHBTC_agg_26130");
        let rec: AggTradeRecord = serde_json::from_slice(all[0].0).unwrap();
        assert_eq!(
            (rec.trade_id, rec.first_trade_id, rec.is_buyer_maker),
            (26129, 27781, true)
        );
        assert_eq!(batch.last_timestamp, 1498793709154);
    }

    /// The records written by `ObjectWriter` are exactly what serde_json writes for their
    /// structs (which the schema and every reader follow): every venue's fields, absent options,
    /// both kinds of trade id, and values that need escaping.
    #[test]
    fn fast_records_are_byte_for_byte_serde_json() {
        let payloads = |batch: &RecordBatch| -> Vec<Vec<u8>> {
            batch.iter().map(|(p, _)| p.to_vec()).collect()
        };
        let odd = [
            "42000.10",
            "1\"2",
            "3\\4",
            "5\n",
            "\u{1f}",
            "é€😀",
            "",
            "\u{7f}",
        ];
        for venue in [Venue::Binance, Venue::Bybit, Venue::Okx] {
            for market in [Market::Spot, Market::UsdM] {
                let symbol: Arc<str> = "BTC-USDT".into();
                let mut batch = RecordBatch::new(venue, market, symbol.clone(), 4);
                let mut expected = Vec::new();
                for (i, value) in odd.iter().enumerate() {
                    let best = [None, Some(true), Some(false)][i % 3];
                    let t = RawAggTrade {
                        a: 7 + i as u64,
                        p: value,
                        q: odd[(i + 1) % odd.len()],
                        f: 3,
                        l: u64::MAX,
                        time: -5 + i as i64,
                        m: i % 2 == 0,
                        best_match: best,
                    };
                    batch.push_agg_trade(&t).unwrap();
                    let key = batch.key(tag::AGG_TRADE, t.a);
                    expected.push(
                        serde_json::to_vec(&AggTradeRecord {
                            _key: &key,
                            market: venue.market_name(market),
                            symbol: &symbol,
                            trade_id: t.a,
                            price: t.p,
                            quantity: t.q,
                            first_trade_id: t.f,
                            last_trade_id: t.l,
                            timestamp: t.time,
                            is_buyer_maker: t.m,
                            is_best_match: t.best_match,
                        })
                        .unwrap(),
                    );
                    let k = RawKline(
                        i64::MIN + i as i64,
                        value,
                        "2",
                        odd[(i + 2) % odd.len()],
                        "4",
                        "5",
                        i64::MAX,
                        value,
                        u64::MAX - i as u64,
                        "9",
                        value,
                        IgnoredAny,
                    );
                    batch.push_kline("1m", &k).unwrap();
                    let key = batch.key("1m", k.0);
                    expected.push(
                        serde_json::to_vec(&KlineRecord {
                            _key: &key,
                            exchange: venue.record_field(),
                            market: venue.market_name(market),
                            symbol: &symbol,
                            interval: "1m",
                            timestamp: k.0,
                            open_time: k.0,
                            open: k.1,
                            high: k.2,
                            low: k.3,
                            close: k.4,
                            volume: k.5,
                            close_time: k.6,
                            quote_asset_volume: k.7,
                            number_of_trades: Some(k.8),
                            taker_buy_base_asset_volume: Some(k.9),
                            taker_buy_quote_asset_volume: Some(k.10),
                        })
                        .unwrap(),
                    );
                    for id in [TradeId::Number(i as u64 * 1000), TradeId::Text(value)] {
                        let t = RankedTrade {
                            ordinal: 11 + i as i64,
                            id,
                            price: value,
                            quantity: "0.5",
                            time: 1_700_000_000_000 + i as i64,
                            is_buyer_maker: i % 2 == 1,
                        };
                        batch.push_trade_keyed(&t, best).unwrap();
                        let key = batch.key(tag::TRADE, t.ordinal);
                        expected.push(
                            serde_json::to_vec(&TradeRecord {
                                _key: &key,
                                exchange: venue.record_field(),
                                market: venue.market_name(market),
                                symbol: &symbol,
                                trade_id: t.id,
                                price: t.price,
                                quantity: t.quantity,
                                timestamp: t.time,
                                is_buyer_maker: t.is_buyer_maker,
                                is_best_match: best,
                            })
                            .unwrap(),
                        );
                    }
                }
                let written = payloads(&batch);
                assert_eq!(written.len(), expected.len());
                for (w, e) in written.iter().zip(&expected) {
                    assert_eq!(
                        String::from_utf8_lossy(w),
                        String::from_utf8_lossy(e),
                        "{venue:?} {market:?}"
                    );
                }
            }
        }
    }
}
