//! The typed market-data API on top of [`RestClient`](super::rest::RestClient): one method per
//! question the loader asks Binance (a page of klines, aggregate trades from an id, the first
//! aggregate trade at a time, …), each sending its [`Endpoint`] with Binance's parameters and
//! turning failures into the loader's errors. Pages keep the response body and parse it into
//! rows that borrow from it, so a page of records costs one allocation, not one per field.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::Deserialize;

use super::endpoint::Endpoint;
use super::{exchange_error, Exchange, Interval};
use crate::error::{LoaderError, Result};
use crate::market::Market;
use crate::record::{RawAggTrade, RawKline, RawTrade};
use crate::registry::{FuturesSeries, PriceSeries};

/// Binance refuses `startTime`/`endTime` windows on aggTrades of an hour or more.
const AGG_WINDOW_MS: i64 = 3_600_000;

/// Hourly candles per request when looking for the next trade through klines: a page of 1,000
/// weighs 5 on the futures markets (see [`Endpoint::weight`](super::endpoint)).
const LOCATE_KLINES_PAGE: u32 = 1000;

/// What klines said about the next trade.
enum Located {
    Found(AggTradeRef),
    /// No candle up to now counts a trade.
    NoneYet,
    /// A candle counts trades that `aggTrades` does not show.
    Disagree,
}

/// What a page holds: the row type it parses into and how to name it in errors.
pub trait RowKind {
    type Row<'a>: Deserialize<'a> + Send;
    const WHAT: &'static str;

    /// The rows of a page the flat way (`flat_json`), where the kind has one: `None` leaves the
    /// page to serde_json.
    fn flat_rows(_text: &str) -> Option<Vec<Self::Row<'_>>> {
        None
    }
}

/// Kline rows (`/api/v3/klines`).
pub struct Klines;
impl RowKind for Klines {
    type Row<'a> = RawKline<'a>;
    const WHAT: &'static str = "klines";
}

/// Aggregate-trade rows (`/api/v3/aggTrades`).
pub struct AggTrades;
impl RowKind for AggTrades {
    type Row<'a> = RawAggTrade<'a>;
    const WHAT: &'static str = "aggregate trades";

    fn flat_rows(text: &str) -> Option<Vec<RawAggTrade<'_>>> {
        crate::flat_json::array(text, |at| RawAggTrade::from_flat_at(text, at))
    }
}

/// Raw-trade rows (`/api/v3/historicalTrades`).
pub struct Trades;
impl RowKind for Trades {
    type Row<'a> = RawTrade<'a>;
    const WHAT: &'static str = "trades";
}

/// Funding-rate rows (`fundingRate`).
pub struct FundingRates;
impl RowKind for FundingRates {
    type Row<'a> = RawFundingRate<'a>;
    const WHAT: &'static str = "funding rates";
}

/// A `fundingRate` row (USDⓈ-M adds the mark price).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFundingRate<'a> {
    pub funding_time: i64,
    pub funding_rate: &'a str,
    #[serde(default)]
    pub mark_price: Option<&'a str>,
}

/// `/futures/data/` rows: open interest or a long/short ratio.
pub struct FuturesData;
impl RowKind for FuturesData {
    type Row<'a> = RawFuturesData<'a>;
    const WHAT: &'static str = "futures statistics";
}

/// A `/futures/data/` row. Open interest fills the first two, ratios the others; the long and
/// short shares are `longAccount`/`shortAccount`, or `longPosition`/`shortPosition` in COIN-M's
/// position ratio. Binance has sent `timestamp` both as a number and as a string.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFuturesData<'a> {
    #[serde(default, borrow)]
    pub sum_open_interest: Option<&'a str>,
    #[serde(default, borrow)]
    pub sum_open_interest_value: Option<&'a str>,
    #[serde(default, borrow)]
    pub long_short_ratio: Option<&'a str>,
    #[serde(default, borrow, alias = "longPosition")]
    pub long_account: Option<&'a str>,
    #[serde(default, borrow, alias = "shortPosition")]
    pub short_account: Option<&'a str>,
    #[serde(deserialize_with = "int_or_string")]
    pub timestamp: i64,
}

fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString<'a> {
        Int(i64),
        Str(&'a str),
    }
    match IntOrString::deserialize(d)? {
        IntOrString::Int(i) => Ok(i),
        IntOrString::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// One response body of `K` rows.
pub struct Page<K: RowKind> {
    body: Bytes,
    _kind: PhantomData<fn() -> K>,
}

impl<K: RowKind> Page<K> {
    fn new(body: Bytes) -> Self {
        Page {
            body,
            _kind: PhantomData,
        }
    }

    /// The rows, borrowing their strings from the body.
    pub fn rows(&self) -> Result<Vec<K::Row<'_>>> {
        if let Some(rows) = std::str::from_utf8(&self.body)
            .ok()
            .and_then(|text| K::flat_rows(text))
        {
            return Ok(rows);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            LoaderError::Exchange(format!("Binance sent {} that do not parse: {e}", K::WHAT))
        })
    }
}

/// Where an aggregate trade sits: its id, the raw trade ids it covers and its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggTradeRef {
    pub id: u64,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub time: i64,
}

impl AggTradeRef {
    fn of(r: &RawAggTrade<'_>) -> Self {
        AggTradeRef {
            id: r.a,
            first_trade_id: r.f,
            last_trade_id: r.l,
            time: r.time,
        }
    }
}

/// An order-book snapshot (`/api/v3/depth`).
#[derive(Debug, Deserialize)]
pub struct DepthSnapshot {
    #[serde(rename = "lastUpdateId")]
    pub last_update_id: u64,
    pub bids: Vec<[String; 2]>,
    pub asks: Vec<[String; 2]>,
}

impl Exchange {
    pub fn market(&self) -> Market {
        self.client.market()
    }

    async fn call(
        &self,
        endpoint: Endpoint,
        symbol: &str,
        query: &[(&str, String)],
    ) -> Result<Bytes> {
        self.client
            .get(endpoint, query)
            .await
            .map_err(|e| exchange_error(e, self.market(), Some(symbol)))
    }

    /// Candles of `interval` with open time in `[start, end_inclusive]`, oldest first, at most
    /// `limit`.
    pub async fn klines(
        &self,
        symbol: &str,
        interval: Interval,
        start: i64,
        end_inclusive: i64,
        limit: u32,
    ) -> Result<Page<Klines>> {
        let query = [
            ("symbol", symbol.to_string()),
            ("interval", interval.as_str().to_string()),
            ("startTime", start.to_string()),
            ("endTime", end_inclusive.to_string()),
            ("limit", limit.to_string()),
        ];
        Ok(Page::new(
            self.call(Endpoint::Klines { limit }, symbol, &query)
                .await?,
        ))
    }

    /// Futures mark-, index- or premium-index candles, as [`klines`](Self::klines). Index
    /// candles are asked by pair (COIN-M: `BTCUSD_PERP` → `BTCUSD`).
    pub async fn price_klines(
        &self,
        series: PriceSeries,
        symbol: &str,
        interval: Interval,
        start: i64,
        end_inclusive: i64,
        limit: u32,
    ) -> Result<Page<Klines>> {
        let subject = if series.by_pair() {
            ("pair", self.market().pair_of(symbol).to_string())
        } else {
            ("symbol", symbol.to_string())
        };
        let query = [
            subject,
            ("interval", interval.as_str().to_string()),
            ("startTime", start.to_string()),
            ("endTime", end_inclusive.to_string()),
            ("limit", limit.to_string()),
        ];
        Ok(Page::new(
            self.call(Endpoint::PriceKlines { series, limit }, symbol, &query)
                .await?,
        ))
    }

    /// Funding settlements with time in `[start, end_inclusive]`, oldest first, at most `limit`.
    pub async fn funding_rates(
        &self,
        symbol: &str,
        start: i64,
        end_inclusive: i64,
        limit: u32,
    ) -> Result<Page<FundingRates>> {
        let query = [
            ("symbol", symbol.to_string()),
            ("startTime", start.to_string()),
            ("endTime", end_inclusive.to_string()),
            ("limit", limit.to_string()),
        ];
        Ok(Page::new(
            self.call(Endpoint::FundingRate, symbol, &query).await?,
        ))
    }

    /// `/futures/data/` rows of `period` with time in `[start, end_inclusive]`. USDⓈ-M asks by
    /// symbol, COIN-M by pair (and, for open interest, the perpetual contract type).
    pub async fn futures_data(
        &self,
        series: FuturesSeries,
        symbol: &str,
        period: Interval,
        start: i64,
        end_inclusive: i64,
        limit: u32,
    ) -> Result<Page<FuturesData>> {
        let mut query = Vec::with_capacity(6);
        match self.market() {
            Market::CoinM => {
                if let Some(e) = super::endpoint::coinm_series_symbol_error(series, symbol) {
                    return Err(LoaderError::config(e));
                }
                query.push(("pair", self.market().pair_of(symbol).to_string()));
                if series == FuturesSeries::OpenInterest {
                    query.push(("contractType", "PERPETUAL".to_string()));
                }
            }
            _ => query.push(("symbol", symbol.to_string())),
        }
        query.extend([
            ("period", period.as_str().to_string()),
            ("startTime", start.to_string()),
            ("endTime", end_inclusive.to_string()),
            ("limit", limit.to_string()),
        ]);
        Ok(Page::new(
            self.call(Endpoint::FuturesData(series), symbol, &query)
                .await?,
        ))
    }

    /// Aggregate trades with id `>= from_id`, at most `limit`.
    pub async fn agg_trades_from_id(
        &self,
        symbol: &str,
        from_id: u64,
        limit: u32,
    ) -> Result<Page<AggTrades>> {
        let query = [
            ("symbol", symbol.to_string()),
            ("fromId", from_id.to_string()),
            ("limit", limit.to_string()),
        ];
        Ok(Page::new(
            self.call(Endpoint::AggTrades, symbol, &query).await?,
        ))
    }

    /// Aggregate trades with time in `[start, end_inclusive]` (less than an hour apart).
    async fn agg_trades_between(
        &self,
        symbol: &str,
        start: i64,
        end_inclusive: i64,
        limit: u32,
    ) -> Result<Page<AggTrades>> {
        let query = [
            ("symbol", symbol.to_string()),
            ("startTime", start.to_string()),
            ("endTime", end_inclusive.to_string()),
            ("limit", limit.to_string()),
        ];
        Ok(Page::new(
            self.call(Endpoint::AggTrades, symbol, &query).await?,
        ))
    }

    /// The newest aggregate trade, if the symbol has any.
    pub async fn newest_agg_trade(&self, symbol: &str) -> Result<Option<AggTradeRef>> {
        let query = [("symbol", symbol.to_string()), ("limit", "1".to_string())];
        let page: Page<AggTrades> =
            Page::new(self.call(Endpoint::AggTrades, symbol, &query).await?);
        Ok(page.rows()?.last().map(AggTradeRef::of))
    }

    /// The first aggregate trade with time `>= t`, or `None` when there is none yet.
    ///
    /// On spot one request (`startTime` alone). On futures one request when a trade happened
    /// within the hour after `t` (the usual case); otherwise hourly klines, which count their
    /// trades, say which hour holds the next one (a request per thousand quiet hours), and one
    /// more request of that hour finds it: a year of silence costs about 11 requests, never a
    /// walk over hours. Should the two disagree, a binary search over ids (ordered by time) is
    /// the fallback.
    pub async fn first_agg_trade_at_or_after(
        &self,
        symbol: &str,
        t: i64,
    ) -> Result<Option<AggTradeRef>> {
        if super::endpoint::agg_trades_from_start_alone(self.market()) {
            let query = [
                ("symbol", symbol.to_string()),
                ("startTime", t.to_string()),
                ("limit", "1".to_string()),
            ];
            let page: Page<AggTrades> =
                Page::new(self.call(Endpoint::AggTrades, symbol, &query).await?);
            return Ok(page
                .rows()?
                .first()
                .map(AggTradeRef::of)
                .filter(|r| r.time >= t));
        }
        let page = self
            .agg_trades_between(symbol, t, t + AGG_WINDOW_MS - 1, 1)
            .await?;
        if let Some(r) = page.rows()?.first() {
            return Ok(Some(AggTradeRef::of(r)));
        }
        match self.first_trade_through_klines(symbol, t).await? {
            Located::Found(r) => return Ok(Some(r)),
            Located::NoneYet => return Ok(None),
            Located::Disagree => tracing::warn!(
                symbol,
                "klines count trades that aggTrades does not show: searching by id instead"
            ),
        }
        let Some(newest) = self.newest_agg_trade(symbol).await? else {
            return Ok(None);
        };
        if newest.time < t {
            return Ok(None);
        }
        // `hi` is an existing trade at or after t; the answer is `hi` or the first such trade
        // among the ids in [lo, bound); every existing id below `lo` is before t.
        let (mut lo, mut bound, mut hi) = (0u64, newest.id, newest);
        while lo < bound {
            let mid = lo + (bound - lo) / 2;
            let page = self.agg_trades_from_id(symbol, mid, 1).await?;
            let Some(probe) = page.rows()?.first().map(AggTradeRef::of) else {
                // Nothing from `mid` on although `hi` exists: `mid` is older than what REST
                // keeps (futures: a year), so it is before t too.
                lo = mid + 1;
                continue;
            };
            if probe.id >= bound {
                bound = mid; // no trade exists in [mid, bound)
            } else if probe.time >= t {
                hi = probe;
                bound = mid; // ids in [mid, probe) do not exist
            } else {
                lo = probe.id + 1;
            }
        }
        Ok(Some(hi))
    }

    /// The first aggregate trade at or after `t`, found through hourly klines after the hour
    /// from `t` on was found empty: the first candle that counts trades is asked for its first
    /// trade at or after `t`.
    async fn first_trade_through_klines(&self, symbol: &str, t: i64) -> Result<Located> {
        let hour = Interval::H1.nominal_ms();
        let page = i64::from(LOCATE_KLINES_PAGE);
        // The candle holding the first millisecond not asked about yet.
        let mut from = Interval::H1.align_down(t + AGG_WINDOW_MS);
        let now = self.server_now_ms();
        while from <= now {
            // One window is one page at most: COIN-M answers the newest rows of a window
            // larger than a page.
            let end = from + page * hour - 1;
            let candles = self
                .klines(symbol, Interval::H1, from, end, LOCATE_KLINES_PAGE)
                .await?;
            if let Some(open) = candles.rows()?.iter().find(|k| k.8 > 0).map(|k| k.0) {
                // Every candle asked starts after t, so its trades are all at or after t.
                let trades = self
                    .agg_trades_between(symbol, open, open + hour - 1, 1)
                    .await?;
                return Ok(match trades.rows()?.first() {
                    Some(r) => Located::Found(AggTradeRef::of(r)),
                    None => Located::Disagree,
                });
            }
            from = end + 1;
        }
        Ok(Located::NoneYet)
    }

    /// Raw trades with id `>= from_id`, at most `limit` (weight 25).
    pub async fn historical_trades(
        &self,
        symbol: &str,
        from_id: u64,
        limit: u32,
    ) -> Result<Page<Trades>> {
        let query = [
            ("symbol", symbol.to_string()),
            ("fromId", from_id.to_string()),
            ("limit", limit.to_string()),
        ];
        Ok(Page::new(
            self.call(Endpoint::HistoricalTrades, symbol, &query)
                .await?,
        ))
    }

    /// An order-book snapshot with `limit` levels a side.
    pub async fn depth(&self, symbol: &str, limit: u32) -> Result<DepthSnapshot> {
        let query = [("symbol", symbol.to_string()), ("limit", limit.to_string())];
        let body = self.call(Endpoint::Depth { limit }, symbol, &query).await?;
        serde_json::from_slice(&body).map_err(|e| {
            LoaderError::Exchange(format!(
                "Binance sent a depth snapshot that does not parse: {e}"
            ))
        })
    }
}
