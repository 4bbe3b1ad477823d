//! The REST endpoints: which path of which market is which endpoint and what it weighs,
//! parameter validation with Binance's error codes and messages, and the JSON bodies written
//! straight into a `String` (no intermediate value trees). The endpoints spot and futures share
//! (klines, aggTrades, historicalTrades, depth) live here with a market parameter; the
//! futures-only ones are in [`crate::futures_api`].

use crate::data::{self, AggUnits, Data, KlineUnits, Market, TradeUnits};
use crate::fmt::{push_fixed8, push_fixed8_wide, push_i64, push_json_str, push_u64};
use crate::futures::{self, PriceKline, PriceSeries};
use crate::futures_api;
use crate::limiter::WindowDesc;
use crate::market::SimMarket;
use crate::query::Query;
use crate::symbols::{parse_symbol, SymbolError, LISTED_SYMBOLS};
use kline_interval::Interval;

/// Times beyond this (about year 37,600) are clamped, so interval arithmetic cannot overflow.
const TIME_MAX: i64 = 1 << 50;
const MAX_AGG_RANGE_MS: i64 = 3_600_000;
/// COIN-M klines: startTime and endTime at most this far apart.
const MAX_COINM_KLINE_RANGE_MS: i64 = 200 * 86_400_000;

/// A REST endpoint of the simulator (of whichever market the path's prefix names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Ping,
    Time,
    ExchangeInfo,
    Klines,
    AggTrades,
    HistoricalTrades,
    Depth,
    /// Futures only from here on.
    MarkPriceKlines,
    IndexPriceKlines,
    PremiumIndexKlines,
    FundingRate,
    OpenInterestHist,
    GlobalLongShortAccountRatio,
    TopLongShortAccountRatio,
    TopLongShortPositionRatio,
    NotFound,
}

/// The separate request-count limits of some futures endpoints (weight 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CountLimit {
    /// `/fapi|dapi/v1/fundingRate`: 500 requests per 5 minutes.
    FundingRate,
    /// `/futures/data/*`: 1,000 requests per 5 minutes.
    FuturesData,
}

impl Endpoint {
    /// The endpoint of `path` (the part after the market's prefix) on `market`.
    pub fn of(market: SimMarket, path: &str) -> Endpoint {
        let api = match market {
            SimMarket::Spot => return Endpoint::from_path(path),
            SimMarket::UsdM => "/fapi/v1/",
            SimMarket::CoinM => "/dapi/v1/",
        };
        if let Some(name) = path.strip_prefix(api) {
            return match name {
                "ping" => Endpoint::Ping,
                "time" => Endpoint::Time,
                "exchangeInfo" => Endpoint::ExchangeInfo,
                "klines" => Endpoint::Klines,
                "markPriceKlines" => Endpoint::MarkPriceKlines,
                "indexPriceKlines" => Endpoint::IndexPriceKlines,
                "premiumIndexKlines" => Endpoint::PremiumIndexKlines,
                "aggTrades" => Endpoint::AggTrades,
                "historicalTrades" => Endpoint::HistoricalTrades,
                "depth" => Endpoint::Depth,
                "fundingRate" => Endpoint::FundingRate,
                _ => Endpoint::NotFound,
            };
        }
        match path.strip_prefix("/futures/data/") {
            Some("openInterestHist") => Endpoint::OpenInterestHist,
            Some("globalLongShortAccountRatio") => Endpoint::GlobalLongShortAccountRatio,
            Some("topLongShortAccountRatio") => Endpoint::TopLongShortAccountRatio,
            Some("topLongShortPositionRatio") => Endpoint::TopLongShortPositionRatio,
            _ => Endpoint::NotFound,
        }
    }

    /// The separate count limit the endpoint falls under, if any.
    pub fn count_limit(self) -> Option<CountLimit> {
        match self {
            Endpoint::FundingRate => Some(CountLimit::FundingRate),
            Endpoint::OpenInterestHist
            | Endpoint::GlobalLongShortAccountRatio
            | Endpoint::TopLongShortAccountRatio
            | Endpoint::TopLongShortPositionRatio => Some(CountLimit::FuturesData),
            _ => None,
        }
    }

    /// Request weight on `market`, as Binance charges it (also for requests that fail
    /// validation); the count-limited futures endpoints weigh nothing.
    pub fn weight_in(self, market: SimMarket, q: &Query) -> u32 {
        if market == SimMarket::Spot {
            return self.weight(q);
        }
        let limit = |default: i64| {
            q.get("limit")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        match self {
            Endpoint::Ping | Endpoint::Time | Endpoint::ExchangeInfo => 1,
            Endpoint::Klines
            | Endpoint::MarkPriceKlines
            | Endpoint::IndexPriceKlines
            | Endpoint::PremiumIndexKlines => match limit(500) {
                ..=99 => 1,
                100..=499 => 2,
                500..=1000 => 5,
                _ => 10,
            },
            Endpoint::AggTrades | Endpoint::HistoricalTrades => 20,
            Endpoint::Depth => match limit(500) {
                ..=50 => 2,
                51..=100 => 5,
                101..=500 => 10,
                _ => 20,
            },
            Endpoint::FundingRate
            | Endpoint::OpenInterestHist
            | Endpoint::GlobalLongShortAccountRatio
            | Endpoint::TopLongShortAccountRatio
            | Endpoint::TopLongShortPositionRatio
            | Endpoint::NotFound => 0,
        }
    }

    pub fn from_path(path: &str) -> Endpoint {
        match path {
            "/api/v3/ping" => Endpoint::Ping,
            "/api/v3/time" => Endpoint::Time,
            "/api/v3/exchangeInfo" => Endpoint::ExchangeInfo,
            "/api/v3/klines" => Endpoint::Klines,
            "/api/v3/aggTrades" => Endpoint::AggTrades,
            "/api/v3/historicalTrades" => Endpoint::HistoricalTrades,
            "/api/v3/depth" => Endpoint::Depth,
            _ => Endpoint::NotFound,
        }
    }

    /// Request weight, as Binance charges it (also for requests that fail validation).
    pub fn weight(self, q: &Query) -> u32 {
        match self {
            Endpoint::Ping | Endpoint::Time => 1,
            // Binance charges 20 with or without `symbol`/`symbols`.
            Endpoint::ExchangeInfo => 20,
            Endpoint::Klines => 2,
            Endpoint::AggTrades => 4,
            Endpoint::HistoricalTrades => 25,
            Endpoint::Depth => {
                let limit = q
                    .get("limit")
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(100);
                match limit {
                    ..=100 => 5,
                    101..=500 => 25,
                    501..=1000 => 50,
                    _ => 250,
                }
            }
            _ => 0,
        }
    }

    /// Data endpoints are the ones 5xx and drop faults pick from (every market's).
    pub fn is_data(self) -> bool {
        !matches!(
            self,
            Endpoint::Ping | Endpoint::Time | Endpoint::ExchangeInfo | Endpoint::NotFound
        )
    }
}

/// An error answer: HTTP status and Binance's `{"code","msg"}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: i32,
    pub msg: String,
}

impl ApiError {
    pub(crate) fn bad(code: i32, msg: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code,
            msg: msg.into(),
        }
    }

    pub fn not_found() -> ApiError {
        ApiError {
            status: 404,
            code: -5000,
            msg: "Path not found".into(),
        }
    }

    pub fn body(&self) -> String {
        error_body(self.code, &self.msg)
    }
}

/// Binance's messages for the codes that mean "try again" (spot `errors.md`, "10xx - General
/// Server or Network issues"; the derivatives error-code pages use the same codes and words).
pub(crate) fn retry_message(code: i32) -> Option<&'static str> {
    Some(match code {
        -1000 => "An unknown error occurred while processing the request.",
        -1001 => "Internal error; unable to process your request. Please try your request again.",
        -1006 => "An unexpected response was received from the message bus. Execution status unknown.",
        -1007 => "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        -1008 => "Server is currently overloaded with other requests. Please try again in a few minutes.",
        _ => return None,
    })
}

/// The body of a storm response other than 429/418: HTTP 451 is Binance's refusal of a
/// restricted location (spot `rest-api.md`, "HTTP Return Codes"), 408 a timeout waiting for the
/// backend (-1007), anything else a "try again" code (-1001 unless the storm names one).
pub(crate) fn storm_body(status: u16, code: Option<i32>) -> String {
    if status == 451 {
        return error_body(
            0,
            "Service unavailable from a restricted location according to 'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error.",
        );
    }
    let code = code.unwrap_or(if status == 408 { -1007 } else { -1001 });
    error_body(code, retry_message(code).unwrap_or("Unknown error."))
}

/// `{"code":code,"msg":"msg"}`
pub(crate) fn error_body(code: i32, msg: &str) -> String {
    let mut s = String::with_capacity(msg.len() + 24);
    s.push_str("{\"code\":");
    push_i64(&mut s, i64::from(code));
    s.push_str(",\"msg\":");
    push_json_str(&mut s, msg);
    s.push('}');
    s
}

pub(crate) fn mandatory(name: &str) -> ApiError {
    ApiError::bad(
        -1102,
        format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

pub(crate) fn illegal(name: &str, range: &str) -> ApiError {
    ApiError::bad(
        -1100,
        format!("Illegal characters found in parameter '{name}'; legal range is '{range}'."),
    )
}

fn check_symbol(name: &str, symbol: &str) -> Result<(), ApiError> {
    symbol_error(name, parse_symbol(symbol).map(|_| ()))
}

fn symbol_error<T>(name: &str, r: Result<T, SymbolError>) -> Result<T, ApiError> {
    match r {
        Ok(v) => Ok(v),
        Err(SymbolError::IllegalCharacters) => Err(illegal(name, "^[A-Z0-9-_.]{1,20}$")),
        Err(SymbolError::Invalid) => Err(ApiError::bad(-1121, "Invalid symbol.")),
    }
}

fn symbol_param(q: &Query) -> Result<&str, ApiError> {
    let s = q.get("symbol").ok_or_else(|| mandatory("symbol"))?;
    check_symbol("symbol", s)?;
    Ok(s)
}

/// The mandatory `symbol` of a request on `market`, validated by that market's rules.
pub(crate) fn market_symbol(q: &Query, market: SimMarket) -> Result<&str, ApiError> {
    let s = q.get("symbol").ok_or_else(|| mandatory("symbol"))?;
    symbol_error("symbol", market.parse_symbol(s))?;
    Ok(s)
}

/// The mandatory `pair` of a request on `market` and the symbol whose data it names.
pub(crate) fn market_pair(q: &Query, market: SimMarket) -> Result<(&str, String), ApiError> {
    let p = q.get("pair").ok_or_else(|| mandatory("pair"))?;
    let symbol = symbol_error("pair", market.symbol_of_pair(p))?;
    Ok((p, symbol))
}

pub(crate) fn digits(q: &Query, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) if v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| illegal(name, "^[0-9]{1,20}$")),
        Some(_) => Err(illegal(name, "^[0-9]{1,20}$")),
    }
}

pub(crate) fn time_param(q: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    Ok(digits(q, name)?.map(|v| v.min(TIME_MAX as u64) as i64))
}

pub(crate) fn limit_param(q: &Query, default: u64, max: u64) -> Result<usize, ApiError> {
    let invalid = || ApiError::bad(-1130, "Data sent for parameter 'limit' is not valid.");
    let limit = match q.get("limit") {
        None => default,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| invalid())?
            .try_into()
            .map_err(|_| invalid())?,
    };
    if limit < 1 || limit > max {
        return Err(invalid());
    }
    Ok(limit as usize)
}

/// What a handler needs besides the query.
pub(crate) struct Ctx<'a> {
    pub market: SimMarket,
    pub data: &'a Data,
    pub now: i64,
    pub weight_limit: u32,
    pub window: &'a WindowDesc,
    /// How old an aggregate trade `aggTrades` still serves, in ms before `now` (futures).
    pub agg_horizon_ms: Option<i64>,
    /// Whether the request carried a non-empty `X-MBX-APIKEY`.
    pub api_key: bool,
}

/// Answers a request that the limiter and the faults let through.
pub(crate) fn respond(ep: Endpoint, q: &Query, ctx: &Ctx<'_>) -> Result<String, ApiError> {
    match ep {
        Endpoint::Ping => Ok("{}".to_string()),
        Endpoint::Time => {
            let mut s = String::with_capacity(32);
            s.push_str("{\"serverTime\":");
            push_i64(&mut s, ctx.now);
            s.push('}');
            Ok(s)
        }
        Endpoint::ExchangeInfo if ctx.market.is_futures() => Ok(futures_api::exchange_info(ctx)),
        Endpoint::ExchangeInfo => exchange_info(q, ctx),
        Endpoint::Klines => klines(q, ctx, None),
        Endpoint::MarkPriceKlines => klines(q, ctx, Some(PriceSeries::Mark)),
        Endpoint::IndexPriceKlines => klines(q, ctx, Some(PriceSeries::Index)),
        Endpoint::PremiumIndexKlines => klines(q, ctx, Some(PriceSeries::Premium)),
        Endpoint::AggTrades => agg_trades(q, ctx),
        // Futures `historicalTrades` is MARKET_DATA, which needs an API key (USDⓈ-M and COIN-M
        // "Old Trades Lookup"; spot's became NONE on 2023-07-11). Without one Binance answers 401.
        Endpoint::HistoricalTrades if ctx.market.is_futures() && !ctx.api_key => Err(ApiError {
            status: 401,
            code: -2014,
            msg: "API-key format invalid.".into(),
        }),
        Endpoint::HistoricalTrades => historical_trades(q, ctx),
        Endpoint::Depth if ctx.market.is_futures() => futures_depth(q, ctx),
        Endpoint::Depth => depth(q, ctx),
        Endpoint::FundingRate => futures_api::funding_rate(q, ctx),
        Endpoint::OpenInterestHist
        | Endpoint::GlobalLongShortAccountRatio
        | Endpoint::TopLongShortAccountRatio
        | Endpoint::TopLongShortPositionRatio => futures_api::futures_data(ep, q, ctx),
        Endpoint::NotFound => Err(ApiError::not_found()),
    }
}

// ---------------------------------------------------------------------------------------------
// klines

/// `klines` of every market, and the futures' `markPriceKlines`, `indexPriceKlines` (by
/// `pair`) and `premiumIndexKlines` (`series`).
fn klines(q: &Query, ctx: &Ctx<'_>, series: Option<PriceSeries>) -> Result<String, ApiError> {
    let futures = ctx.market.is_futures();
    let market = if series == Some(PriceSeries::Index) {
        Market::of(ctx.market, &market_pair(q, ctx.market)?.1)
    } else {
        Market::of(ctx.market, market_symbol(q, ctx.market)?)
    };
    let interval: Interval = q
        .get("interval")
        .ok_or_else(|| mandatory("interval"))?
        .parse()
        .ok()
        // Futures have no 1-second candles.
        .filter(|iv| !(futures && *iv == Interval::S1))
        .ok_or_else(|| ApiError::bad(-1120, "Invalid interval."))?;
    let start = time_param(q, "startTime")?;
    let end = time_param(q, "endTime")?;
    let limit = if futures {
        limit_param(q, 500, 1500)?
    } else {
        limit_param(q, 500, 1000)?
    };
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(ApiError::bad(-1127, "startTime must be less than endTime"));
        }
    }
    let open_times = match (start, end) {
        // COIN-M: a range of at most 200 days, of which the newest `limit` candles.
        (Some(s), Some(e)) if ctx.market == SimMarket::CoinM => {
            if e - s > MAX_COINM_KLINE_RANGE_MS {
                return Err(ApiError::bad(
                    -1127,
                    "More than 200 days between startTime and endTime.",
                ));
            }
            let lo = interval.align_up(s);
            let mut t =
                kline_open_times(interval, ctx.data.listed_at, ctx.now, None, Some(e), limit);
            t.retain(|&t| t >= lo);
            t
        }
        _ => kline_open_times(interval, ctx.data.listed_at, ctx.now, start, end, limit),
    };
    let mut s = String::with_capacity(2 + open_times.len() * 200);
    s.push('[');
    for (i, &t) in open_times.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match series {
            None => write_kline(
                &mut s,
                &data::kline_units(&market, ctx.data, interval, t, ctx.now),
            ),
            Some(series) => write_price_kline(
                &mut s,
                &futures::price_kline(&market, series, interval, t, ctx.now),
            ),
        }
    }
    s.push(']');
    Ok(s)
}

/// A mark/index/premium candle: prices, then `"0"` for the volume-type columns and count 0.
fn write_price_kline(s: &mut String, k: &PriceKline) {
    s.push('[');
    push_i64(s, k.open_time);
    for v in [k.open, k.high, k.low, k.close] {
        s.push_str(",\"");
        push_fixed8(s, v);
        s.push('"');
    }
    s.push_str(",\"0\",");
    push_i64(s, k.close_time);
    s.push_str(",\"0\",0,\"0\",\"0\",\"0\"]");
}

/// The open times a klines request returns: never before the listing, never after `now`.
pub(crate) fn kline_open_times(
    interval: Interval,
    listed_at: i64,
    now: i64,
    start: Option<i64>,
    end: Option<i64>,
    limit: usize,
) -> Vec<i64> {
    let first = interval.align_up(listed_at.min(TIME_MAX));
    let last = interval.align_down(now.min(TIME_MAX));
    let lo = start.map_or(first, |s| interval.align_up(s).max(first));
    let hi = end.map_or(last, |e| interval.align_down(e).min(last));
    let mut out = Vec::with_capacity(limit.min(1000));
    if lo > hi {
        return out;
    }
    if start.is_some() {
        let mut t = lo;
        while t <= hi && out.len() < limit {
            out.push(t);
            t = interval.next_open(t);
        }
    } else {
        let mut t = hi;
        while t >= lo && out.len() < limit {
            out.push(t);
            t = interval.prev_open(t);
        }
        out.reverse();
    }
    out
}

fn write_kline(s: &mut String, k: &KlineUnits) {
    s.push('[');
    push_i64(s, k.open_time);
    s.push_str(",\"");
    push_fixed8(s, k.open);
    s.push_str("\",\"");
    push_fixed8(s, k.high);
    s.push_str("\",\"");
    push_fixed8(s, k.low);
    s.push_str("\",\"");
    push_fixed8(s, k.close);
    s.push_str("\",\"");
    push_fixed8_wide(s, k.volume);
    s.push_str("\",");
    push_i64(s, k.close_time);
    s.push_str(",\"");
    push_fixed8_wide(s, k.quote_volume);
    s.push_str("\",");
    push_u64(s, k.trades);
    s.push_str(",\"");
    push_fixed8_wide(s, k.taker_buy_base);
    s.push_str("\",\"");
    push_fixed8_wide(s, k.taker_buy_quote);
    s.push_str("\",\"0\"]");
}

// ---------------------------------------------------------------------------------------------
// aggTrades and historicalTrades

fn agg_trades(q: &Query, ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let symbol = market_symbol(q, ctx.market)?;
    let from_id = digits(q, "fromId")?;
    let start = time_param(q, "startTime")?;
    let end = time_param(q, "endTime")?;
    let limit = limit_param(q, 500, 1000)?;
    if from_id.is_some() && (start.is_some() || end.is_some()) {
        return Err(ApiError::bad(
            -1128,
            "Combination of optional parameters invalid.",
        ));
    }
    if let (Some(s), Some(e)) = (start, end) {
        if e - s >= MAX_AGG_RANGE_MS {
            return Err(ApiError::bad(
                -1127,
                "More than 1 hours between startTime and endTime.",
            ));
        }
    }
    let m = Market::of(ctx.market, symbol);
    let d = ctx.data;
    let mut rows: Vec<AggUnits> = Vec::with_capacity(limit);
    // Futures serve trades of the last year only; what Binance answers about older ones is not
    // documented: an empty list is assumed.
    let oldest = ctx.agg_horizon_ms.map(|h| ctx.now.saturating_sub(h));
    match (from_id, start, end) {
        (Some(from), _, _) => {
            d.agg_from_id(&m, from, ctx.now, limit, &mut rows);
            if oldest.is_some_and(|o| rows.first().is_some_and(|a| a.time < o)) {
                rows.clear();
            }
        }
        (None, Some(s), _) if oldest.is_some_and(|o| s < o) => {}
        (None, Some(s), e) => {
            if let Some(first) = d.agg_ceil_existing(&m, s) {
                let until = e.unwrap_or(ctx.now).min(ctx.now);
                d.agg_from_id(&m, first, until, limit, &mut rows);
            }
        }
        (None, None, e) => d.agg_newest(&m, e.unwrap_or(ctx.now).min(ctx.now), limit, &mut rows),
    }
    let mut s = String::with_capacity(2 + rows.len() * 110);
    s.push('[');
    for (i, a) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"a\":");
        push_u64(&mut s, a.id);
        s.push_str(",\"p\":\"");
        push_fixed8(&mut s, a.price);
        s.push_str("\",\"q\":\"");
        push_fixed8(&mut s, a.qty);
        s.push_str("\",\"f\":");
        push_u64(&mut s, a.first);
        s.push_str(",\"l\":");
        push_u64(&mut s, a.last);
        s.push_str(",\"T\":");
        push_i64(&mut s, a.time);
        // Futures rows have no best-match flag.
        s.push_str(match (a.buyer_maker, ctx.market.is_futures()) {
            (true, false) => ",\"m\":true,\"M\":true}",
            (false, false) => ",\"m\":false,\"M\":true}",
            (true, true) => ",\"m\":true}",
            (false, true) => ",\"m\":false}",
        });
    }
    s.push(']');
    Ok(s)
}

fn historical_trades(q: &Query, ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let symbol = market_symbol(q, ctx.market)?;
    let limit = if ctx.market.is_futures() {
        limit_param(q, 100, 500)?
    } else {
        limit_param(q, 500, 1000)?
    };
    let from_id = digits(q, "fromId")?;
    let m = Market::of(ctx.market, symbol);
    let mut rows: Vec<TradeUnits> = Vec::with_capacity(limit);
    match from_id {
        Some(from) => ctx.data.raw_from_id(&m, from, ctx.now, limit, &mut rows),
        None => ctx.data.raw_newest(&m, ctx.now, limit, &mut rows),
    }
    let mut s = String::with_capacity(2 + rows.len() * 140);
    s.push('[');
    for (i, t) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"id\":");
        push_u64(&mut s, t.id);
        s.push_str(",\"price\":\"");
        push_fixed8(&mut s, t.price);
        s.push_str("\",\"qty\":\"");
        push_fixed8(&mut s, t.qty);
        // COIN-M states the base-asset amount of the contracts instead of a quote amount.
        s.push_str(if ctx.market == SimMarket::CoinM {
            "\",\"baseQty\":\""
        } else {
            "\",\"quoteQty\":\""
        });
        push_fixed8(&mut s, t.quote_qty);
        s.push_str("\",\"time\":");
        push_i64(&mut s, t.time);
        s.push_str(match (t.buyer_maker, ctx.market.is_futures()) {
            (true, false) => ",\"isBuyerMaker\":true,\"isBestMatch\":true}",
            (false, false) => ",\"isBuyerMaker\":false,\"isBestMatch\":true}",
            (true, true) => ",\"isBuyerMaker\":true}",
            (false, true) => ",\"isBuyerMaker\":false}",
        });
    }
    s.push(']');
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// depth

fn depth(q: &Query, ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let symbol = symbol_param(q)?;
    let limit = limit_param(q, 100, 5000)?;
    let m = Market::new(symbol);
    let slot = data::book_slot(ctx.now);
    let book = data::book_at(&m, slot);
    let mut s = String::with_capacity(64 + limit.min(data::BOOK_LEVELS) * 80);
    s.push_str("{\"lastUpdateId\":");
    push_u64(&mut s, data::slot_last_update_id(&m, slot));
    for (name, side) in [(",\"bids\":[", &book.bids), ("],\"asks\":[", &book.asks)] {
        s.push_str(name);
        for (i, &(price, qty)) in side.iter().take(limit).enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("[\"");
            push_fixed8(&mut s, price);
            s.push_str("\",\"");
            push_fixed8(&mut s, qty);
            s.push_str("\"]");
        }
    }
    s.push_str("]}");
    Ok(s)
}

/// Futures `depth`: only Binance's limits, event and transaction times, futures update ids.
fn futures_depth(q: &Query, ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let symbol = market_symbol(q, ctx.market)?;
    const LIMITS: [usize; 7] = [5, 10, 20, 50, 100, 500, 1000];
    let limit = match q.get("limit") {
        None => 500,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|l| LIMITS.contains(l))
            .ok_or_else(|| illegal("limit", "5, 10, 20, 50, 100, 500, 1000"))?,
    };
    let m = Market::of(ctx.market, symbol);
    let slot = data::book_slot(ctx.now);
    let book = data::book_at(&m, slot);
    let mut s = String::with_capacity(96 + limit.min(data::BOOK_LEVELS) * 80);
    s.push_str("{\"lastUpdateId\":");
    push_u64(&mut s, data::last_update_id(ctx.market, &m, slot));
    s.push_str(",\"E\":");
    push_i64(&mut s, ctx.now);
    s.push_str(",\"T\":");
    push_i64(&mut s, ctx.now);
    for (name, side) in [(",\"bids\":[", &book.bids), ("],\"asks\":[", &book.asks)] {
        s.push_str(name);
        for (i, &(price, qty)) in side.iter().take(limit).enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("[\"");
            push_fixed8(&mut s, price);
            s.push_str("\",\"");
            push_fixed8(&mut s, qty);
            s.push_str("\"]");
        }
    }
    s.push_str("]}");
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// exchangeInfo

fn parse_symbols_list(raw: &str) -> Result<Vec<&str>, ApiError> {
    let bad = || {
        illegal(
            "symbols",
            r#"^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$"#,
        )
    };
    let inner = raw
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(bad)?;
    let mut out = Vec::new();
    for item in inner.split(',') {
        let sym = item
            .trim()
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .ok_or_else(bad)?;
        check_symbol("symbols", sym)?;
        out.push(sym);
    }
    Ok(out)
}

fn exchange_info(q: &Query, ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let symbols: Vec<&str> = if let Some(sym) = q.get("symbol") {
        check_symbol("symbol", sym)?;
        vec![sym]
    } else if let Some(list) = q.get("symbols") {
        parse_symbols_list(list)?
    } else {
        LISTED_SYMBOLS.to_vec()
    };
    let mut s = String::with_capacity(512 + symbols.len() * 1200);
    s.push_str("{\"timezone\":\"UTC\",\"serverTime\":");
    push_i64(&mut s, ctx.now);
    s.push_str(",\"rateLimits\":[{\"rateLimitType\":\"REQUEST_WEIGHT\",\"interval\":\"");
    s.push_str(ctx.window.unit);
    s.push_str("\",\"intervalNum\":");
    push_u64(&mut s, ctx.window.num);
    s.push_str(",\"limit\":");
    push_u64(&mut s, u64::from(ctx.weight_limit));
    s.push_str(
        "},{\"rateLimitType\":\"ORDERS\",\"interval\":\"SECOND\",\"intervalNum\":10,\"limit\":100},\
         {\"rateLimitType\":\"ORDERS\",\"interval\":\"DAY\",\"intervalNum\":1,\"limit\":200000},\
         {\"rateLimitType\":\"RAW_REQUESTS\",\"interval\":\"MINUTE\",\"intervalNum\":5,\"limit\":61000}],\
         \"exchangeFilters\":[],\"symbols\":[",
    );
    for (i, sym) in symbols.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_symbol_info(&mut s, sym);
    }
    s.push_str("]}");
    Ok(s)
}

fn write_symbol_info(s: &mut String, symbol: &str) {
    let (base, quote) = parse_symbol(symbol).unwrap_or((symbol, ""));
    let m = Market::new(symbol);
    s.push_str("{\"symbol\":");
    push_json_str(s, symbol);
    s.push_str(",\"status\":\"TRADING\",\"baseAsset\":");
    push_json_str(s, base);
    s.push_str(",\"baseAssetPrecision\":8,\"quoteAsset\":");
    push_json_str(s, quote);
    s.push_str(
        ",\"quotePrecision\":8,\"quoteAssetPrecision\":8,\"baseCommissionPrecision\":8,\
         \"quoteCommissionPrecision\":8,\"orderTypes\":[\"LIMIT\",\"LIMIT_MAKER\",\"MARKET\",\
         \"STOP_LOSS_LIMIT\",\"TAKE_PROFIT_LIMIT\"],\"icebergAllowed\":true,\"ocoAllowed\":true,\
         \"otoAllowed\":true,\"quoteOrderQtyMarketAllowed\":true,\"allowTrailingStop\":true,\
         \"cancelReplaceAllowed\":true,\"isSpotTradingAllowed\":true,\"isMarginTradingAllowed\":false,\
         \"filters\":[{\"filterType\":\"PRICE_FILTER\",\"minPrice\":\"",
    );
    push_fixed8(s, m.tick_units());
    s.push_str("\",\"maxPrice\":\"1000000.00000000\",\"tickSize\":\"");
    push_fixed8(s, m.tick_units());
    s.push_str("\"},{\"filterType\":\"LOT_SIZE\",\"minQty\":\"");
    push_fixed8(s, m.step_units());
    s.push_str("\",\"maxQty\":\"9000000.00000000\",\"stepSize\":\"");
    push_fixed8(s, m.step_units());
    s.push_str(
        "\"}],\"permissions\":[],\"permissionSets\":[[\"SPOT\"]],\
         \"defaultSelfTradePreventionMode\":\"EXPIRE_MAKER\",\
         \"allowedSelfTradePreventionModes\":[\"EXPIRE_TAKER\",\"EXPIRE_MAKER\",\"EXPIRE_BOTH\"]}",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: i64 = crate::data::DEFAULT_LISTED_AT_MS;
    const MIN: i64 = 60_000;

    #[test]
    fn kline_pages() {
        let now = L + 10 * MIN + 30_000;
        let iv = Interval::M1;
        // startTime mid-candle rounds up; endTime is inclusive.
        let t = kline_open_times(iv, L, now, Some(L + 1), Some(L + 3 * MIN), 1000);
        assert_eq!(t, vec![L + MIN, L + 2 * MIN, L + 3 * MIN]);
        // Nothing before the listing, the current (unclosed) candle included.
        let t = kline_open_times(iv, L, now, Some(0), None, 1000);
        assert_eq!(t.len(), 11);
        assert_eq!((t[0], t[10]), (L, L + 10 * MIN));
        // Only endTime: the newest candles at or before it.
        let t = kline_open_times(iv, L, now, None, Some(L + 5 * MIN + 1), 2);
        assert_eq!(t, vec![L + 4 * MIN, L + 5 * MIN]);
        // Neither: the newest.
        let t = kline_open_times(iv, L, now, None, None, 3);
        assert_eq!(t, vec![L + 8 * MIN, L + 9 * MIN, L + 10 * MIN]);
        assert!(kline_open_times(iv, L, now, Some(now + MIN), None, 10).is_empty());
        assert!(kline_open_times(iv, L, L - 1, None, None, 10).is_empty());
        assert!(kline_open_times(iv, L, now, Some(i64::MAX >> 14), None, 10).is_empty());
    }

    #[test]
    fn limits_and_params() {
        let q = Query::parse(Some("limit=1001"));
        assert_eq!(limit_param(&q, 500, 1000).unwrap_err().code, -1130);
        let q = Query::parse(Some("limit=0"));
        assert_eq!(limit_param(&q, 500, 1000).unwrap_err().code, -1130);
        let q = Query::parse(Some("limit=-3"));
        assert_eq!(limit_param(&q, 500, 1000).unwrap_err().code, -1130);
        let q = Query::parse(Some("limit=abc"));
        assert_eq!(limit_param(&q, 500, 1000).unwrap_err().code, -1130);
        let q = Query::parse(Some("startTime=12a"));
        assert_eq!(time_param(&q, "startTime").unwrap_err().code, -1100);
        let q = Query::parse(Some("startTime=9999999999999999999"));
        assert_eq!(time_param(&q, "startTime").unwrap(), Some(TIME_MAX));
        assert_eq!(limit_param(&Query::default(), 500, 1000).unwrap(), 500);
    }

    #[test]
    fn symbols_list() {
        assert_eq!(
            parse_symbols_list(r#"["BTCUSDT", "ETHBTC"]"#).unwrap(),
            vec!["BTCUSDT", "ETHBTC"]
        );
        assert_eq!(parse_symbols_list(r#"["NOPE"]"#).unwrap_err().code, -1121);
        assert_eq!(parse_symbols_list("BTCUSDT").unwrap_err().code, -1100);
        assert_eq!(
            parse_symbols_list(r#"["btcusdt"]"#).unwrap_err().code,
            -1100
        );
    }

    #[test]
    fn error_bodies_are_json() {
        let e = ApiError::bad(-1121, "Invalid symbol.");
        assert_eq!(e.body(), r#"{"code":-1121,"msg":"Invalid symbol."}"#);
        let v: serde_json::Value = serde_json::from_str(&ApiError::not_found().body()).unwrap();
        assert_eq!(v["code"], -5000);
    }
}
