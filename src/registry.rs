//! The data-type registry: the one place that says, per data type, how `TYPE` names it, which
//! sources can produce it (the REST API, the data.binance.vision archive, a WebSocket stream),
//! what its records look like (their `_key`) and what `verify` checks for them.
//!
//! Adding a data type means one entry in [`TYPES`], a variant in [`HistoryType`] or
//! [`LiveType`] (plus [`RecordKind`] when its records are new), and in each venue that serves
//! it a module implementing `venue::history::History` (Binance's are named in
//! `venue::binance::history::history`) or a live handler; `config`, `job`, `verify`, `demo` and the help text take everything else from here,
//! and `tests/compliance.rs` loads and verifies every entry on every market it lists.

use std::fmt;

use kline_interval::Interval;

use crate::market::{Market, Venue};
use crate::record::tag;

/// The price series futures publish as candles besides trades (their endpoints and archive
/// directories are the venue's: `venue::binance::endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PriceSeries {
    /// The mark price.
    Mark,
    /// The index price (of the pair, not of one contract).
    Index,
    /// The premium index.
    Premium,
}

impl PriceSeries {
    pub const ALL: [PriceSeries; 3] = [PriceSeries::Mark, PriceSeries::Index, PriceSeries::Premium];
}

/// The futures statistics series (open interest, long/short ratios), one row per period (their
/// endpoints are the venue's: `venue::binance::endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FuturesSeries {
    /// Open interest.
    OpenInterest,
    /// The long/short ratio of all accounts.
    GlobalAccountRatio,
    /// The long/short ratio of the top traders' accounts.
    TopAccountRatio,
    /// The long/short ratio of the top traders' positions.
    TopPositionRatio,
}

impl FuturesSeries {
    pub const ALL: [FuturesSeries; 4] = [
        FuturesSeries::OpenInterest,
        FuturesSeries::GlobalAccountRatio,
        FuturesSeries::TopAccountRatio,
        FuturesSeries::TopPositionRatio,
    ];
}

/// Where records can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The REST API (`api.binance.com`), paged within the request-weight budget.
    Rest,
    /// The daily and monthly zip files on data.binance.vision (no weight budget).
    Archive,
    /// A live WebSocket stream (gaps filled over REST where Binance keeps history).
    WebSocket,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Rest => "rest",
            Origin::Archive => "archive",
            Origin::WebSocket => "websocket",
        }
    }
}

/// History types (`api_*`): a finished range, loaded from the archive and the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryType {
    /// Klines, `/api/v3/klines`, archive `klines/<SYM>/<iv>`.
    Candles(Interval),
    /// Aggregate trades, `/api/v3/aggTrades`, archive `aggTrades/<SYM>`.
    AggTrades,
    /// Raw trades, `/api/v3/historicalTrades`, archive `trades/<SYM>`.
    Trades,
    /// Futures mark, index or premium-index candles, archive `<series>/<SYM>/<iv>`.
    PriceCandles(PriceSeries, Interval),
    /// Futures funding rates, `fundingRate`.
    FundingRate,
    /// Futures open interest or long/short ratios per period, `/futures/data/…` (last 30 days;
    /// open interest from the archive's `metrics` files before that).
    FuturesData(FuturesSeries, Interval),
}

impl HistoryType {
    pub fn record_kind(self) -> RecordKind {
        match self {
            HistoryType::Candles(iv) => RecordKind::Candles(iv),
            HistoryType::PriceCandles(s, iv) => RecordKind::PriceCandles(s, iv),
            HistoryType::AggTrades => RecordKind::AggTrades,
            HistoryType::Trades => RecordKind::Trades,
            HistoryType::FundingRate => RecordKind::FundingRate,
            HistoryType::FuturesData(s, p) => RecordKind::FuturesData(s, p),
        }
    }
}

/// The live (WebSocket) data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LiveType {
    /// Raw trades, `@trade`.
    Trades,
    /// Aggregate trades, `@aggTrade`.
    AggTrades,
    /// Candles, `@kline_<interval>`.
    Candles(Interval),
    /// Diff depth, `@depth@100ms`.
    Depth,
    /// A local order book kept in sync from a REST snapshot plus diffs.
    OrderBook,
    /// Best bid and ask, `@bookTicker`.
    BookTicker,
    /// Futures mark and index price with the funding rate, `@markPrice@1s`.
    MarkPrice,
    /// Futures liquidation orders, `@forceOrder`.
    Liquidations,
}

impl LiveType {
    /// Whether the stream pushes only when something happens, so that a range without a single
    /// event is normal: `@forceOrder` sends a liquidation when one occurs, at most one a second
    /// per symbol (derivatives docs, "Liquidation Order Streams"). The other streams push on a
    /// clock or on every book change.
    pub fn may_stay_silent(self) -> bool {
        matches!(self, LiveType::Liquidations)
    }

    /// The interval of a candle stream.
    pub fn candle_interval(self) -> Option<Interval> {
        match self {
            LiveType::Candles(iv) => Some(iv),
            _ => None,
        }
    }

    pub fn record_kind(self) -> RecordKind {
        match self {
            LiveType::Trades => RecordKind::Trades,
            LiveType::AggTrades => RecordKind::AggTrades,
            LiveType::Candles(iv) => RecordKind::Candles(iv),
            LiveType::Depth => RecordKind::DepthUpdates,
            LiveType::OrderBook => RecordKind::OrderBook,
            LiveType::BookTicker => RecordKind::BookTicker,
            LiveType::MarkPrice => RecordKind::MarkPrice,
            LiveType::Liquidations => RecordKind::Liquidations,
        }
    }
}

/// What a job loads: a parsed `TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    History(HistoryType),
    Live(LiveType),
}

/// How `verify` checks a kind of record for completeness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// One record per open time of the interval: missing open times are gaps.
    TimeGrid(Interval),
    /// Contiguous ids: a missing id is a gap.
    Ids,
    /// Diff-depth events whose update-id spans must chain.
    UpdateSpans,
    /// Samples (snapshots, tickers): only duplicates can be wrong.
    Samples,
    /// Events at times the exchange lists (funding settlements): no grid to check offline, so
    /// `verify` compares them with the exchange's own list when it can ask.
    Listed,
    /// Records a venue identifies without an order (trades with UUIDs), keyed by
    /// [`time_rank`]: checked like [`Listed`](Self::Listed), against the venue's own list of
    /// the range (its archive's files).
    Ranked,
}

/// The ordinal of records ordered by time alone: the millisecond and the record's place among
/// that millisecond's records in the venue's order, `time × 10⁶ + rank`. Keys stay integers,
/// sort in time order and name one record, so resume and `verify` treat these kinds as
/// exactly as ids (a venue puts far fewer than a million trades in one millisecond).
pub mod time_rank {
    /// Ranks per millisecond.
    pub const PER_MS: i64 = 1_000_000;

    /// The ordinal of the `rank`-th record (from 0) at `time_ms`; `None` past a million, or
    /// for a time no ordinal holds (before 1970, or past the year 294,000).
    pub fn ordinal(time_ms: i64, rank: u32) -> Option<i64> {
        if i64::from(rank) >= PER_MS || time_ms < 0 {
            return None;
        }
        time_ms.checked_mul(PER_MS)?.checked_add(i64::from(rank))
    }

    /// The time (ms) an ordinal names.
    pub fn time(ordinal: i64) -> i64 {
        ordinal.div_euclid(PER_MS)
    }

    /// The rank an ordinal names.
    pub fn rank(ordinal: i64) -> i64 {
        ordinal.rem_euclid(PER_MS)
    }
}

/// A kind of record, as it appears in a topic: its `_key` is `<SYMBOL>_<tag>_<ordinal>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// `_key` = `SYMBOL_<interval>_<open time>`.
    Candles(Interval),
    /// `_key` = `SYMBOL_agg_<aggregate id>`.
    AggTrades,
    /// `_key` = `SYMBOL_trade_<trade id>`.
    Trades,
    /// `_key` = `SYMBOL_depth_<final update id>`.
    DepthUpdates,
    /// `_key` = `SYMBOL_book_<last update id>`.
    OrderBook,
    /// `_key` = `SYMBOL_bookticker_<update id>`.
    BookTicker,
    /// `_key` = `SYMBOL_<mark|index|premium>_<interval>_<open time>`.
    PriceCandles(PriceSeries, Interval),
    /// `_key` = `SYMBOL_funding_<funding time>`.
    FundingRate,
    /// `_key` = `SYMBOL_<open_interest|global_ratio|top_account_ratio|top_position_ratio>_<period>_<time>`.
    FuturesData(FuturesSeries, Interval),
    /// `_key` = `SYMBOL_markprice_<event time>`.
    MarkPrice,
    /// `_key` = `SYMBOL_liquidation_<trade time>`.
    Liquidations,
}

/// The `_key` tag of a price series' candles.
pub fn price_series_tag(s: PriceSeries) -> &'static str {
    match s {
        PriceSeries::Mark => "mark",
        PriceSeries::Index => "index",
        PriceSeries::Premium => "premium",
    }
}

/// The `_key` tag of a `/futures/data/` series.
pub fn futures_series_tag(s: FuturesSeries) -> &'static str {
    match s {
        FuturesSeries::OpenInterest => tag::OPEN_INTEREST,
        FuturesSeries::GlobalAccountRatio => tag::GLOBAL_RATIO,
        FuturesSeries::TopAccountRatio => tag::TOP_ACCOUNT_RATIO,
        FuturesSeries::TopPositionRatio => tag::TOP_POSITION_RATIO,
    }
}

/// The kinds whose `_key` tag is fixed (names no interval or series): what
/// [`RecordKind::from_key`] tries first (a unit test finds every registered kind by its key).
const FIXED_TAG_KINDS: [RecordKind; 8] = [
    RecordKind::AggTrades,
    RecordKind::Trades,
    RecordKind::DepthUpdates,
    RecordKind::OrderBook,
    RecordKind::BookTicker,
    RecordKind::FundingRate,
    RecordKind::MarkPrice,
    RecordKind::Liquidations,
];

impl RecordKind {
    /// The tag between symbol and ordinal in `_key`.
    pub fn key_tag(self) -> String {
        match self {
            RecordKind::Candles(iv) => iv.as_str().into(),
            RecordKind::PriceCandles(s, iv) => format!("{}_{iv}", price_series_tag(s)),
            RecordKind::FuturesData(s, p) => format!("{}_{p}", futures_series_tag(s)),
            fixed => fixed.fixed_tag().unwrap_or_default().into(),
        }
    }

    /// The `_key` tag of the kinds whose tag names no interval ([`FIXED_TAG_KINDS`]).
    fn fixed_tag(self) -> Option<&'static str> {
        Some(match self {
            RecordKind::AggTrades => tag::AGG_TRADE,
            RecordKind::Trades => tag::TRADE,
            RecordKind::DepthUpdates => tag::DEPTH_UPDATE,
            RecordKind::OrderBook => tag::ORDER_BOOK,
            RecordKind::BookTicker => tag::BOOK_TICKER,
            RecordKind::FundingRate => tag::FUNDING_RATE,
            RecordKind::MarkPrice => tag::MARK_PRICE,
            RecordKind::Liquidations => tag::LIQUIDATION,
            RecordKind::Candles(_) | RecordKind::PriceCandles(..) | RecordKind::FuturesData(..) => {
                return None
            }
        })
    }

    /// The name `verify` reports.
    pub fn name(self) -> String {
        match self {
            RecordKind::Candles(iv) => format!("candles_{iv}"),
            RecordKind::AggTrades => "agg_trades".into(),
            RecordKind::Trades => "trades".into(),
            RecordKind::DepthUpdates => "depth".into(),
            RecordKind::OrderBook => "order_book".into(),
            RecordKind::BookTicker => "book_ticker".into(),
            RecordKind::PriceCandles(s, iv) => {
                format!("{}_price_candles_{iv}", price_series_tag(s))
            }
            RecordKind::FundingRate => "funding_rates".into(),
            RecordKind::FuturesData(s, p) => format!("{}_{p}", futures_series_tag(s)),
            RecordKind::MarkPrice => "mark_price".into(),
            RecordKind::Liquidations => "liquidations".into(),
        }
    }

    pub fn sequence(self) -> Sequence {
        match self {
            RecordKind::Candles(iv)
            | RecordKind::PriceCandles(_, iv)
            | RecordKind::FuturesData(_, iv) => Sequence::TimeGrid(iv),
            RecordKind::AggTrades | RecordKind::Trades => Sequence::Ids,
            RecordKind::DepthUpdates => Sequence::UpdateSpans,
            // Funding times are not an exact grid (Binance's carry a few ms, and the funding
            // interval of a symbol can change): the exchange's list is the reference.
            RecordKind::FundingRate => Sequence::Listed,
            RecordKind::OrderBook
            | RecordKind::BookTicker
            | RecordKind::MarkPrice
            | RecordKind::Liquidations => Sequence::Samples,
        }
    }

    /// How `venue`'s records of this kind are ordered and checked: [`sequence`](Self::sequence),
    /// except trades of a venue whose trade ids count nothing ([`Sequence::Ranked`]).
    pub fn sequence_at(self, venue: Venue) -> Sequence {
        match self {
            RecordKind::Trades if !venue.numbers_trades() => Sequence::Ranked,
            kind => kind.sequence(),
        }
    }

    /// Whether `venue`'s records of this kind are keyed by time and rank
    /// ([`time_rank`]): trades of a venue whose trade ids count nothing, liquidations of a
    /// venue that may push two of a symbol's in one millisecond.
    pub fn time_ranked_at(self, venue: Venue) -> bool {
        match self {
            RecordKind::Trades => !venue.numbers_trades(),
            RecordKind::Liquidations => !venue.one_liquidation_a_second(),
            _ => false,
        }
    }

    /// The history type whose source can say what exists in a gap of these records.
    pub fn history(self) -> Option<HistoryType> {
        match self {
            RecordKind::Candles(iv) => Some(HistoryType::Candles(iv)),
            RecordKind::AggTrades => Some(HistoryType::AggTrades),
            RecordKind::Trades => Some(HistoryType::Trades),
            RecordKind::PriceCandles(s, iv) => Some(HistoryType::PriceCandles(s, iv)),
            RecordKind::FundingRate => Some(HistoryType::FundingRate),
            RecordKind::FuturesData(s, p) => Some(HistoryType::FuturesData(s, p)),
            _ => None,
        }
    }

    /// [`from_key`](Self::from_key) for a record of `venue`'s `market` and `symbol`, without building
    /// the stem (verify and resume call it for every record they read).
    pub fn from_market_key(
        venue: Venue,
        market: Market,
        symbol: &str,
        key: &str,
    ) -> Option<(RecordKind, i64)> {
        Self::from_key(symbol, key.strip_prefix(venue.key_prefix(market))?)
    }

    /// The kind and ordinal a record's `_key` names, given what keys of its market and symbol
    /// start with (`[<market prefix>]<SYMBOL>`, see [`Market::key_prefix`]).
    pub fn from_key(stem: &str, key: &str) -> Option<(RecordKind, i64)> {
        let rest = key.strip_prefix(stem)?.strip_prefix('_')?;
        let (tag, ordinal) = rest.rsplit_once('_')?;
        let ordinal: i64 = ordinal.parse().ok()?;
        let kind = match FIXED_TAG_KINDS
            .into_iter()
            .find(|k| k.fixed_tag() == Some(tag))
        {
            Some(kind) => kind,
            None => match tag.rsplit_once('_') {
                Some((series, iv)) => {
                    let iv: Interval = iv.parse().ok()?;
                    if let Some(s) = PriceSeries::ALL
                        .into_iter()
                        .find(|&s| price_series_tag(s) == series)
                    {
                        RecordKind::PriceCandles(s, iv)
                    } else {
                        let s = FuturesSeries::ALL
                            .into_iter()
                            .find(|&s| futures_series_tag(s) == series)?;
                        RecordKind::FuturesData(s, iv)
                    }
                }
                None => RecordKind::Candles(tag.parse().ok()?),
            },
        };
        Some((kind, ordinal))
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

const ALL_MARKETS: &[Market] = &Market::ALL;
const FUTURES: &[Market] = &[Market::UsdM, Market::CoinM];

/// What the interval of a type that takes one may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalRule {
    /// Any kline interval (`1s` on spot only).
    Candles,
    /// The statistics periods of `/futures/data/`: 5m 15m 30m 1h 2h 4h 6h 12h 1d.
    Periods,
}

const PERIODS: &str = "5m 15m 30m 1h 2h 4h 6h 12h 1d";

/// One family of `TYPE` names.
pub struct TypeEntry {
    /// The canonical name; with `takes_interval`, `<name>_<interval>` or `<name>` + INTERVAL.
    pub name: &'static str,
    /// Other spellings accepted (case-insensitive, like the name).
    pub aliases: &'static [&'static str],
    pub takes_interval: bool,
    pub interval_rule: IntervalRule,
    /// The markets that offer it.
    pub markets: &'static [Market],
    /// What it loads, for `--help` and error messages.
    pub what: &'static str,
    /// Where its records come from, in order of preference.
    pub origins: &'static [Origin],
    build: fn(Option<Interval>) -> DataType,
}

/// Every data type the loader knows.
pub static TYPES: &[TypeEntry] = &[
    TypeEntry {
        name: "api_candles",
        aliases: &[],
        takes_interval: true,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "candles (klines) of a range",
        origins: &[Origin::Archive, Origin::Rest],
        build: |iv| DataType::History(HistoryType::Candles(iv.expect("interval"))),
    },
    TypeEntry {
        name: "api_trades",
        aliases: &["api_aggtrades", "api_agg_trades"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "aggregate trades of a range",
        origins: &[Origin::Archive, Origin::Rest],
        build: |_| DataType::History(HistoryType::AggTrades),
    },
    TypeEntry {
        name: "api_raw_trades",
        aliases: &["api_rawtrades", "api_historical_trades"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "raw (individual) trades of a range",
        origins: &[Origin::Archive, Origin::Rest],
        build: |_| DataType::History(HistoryType::Trades),
    },
    TypeEntry {
        name: "api_mark_price_candles",
        aliases: &["api_mark_candles", "api_markprice_candles", "api_mark_price_klines"],
        takes_interval: true,
        interval_rule: IntervalRule::Candles,
        markets: FUTURES,
        what: "mark-price candles of a range (futures)",
        origins: &[Origin::Archive, Origin::Rest],
        build: |iv| DataType::History(HistoryType::PriceCandles(PriceSeries::Mark, iv.expect("interval"))),
    },
    TypeEntry {
        name: "api_index_price_candles",
        aliases: &["api_index_candles", "api_indexprice_candles", "api_index_price_klines"],
        takes_interval: true,
        interval_rule: IntervalRule::Candles,
        markets: FUTURES,
        what: "index-price candles of a range (futures; asked by pair)",
        origins: &[Origin::Archive, Origin::Rest],
        build: |iv| DataType::History(HistoryType::PriceCandles(PriceSeries::Index, iv.expect("interval"))),
    },
    TypeEntry {
        name: "api_premium_index_candles",
        aliases: &["api_premium_candles", "api_premiumindex_candles", "api_premium_index_klines"],
        takes_interval: true,
        interval_rule: IntervalRule::Candles,
        markets: FUTURES,
        what: "premium-index candles of a range (futures)",
        origins: &[Origin::Archive, Origin::Rest],
        build: |iv| DataType::History(HistoryType::PriceCandles(PriceSeries::Premium, iv.expect("interval"))),
    },
    TypeEntry {
        name: "api_funding_rate",
        aliases: &["api_funding_rates", "api_funding", "api_funding_rate_history"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: FUTURES,
        what: "funding rates of a range (futures perpetuals)",
        origins: &[Origin::Rest],
        build: |_| DataType::History(HistoryType::FundingRate),
    },
    TypeEntry {
        name: "api_open_interest",
        aliases: &["api_oi", "api_open_interest_hist"],
        takes_interval: true,
        interval_rule: IntervalRule::Periods,
        markets: FUTURES,
        what: "open interest per period (futures; REST keeps 30 days, older from the archive's metrics files)",
        origins: &[Origin::Archive, Origin::Rest],
        build: |iv| DataType::History(HistoryType::FuturesData(FuturesSeries::OpenInterest, iv.expect("period"))),
    },
    TypeEntry {
        name: "api_long_short_ratio",
        aliases: &["api_global_long_short_ratio", "api_global_long_short_account_ratio"],
        takes_interval: true,
        interval_rule: IntervalRule::Periods,
        markets: FUTURES,
        what: "long/short ratio of all accounts per period (futures; last 30 days only)",
        origins: &[Origin::Rest],
        build: |iv| DataType::History(HistoryType::FuturesData(FuturesSeries::GlobalAccountRatio, iv.expect("period"))),
    },
    TypeEntry {
        name: "api_top_long_short_account_ratio",
        aliases: &["api_top_account_ratio"],
        takes_interval: true,
        interval_rule: IntervalRule::Periods,
        markets: FUTURES,
        what: "long/short ratio of the top traders' accounts per period (futures; last 30 days only)",
        origins: &[Origin::Rest],
        build: |iv| DataType::History(HistoryType::FuturesData(FuturesSeries::TopAccountRatio, iv.expect("period"))),
    },
    TypeEntry {
        name: "api_top_long_short_position_ratio",
        aliases: &["api_top_position_ratio"],
        takes_interval: true,
        interval_rule: IntervalRule::Periods,
        markets: FUTURES,
        what: "long/short ratio of the top traders' positions per period (futures; last 30 days only)",
        origins: &[Origin::Rest],
        build: |iv| DataType::History(HistoryType::FuturesData(FuturesSeries::TopPositionRatio, iv.expect("period"))),
    },
    TypeEntry {
        name: "ws_trades",
        aliases: &["ws_raw_trades"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        // Futures streams have no raw trades, only aggregate ones.
        markets: &[Market::Spot],
        what: "live raw trades",
        origins: &[Origin::WebSocket, Origin::Rest],
        build: |_| DataType::Live(LiveType::Trades),
    },
    TypeEntry {
        name: "ws_aggtrades",
        aliases: &["ws_agg_trades"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "live aggregate trades",
        origins: &[Origin::WebSocket, Origin::Rest],
        build: |_| DataType::Live(LiveType::AggTrades),
    },
    TypeEntry {
        name: "ws_candles",
        aliases: &[],
        takes_interval: true,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "live closed candles",
        origins: &[Origin::WebSocket, Origin::Rest],
        build: |iv| DataType::Live(LiveType::Candles(iv.expect("interval"))),
    },
    TypeEntry {
        name: "ws_depth",
        aliases: &[],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "live diff-depth events",
        origins: &[Origin::WebSocket],
        build: |_| DataType::Live(LiveType::Depth),
    },
    TypeEntry {
        name: "ws_orderbook",
        aliases: &["ws_order_book"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "live order-book snapshots",
        origins: &[Origin::WebSocket, Origin::Rest],
        build: |_| DataType::Live(LiveType::OrderBook),
    },
    TypeEntry {
        name: "ws_bookticker",
        aliases: &["ws_book_ticker"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: ALL_MARKETS,
        what: "live best bid and ask",
        origins: &[Origin::WebSocket],
        build: |_| DataType::Live(LiveType::BookTicker),
    },
    TypeEntry {
        name: "ws_mark_price",
        aliases: &["ws_markprice", "ws_mark_prices"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: FUTURES,
        what: "live mark and index price with the funding rate, every second (futures)",
        origins: &[Origin::WebSocket],
        build: |_| DataType::Live(LiveType::MarkPrice),
    },
    TypeEntry {
        name: "ws_liquidations",
        aliases: &["ws_force_orders", "ws_forceorder", "ws_force_order", "ws_liquidation"],
        takes_interval: false,
        interval_rule: IntervalRule::Candles,
        markets: FUTURES,
        what: "live liquidation orders of the derivatives markets (Binance: the latest per \
               symbol each second)",
        origins: &[Origin::WebSocket],
        build: |_| DataType::Live(LiveType::Liquidations),
    },
];

const INTERVALS: &str = "1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M";

/// The valid `TYPE` forms, for help and errors.
pub fn valid_types() -> String {
    let mut names: Vec<String> = TYPES
        .iter()
        .map(|t| {
            if t.takes_interval {
                format!("{0}_<interval> (or {0} with INTERVAL)", t.name)
            } else {
                t.name.to_string()
            }
        })
        .collect();
    names.push(format!("intervals: {INTERVALS}"));
    names.push(format!("periods (open interest, ratios): {PERIODS}"));
    names.join(", ")
}

fn parse_interval(iv: &str, var: &str) -> Result<Interval, String> {
    iv.parse::<Interval>().map_err(|_| {
        format!("{var} {iv:?} is not a Binance interval; expected one of: {INTERVALS}")
    })
}

impl IntervalRule {
    fn parse(self, iv: &str, var: &str) -> Result<Interval, String> {
        match self {
            IntervalRule::Candles => parse_interval(iv, var),
            IntervalRule::Periods => match iv.parse::<Interval>() {
                Ok(p) if PERIODS.split(' ').any(|x| x == p.as_str()) => Ok(p),
                _ => Err(format!(
                    "{var} {iv:?} is not a statistics period; expected one of: {PERIODS}"
                )),
            },
        }
    }
}

impl DataType {
    /// Parses `TYPE` (and `INTERVAL` for the types that take one). Names are case-insensitive;
    /// intervals are not (`1m` is a minute, `1M` a month).
    pub fn parse(type_value: &str, interval: Option<&str>) -> Result<DataType, String> {
        let t = type_value.trim();
        let interval = interval.map(str::trim).filter(|s| !s.is_empty());
        let mut bad_interval = None;
        for entry in TYPES {
            for name in std::iter::once(&entry.name).chain(entry.aliases) {
                if t.eq_ignore_ascii_case(name) {
                    if !entry.takes_interval {
                        if let Some(iv) = interval {
                            return Err(format!(
                                "TYPE {t} takes no interval but INTERVAL is {iv:?}: unset INTERVAL or use a candle type"
                            ));
                        }
                        return Ok((entry.build)(None));
                    }
                    return match interval {
                        Some(iv) => Ok((entry.build)(Some(entry.interval_rule.parse(iv, "INTERVAL")?))),
                        None => Err(format!(
                            "TYPE {t} needs INTERVAL (e.g. INTERVAL=1m), or name the interval in TYPE: {}_1m",
                            entry.name
                        )),
                    };
                }
                if !entry.takes_interval || t.len() <= name.len() + 1 {
                    continue;
                }
                // `get`, not `split_at`: a non-ASCII TYPE may have no character boundary there.
                let (Some(head), Some(suffix)) = (t.get(..name.len()), t.get(name.len()..)) else {
                    continue;
                };
                if head.eq_ignore_ascii_case(name) && suffix.starts_with('_') {
                    let iv = &suffix[1..];
                    // `api_open_interest_hist_1h` starts like `api_open_interest`: a longer
                    // name may still match, so a bad interval is only the answer if none does.
                    let parsed = match entry.interval_rule.parse(iv, "the interval in TYPE") {
                        Ok(p) => p,
                        Err(e) => {
                            bad_interval.get_or_insert(e);
                            continue;
                        }
                    };
                    if let Some(other) = interval {
                        if other.parse::<Interval>().ok() != Some(parsed) {
                            return Err(format!(
                                "TYPE {t:?} names interval {iv} but INTERVAL is {other:?}: give one or make them agree"
                            ));
                        }
                    }
                    return Ok((entry.build)(Some(parsed)));
                }
            }
        }
        Err(bad_interval.unwrap_or_else(|| {
            format!(
                "TYPE {t:?} is not a known data type; valid forms: {}",
                valid_types()
            )
        }))
    }

    /// The registry entry of this type.
    pub fn entry(&self) -> &'static TypeEntry {
        TYPES
            .iter()
            .find(|e| {
                let iv = self.interval();
                (e.takes_interval == iv.is_some()) && (e.build)(iv) == *self
            })
            .expect("every DataType has a registry entry")
    }

    pub fn interval(&self) -> Option<Interval> {
        match self {
            DataType::History(HistoryType::Candles(iv))
            | DataType::History(HistoryType::PriceCandles(_, iv))
            | DataType::History(HistoryType::FuturesData(_, iv))
            | DataType::Live(LiveType::Candles(iv)) => Some(*iv),
            _ => None,
        }
    }

    /// The markets that offer this type (futures have no `1s` candles).
    pub fn markets(&self) -> &'static [Market] {
        let markets = self.entry().markets;
        match self.interval() {
            Some(Interval::S1) if markets.contains(&Market::Spot) => &[Market::Spot],
            Some(Interval::S1) => &[],
            _ => markets,
        }
    }

    /// The canonical TYPE name.
    pub fn name(&self) -> String {
        let entry = self.entry();
        match self.interval() {
            Some(iv) => format!("{}_{iv}", entry.name),
            None => entry.name.to_string(),
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self, DataType::Live(_))
    }

    pub fn record_kind(&self) -> RecordKind {
        match self {
            DataType::History(h) => h.record_kind(),
            DataType::Live(l) => l.record_kind(),
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any TYPE, ASCII or not, is parsed or refused with a message naming it; none panics.
    #[test]
    fn non_ascii_types_are_refused_not_panicked_on() {
        for t in [
            "ws_trädes",
            "api_candlés_1m",
            "ws_candles_1ü",
            "ü",
            "api_candles_1m\u{0301}",
            "日本語_1m",
        ] {
            let err = DataType::parse(t, None).expect_err(t);
            assert!(err.contains("TYPE"), "{t}: {err}");
        }
    }

    #[test]
    fn every_entry_round_trips_through_its_name() {
        for entry in TYPES {
            let iv = entry.takes_interval.then_some(Interval::H1);
            let t = (entry.build)(iv);
            assert_eq!(t.entry().name, entry.name);
            assert_eq!(DataType::parse(&t.name(), None).unwrap(), t);
            for alias in entry.aliases {
                let name = match iv {
                    Some(iv) => format!("{alias}_{iv}"),
                    None => alias.to_string(),
                };
                assert_eq!(DataType::parse(&name, None).unwrap(), t, "{name}");
            }
        }
    }

    #[test]
    fn every_registered_kind_is_found_by_its_key() {
        for entry in TYPES {
            let iv = entry.takes_interval.then_some(Interval::H1);
            let kind = (entry.build)(iv).record_kind();
            if kind.fixed_tag().is_some() {
                assert!(
                    FIXED_TAG_KINDS.contains(&kind),
                    "{kind} is not in FIXED_TAG_KINDS"
                );
            }
            let key = format!("BTCUSDT_{}_9", kind.key_tag());
            assert_eq!(
                RecordKind::from_key("BTCUSDT", &key),
                Some((kind, 9)),
                "{key}"
            );
        }
    }

    #[test]
    fn types_and_intervals() {
        let p = |t: &str, iv: Option<&str>| DataType::parse(t, iv);
        assert_eq!(p("api_candles_1m", None).unwrap().name(), "api_candles_1m");
        assert_eq!(p("api_candles_1M", None).unwrap().name(), "api_candles_1M");
        assert_eq!(p("API_Candles_4h", None).unwrap().name(), "api_candles_4h");
        assert_eq!(
            p("api_candles", Some("4h")).unwrap().name(),
            "api_candles_4h"
        );
        assert_eq!(
            p("api_trades", None).unwrap(),
            DataType::History(HistoryType::AggTrades)
        );
        assert_eq!(
            p("api_raw_trades", None).unwrap(),
            DataType::History(HistoryType::Trades)
        );
        assert!(p("api_candles", None).unwrap_err().contains("INTERVAL"));
        assert_eq!(p("ws_candles", Some("1m")).unwrap().name(), "ws_candles_1m");
        for live in [
            "ws_trades",
            "ws_aggtrades",
            "ws_candles_1h",
            "ws_depth",
            "ws_orderbook",
            "ws_bookticker",
        ] {
            let t = p(live, None).unwrap();
            assert!(t.is_live());
            assert_eq!(t.name(), live);
        }
        assert!(p("api_candles_7m", None).unwrap_err().contains("1s 1m"));
        let e = p("candles", None).unwrap_err();
        assert!(
            e.contains("TYPE") && e.contains("api_trades") && e.contains("api_raw_trades"),
            "{e}"
        );
        assert!(p("api_candles_1m", Some("1h"))
            .unwrap_err()
            .contains("INTERVAL"));
        assert!(p("api_trades", Some("1h"))
            .unwrap_err()
            .contains("INTERVAL"));
        assert_eq!(
            p("api_open_interest_hist_5m", None).unwrap(),
            DataType::History(HistoryType::FuturesData(
                FuturesSeries::OpenInterest,
                Interval::M5
            ))
        );
        assert!(p("api_open_interest_1m", None)
            .unwrap_err()
            .contains("5m 15m"));
        assert!(p("api_long_short_ratio", Some("3m"))
            .unwrap_err()
            .contains("period"));
        assert_eq!(
            p("API_Mark_Price_Candles", Some("1M")).unwrap().name(),
            "api_mark_price_candles_1M"
        );
        assert_eq!(
            p("ws_force_orders", None).unwrap().name(),
            "ws_liquidations"
        );
        let futures_only = p("api_funding_rate", None).unwrap();
        assert_eq!(futures_only.markets(), [Market::UsdM, Market::CoinM]);
        assert_eq!(p("api_candles_1s", None).unwrap().markets(), [Market::Spot]);
        assert!(p("api_mark_price_candles_1s", None)
            .unwrap()
            .markets()
            .is_empty());
    }

    #[test]
    fn keys_name_their_kind() {
        assert_eq!(
            RecordKind::from_key("BTCUSDT", "BTCUSDT_1M_1704067200000"),
            Some((RecordKind::Candles(Interval::Mo1), 1_704_067_200_000))
        );
        assert_eq!(
            RecordKind::from_key("BTC_X", "BTC_X_agg_42"),
            Some((RecordKind::AggTrades, 42))
        );
        assert_eq!(RecordKind::from_key("BTCUSDT", "ETHUSDT_agg_1"), None);
        assert_eq!(RecordKind::from_key("BTCUSDT", "BTCUSDT_7m_1"), None);
        assert_eq!(
            RecordKind::from_key(
                "usdm_BTCUSDT",
                "usdm_BTCUSDT_open_interest_5m_1704067200000"
            ),
            Some((
                RecordKind::FuturesData(FuturesSeries::OpenInterest, Interval::M5),
                1_704_067_200_000
            ))
        );
        assert_eq!(
            RecordKind::from_key("coinm_BTCUSD_PERP", "coinm_BTCUSD_PERP_mark_1M_1"),
            Some((
                RecordKind::PriceCandles(PriceSeries::Mark, Interval::Mo1),
                1
            ))
        );
        // A spot key is not a futures key of the same symbol, nor the other way round.
        assert_eq!(RecordKind::from_key("usdm_BTCUSDT", "BTCUSDT_1m_1"), None);
        assert_eq!(RecordKind::from_key("BTCUSDT", "usdm_BTCUSDT_1m_1"), None);
        assert_eq!(
            RecordKind::from_market_key(
                Venue::Binance,
                Market::UsdM,
                "BTCUSDT",
                "usdm_BTCUSDT_1m_1"
            ),
            Some((RecordKind::Candles(Interval::M1), 1))
        );
        assert_eq!(
            RecordKind::from_market_key(
                Venue::Binance,
                Market::CoinM,
                "BTCUSDT",
                "usdm_BTCUSDT_1m_1"
            ),
            None
        );
        for kind in FIXED_TAG_KINDS.into_iter().chain([
            RecordKind::PriceCandles(PriceSeries::Premium, Interval::H1),
            RecordKind::PriceCandles(PriceSeries::Index, Interval::S1),
            RecordKind::FuturesData(FuturesSeries::TopPositionRatio, Interval::D1),
            RecordKind::FuturesData(FuturesSeries::GlobalAccountRatio, Interval::M15),
        ]) {
            let key = format!("ETHBTC_{}_7", kind.key_tag());
            assert_eq!(RecordKind::from_key("ETHBTC", &key), Some((kind, 7)));
        }
    }

    #[test]
    fn time_ranks_are_keys_in_time_order_and_refuse_what_no_key_holds() {
        use super::time_rank;
        let o = time_rank::ordinal(1_755_648_000_138, 2).unwrap();
        assert_eq!(o, 1_755_648_000_138_000_002);
        assert_eq!(
            (time_rank::time(o), time_rank::rank(o)),
            (1_755_648_000_138, 2)
        );
        assert!(time_rank::ordinal(1_755_648_000_138, 0).unwrap() < o);
        assert_eq!(
            time_rank::ordinal(1_755_648_000_138_000, 0),
            None,
            "µs are no ms"
        );
        assert_eq!(time_rank::ordinal(-1, 0), None);
        assert_eq!(time_rank::ordinal(0, 1_000_000), None);
    }
}
