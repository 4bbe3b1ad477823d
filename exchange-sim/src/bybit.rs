//! Bybit's v5 REST market data, served under `/bybit` ([`SimServer::bybit_url`]), from the
//! same deterministic generator as the Binance markets but with data of its own (a salted seed
//! per category), as Bybit documents it (bybit-exchange.github.io/docs/v5):
//! - `GET /v5/market/time`: `{"retCode":0,"retMsg":"OK","result":{"timeSecond":"…",
//!   "timeNano":"…"},"retExtInfo":{},"time":…}` (the server clock, [`SimClock`]);
//! - `GET /v5/market/instruments-info?category=&symbol=`: the symbol in `list` when the
//!   category trades it, an empty `list` otherwise; `category` is required;
//! - `GET /v5/market/kline?category=&symbol=&interval=&start=&end=&limit=`: `category`
//!   defaults to `linear`; intervals `1,3,5,15,30,60,120,240,360,720,D,W,M`; `limit` 1 to
//!   1000 (default 200); `start` and `end` inclusive; the newest `limit` candles at or before
//!   `end` (or now), newest first, the unclosed one included; with `start` alone, the oldest
//!   `limit` from it. Rows `[startTime, open, high, low, close, volume, turnover]`, strings:
//!   volume in the base coin (inverse: contracts of 1 USD), turnover in the quote coin
//!   (inverse: the base coin). A symbol the category does not list: HTTP 200, `retCode` 10001,
//!   `"Not supported symbols"`;
//! - `GET /v5/market/funding/history?category=&symbol=&startTime=&endTime=&limit=`: linear
//!   and inverse only; `limit` 1 to 200 (default 200); `startTime` alone is an error ("Passing
//!   only startTime returns an error"); the newest `limit` settlements at or after `startTime`
//!   and at or before `endTime` (or now), newest first, rows `{symbol, fundingRate,
//!   fundingRateTimestamp}`, strings. Settlements every 8 hours on the hour ([`funding`]);
//! - `GET /v5/market/open-interest?category=&symbol=&intervalTime=&startTime=&endTime=&limit=
//!   &cursor=`: linear and inverse only; `intervalTime` `5min,15min,30min,1h,4h,1d`; `limit` 1 to
//!   200 (default 50); the newest `limit` period times at or after `startTime` and at or before
//!   `endTime` (or now), newest first, rows `{openInterest, timestamp}` ([`open_interest`]: the
//!   base coin on linear, USD on inverse); `nextPageCursor` continues older when more remain
//!   (`""` when not);
//! - `GET /v5/market/recent-trade?category=&symbol=&limit=`: the newest trades (spot up to 60,
//!   others up to 1000), newest first, the archive's and the stream's trades
//!   ([`recent_trades`]);
//! - every response is counted against the IP limit, 600 requests in any 5 s (sliding, server
//!   clock): the 601st is HTTP 403 `access too frequent`, and every request for the next 10
//!   minutes too (the ban); [`BybitStats`] counts them.
//!
//! Symbols: spot takes what the Binance spot market takes, linear the USDT- and USDC-quoted
//! ones, inverse `<BASE>USD` of the COIN-M bases (contracts of 1 USD).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use kline_interval::Interval;

use crate::data::{kline_units, mix, symbol_seed, Data, Kline, Market};
use crate::fmt::push_i64;
use crate::market::{SimMarket, COINM_BASES};
use crate::query::Query;
/// The liquidations of `allLiquidation.{symbol}` ([`crate::bybit_ws`]), also in
/// [`crate::data`].
pub use crate::venue_liquidations::{bybit_liquidations, VenueLiquidation};
use crate::SimClock;

/// "600 requests within a 5-second window per IP" (Rate Limit Rules).
pub const IP_REQUESTS: usize = 600;
pub const IP_WINDOW_MS: i64 = 5_000;
/// "wait for at least 10 minutes" after HTTP 403 "access too frequent".
pub const BAN_MS: i64 = 600_000;

/// A Bybit `category`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BybitCategory {
    Spot,
    Linear,
    Inverse,
}

impl BybitCategory {
    pub const ALL: [BybitCategory; 3] = [
        BybitCategory::Spot,
        BybitCategory::Linear,
        BybitCategory::Inverse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BybitCategory::Spot => "spot",
            BybitCategory::Linear => "linear",
            BybitCategory::Inverse => "inverse",
        }
    }

    fn parse(s: &str) -> Option<BybitCategory> {
        BybitCategory::ALL.into_iter().find(|c| c.name() == s)
    }

    fn salt(self) -> u64 {
        match self {
            BybitCategory::Spot => 0x4259_4254_0000_0001,
            BybitCategory::Linear => 0x4259_4254_0000_0002,
            BybitCategory::Inverse => 0x4259_4254_0000_0003,
        }
    }

    /// `(base, quote, contract size)` of a symbol the category lists.
    pub fn parse_symbol(self, symbol: &str) -> Option<(&str, &str, Option<i64>)> {
        match self {
            BybitCategory::Spot => SimMarket::Spot
                .parse_symbol(symbol)
                .ok()
                .map(|(b, q)| (b, q, None)),
            BybitCategory::Linear => SimMarket::UsdM
                .parse_symbol(symbol)
                .ok()
                .map(|(b, q)| (b, q, None)),
            BybitCategory::Inverse => symbol
                .strip_suffix("USD")
                .filter(|b| COINM_BASES.contains(b))
                .map(|b| (b, "USD", Some(1))),
        }
    }

    pub(crate) fn market(self, symbol: &str) -> Option<Market> {
        let (base, quote, contract) = self.parse_symbol(symbol)?;
        Some(Market::build(
            mix(symbol_seed(symbol) ^ self.salt()),
            base,
            quote,
            contract,
        ))
    }
}

/// Bybit's name of an interval (`1` … `720`, `D`, `W`, `M`).
pub fn interval_of(name: &str) -> Option<Interval> {
    Some(match name {
        "1" => Interval::M1,
        "3" => Interval::M3,
        "5" => Interval::M5,
        "15" => Interval::M15,
        "30" => Interval::M30,
        "60" => Interval::H1,
        "120" => Interval::H2,
        "240" => Interval::H4,
        "360" => Interval::H6,
        "720" => Interval::H12,
        "D" => Interval::D1,
        "W" => Interval::W1,
        "M" => Interval::Mo1,
        _ => return None,
    })
}

/// The closed candle of `symbol` in `category` opened at `open_time`, as the kline endpoint
/// reports it (`volume` and `quote_volume` are its volume and turnover; the other fields are
/// Binance's and not served). `None` for a symbol the category does not list.
pub fn kline(
    data: &Data,
    category: BybitCategory,
    symbol: &str,
    interval: Interval,
    open_time: i64,
) -> Option<Kline> {
    let m = category.market(symbol)?;
    Some(kline_units(&m, data, interval, open_time, i64::MAX).to_kline())
}

/// Bybit's funding interval in the simulator (its default `fundingInterval`, 480 minutes).
pub const FUNDING_INTERVAL_MS: i64 = 8 * 3_600_000;

/// Funding settlement `k` of `symbol` (at `k` × 8 h): its time and rate, as
/// `funding/history` reports them. `None` for a symbol the category does not list, or spot.
pub fn funding(category: BybitCategory, symbol: &str, k: i64) -> Option<(i64, String)> {
    if category == BybitCategory::Spot {
        return None;
    }
    let m = category.market(symbol)?;
    Some((
        k * FUNDING_INTERVAL_MS,
        crate::fmt::fixed8(crate::futures::funding_units(&m, k)),
    ))
}

/// Bybit's name of an open-interest period (`intervalTime`).
pub fn open_interest_period(name: &str) -> Option<Interval> {
    Some(match name {
        "5min" => Interval::M5,
        "15min" => Interval::M15,
        "30min" => Interval::M30,
        "1h" => Interval::H1,
        "4h" => Interval::H4,
        "1d" => Interval::D1,
        _ => return None,
    })
}

/// Open interest of `symbol` at `t` as `open-interest` reports it (the base coin on linear,
/// USD on inverse); `None` for a symbol the category does not list, or spot.
pub fn open_interest(category: BybitCategory, symbol: &str, t: i64) -> Option<String> {
    if category == BybitCategory::Spot {
        return None;
    }
    let m = category.market(symbol)?;
    Some(crate::fmt::fixed8(
        crate::futures::open_interest_units(&m, t).0,
    ))
}

/// Requests and answers of the Bybit venue.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BybitStats {
    pub requests: u64,
    /// HTTP 403 answers: over the IP limit, or during the ban that follows.
    pub responses_403: u64,
    /// The most requests that arrived within any 5 s (sliding), refused ones included.
    pub max_in_window: u64,
    /// Requests per path (`/v5/market/kline`, …; `"other"` for unknown ones).
    pub per_endpoint: BTreeMap<String, u64>,
}

/// The Bybit venue's state: the IP window, a ban, the counters.
#[derive(Default)]
pub(crate) struct BybitVenue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Arrival times (server clock) within the last window.
    window: VecDeque<i64>,
    banned_until: Option<i64>,
    stats: BybitStats,
}

/// An answer: HTTP status and JSON or text body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
}

impl BybitVenue {
    pub fn stats(&self) -> BybitStats {
        self.lock().stats.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers `path` (after `/bybit`) at `now`.
    pub fn handle(&self, path: &str, query: &Query, data: &Data, clock: &SimClock) -> Answer {
        let now = clock.now_ms();
        {
            let mut st = self.lock();
            st.stats.requests += 1;
            let key = match path {
                "/v5/market/time"
                | "/v5/market/kline"
                | "/v5/market/instruments-info"
                | "/v5/market/funding/history"
                | "/v5/market/open-interest"
                | "/v5/market/recent-trade" => path,
                _ => "other",
            };
            *st.stats.per_endpoint.entry(key.to_string()).or_default() += 1;
            while st.window.front().is_some_and(|t| now - t >= IP_WINDOW_MS) {
                st.window.pop_front();
            }
            // The window never holds more than a ban needs to know.
            if st.window.len() <= IP_REQUESTS {
                st.window.push_back(now);
            }
            st.stats.max_in_window = st.stats.max_in_window.max(st.window.len() as u64);
            let over = st.window.len() > IP_REQUESTS;
            if over && st.banned_until.is_none_or(|t| t <= now) {
                st.banned_until = Some(now + BAN_MS);
            }
            if st.banned_until.is_some_and(|t| t > now) {
                st.stats.responses_403 += 1;
                return Answer {
                    status: 403,
                    body: "access too frequent".into(),
                };
            }
        }
        match path {
            "/v5/market/time" => ok(now, &time_result(now)),
            "/v5/market/instruments-info" => instruments(query, now),
            "/v5/market/kline" => klines(query, data, now),
            "/v5/market/funding/history" => funding_history(query, data, now),
            "/v5/market/open-interest" => open_interest_history(query, data, now),
            "/v5/market/recent-trade" => recent_trades(query, data, now),
            _ => Answer {
                status: 404,
                body: "Not Found".into(),
            },
        }
    }
}

/// `GET /v5/market/recent-trade?category=&symbol=&limit=` (Get Public Recent Trading History):
/// the newest `limit` trades at or before now (spot 1 to 60, default 60; linear and inverse 1 to
/// 1000, default 500), newest first, the archive's trades ([`crate::bybit_archive::trades_between`],
/// which the `publicTrade` stream sends too): rows `{execId, symbol, price, size, side, time,
/// isBlockTrade, isRPITrade}`, strings but the flags.
fn recent_trades(query: &Query, data: &Data, now: i64) -> Answer {
    let Some(category) = query.get("category").and_then(BybitCategory::parse) else {
        return param_error("params error: category is invalid", now);
    };
    let Some(symbol) = query.get("symbol") else {
        return param_error("params error: symbol is required", now);
    };
    let (max, default) = match category {
        BybitCategory::Spot => (60, 60),
        _ => (1000, 500),
    };
    let limit = match number(query, "limit", now) {
        Ok(l) => l.unwrap_or(default),
        Err(a) => return a,
    };
    if !(1..=max).contains(&limit) {
        return param_error("params error: limit is invalid", now);
    }
    // Look back far enough to hold `limit` trades (a quiet symbol: up to a day).
    let mut back = 60_000;
    let trades = loop {
        let Some(t) = crate::bybit_archive::trades_between(data, category, symbol, now - back, now)
        else {
            return param_error("Not supported symbols", now);
        };
        if t.len() >= limit as usize || back >= 86_400_000 {
            break t;
        }
        back *= 4;
    };
    let mut list = String::from("[");
    for (i, t) in trades.iter().rev().take(limit as usize).enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str("{\"execId\":");
        list.push_str(&json_string(&t.id));
        list.push_str(",\"symbol\":");
        list.push_str(&json_string(symbol));
        list.push_str(",\"price\":");
        list.push_str(&json_string(&t.price));
        list.push_str(",\"size\":");
        list.push_str(&json_string(&t.size));
        list.push_str(",\"side\":");
        list.push_str(if t.sell { "\"Sell\"" } else { "\"Buy\"" });
        list.push_str(",\"time\":\"");
        push_i64(&mut list, t.time_ms);
        list.push_str("\",\"isBlockTrade\":false,\"isRPITrade\":false}");
    }
    list.push(']');
    let result = format!("{{\"category\":\"{}\",\"list\":{list}}}", category.name());
    ok(now, &result)
}

fn time_result(now: i64) -> String {
    let mut s = String::from("{\"timeSecond\":\"");
    push_i64(&mut s, now.div_euclid(1000));
    s.push_str("\",\"timeNano\":\"");
    push_i64(&mut s, now);
    s.push_str("000000\"}");
    s
}

fn envelope(code: i64, msg: &str, result: &str, now: i64) -> Answer {
    let mut body = String::with_capacity(result.len() + 96);
    body.push_str("{\"retCode\":");
    push_i64(&mut body, code);
    body.push_str(",\"retMsg\":");
    body.push_str(&json_string(msg));
    body.push_str(",\"result\":");
    body.push_str(result);
    body.push_str(",\"retExtInfo\":{},\"time\":");
    push_i64(&mut body, now);
    body.push('}');
    Answer { status: 200, body }
}

/// An integer parameter, if given; a malformed one is a parameter error.
fn number(query: &Query, name: &str, now: i64) -> Result<Option<i64>, Answer> {
    match query.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| param_error(&format!("params error: {name} is invalid"), now)),
    }
}

/// The `category` of a contracts-only endpoint (funding, open interest).
fn contract_category(query: &Query, now: i64) -> Result<BybitCategory, Answer> {
    match query.get("category").and_then(BybitCategory::parse) {
        Some(c) if c != BybitCategory::Spot => Ok(c),
        _ => Err(param_error(
            "params error: category only support linear or inverse",
            now,
        )),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn ok(now: i64, result: &str) -> Answer {
    envelope(0, "OK", result, now)
}

fn param_error(msg: &str, now: i64) -> Answer {
    envelope(10001, msg, "{}", now)
}

fn instruments(query: &Query, now: i64) -> Answer {
    let Some(category) = query.get("category").and_then(BybitCategory::parse) else {
        return param_error("params error: category is invalid", now);
    };
    let symbol = query.get("symbol").unwrap_or("");
    let listed = category.parse_symbol(symbol).is_some();
    let mut result = format!("{{\"category\":\"{}\",\"list\":[", category.name());
    if listed {
        result.push_str(&format!(
            "{{\"symbol\":{},\"status\":\"Trading\"}}",
            json_string(symbol)
        ));
    }
    result.push_str("],\"nextPageCursor\":\"\"}");
    ok(now, &result)
}

fn klines(query: &Query, data: &Data, now: i64) -> Answer {
    let category = match query.get("category") {
        None => BybitCategory::Linear,
        Some(c) => match BybitCategory::parse(c) {
            Some(c) => c,
            None => return param_error("params error: category is invalid", now),
        },
    };
    let Some(symbol) = query.get("symbol") else {
        return param_error("params error: symbol is required", now);
    };
    let Some(interval) = query.get("interval").and_then(interval_of) else {
        return param_error("params error: interval is invalid", now);
    };
    let number = |name: &str| number(query, name, now);
    let (start, end, limit) = match (number("start"), number("end"), number("limit")) {
        (Ok(s), Ok(e), Ok(l)) => (s, e, l.unwrap_or(200)),
        (Err(a), _, _) | (_, Err(a), _) | (_, _, Err(a)) => return a,
    };
    if !(1..=1000).contains(&limit) {
        return param_error("params error: limit is invalid", now);
    }
    let Some(market) = category.market(symbol) else {
        return param_error("Not supported symbols", now);
    };
    let first = interval.align_up(data.listed_at);
    let newest = interval.align_down(now);
    let lo = start.map_or(first, |s| interval.align_up(s)).max(first);
    let hi = end.map_or(newest, |e| interval.align_down(e)).min(newest);
    let mut opens = Vec::new();
    if lo <= hi {
        if end.is_none() && start.is_some() {
            // Anchored at `start`: the oldest `limit` from it.
            let mut t = lo;
            while t <= hi && opens.len() < limit as usize {
                opens.push(t);
                t = interval.next_open(t);
            }
            opens.reverse();
        } else {
            // Anchored at `end` (or now): the newest `limit` candles.
            let mut t = hi;
            while t >= lo && opens.len() < limit as usize {
                opens.push(t);
                t = interval.prev_open(t);
            }
        }
    }
    let mut result = format!(
        "{{\"symbol\":{},\"category\":\"{}\",\"list\":[",
        json_string(symbol),
        category.name()
    );
    for (i, open) in opens.iter().enumerate() {
        let k = kline_units(&market, data, interval, *open, now).to_kline();
        if i > 0 {
            result.push(',');
        }
        result.push_str("[\"");
        push_i64(&mut result, k.open_time);
        for v in [
            &k.open,
            &k.high,
            &k.low,
            &k.close,
            &k.volume,
            &k.quote_volume,
        ] {
            result.push_str("\",\"");
            result.push_str(v);
        }
        result.push_str("\"]");
    }
    result.push_str("]}");
    ok(now, &result)
}

fn funding_history(query: &Query, data: &Data, now: i64) -> Answer {
    let category = match contract_category(query, now) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let Some(symbol) = query.get("symbol") else {
        return param_error("params error: symbol is required", now);
    };
    let number = |name: &str| number(query, name, now);
    let (start, end, limit) = match (number("startTime"), number("endTime"), number("limit")) {
        (Ok(s), Ok(e), Ok(l)) => (s, e, l.unwrap_or(200)),
        (Err(a), _, _) | (_, Err(a), _) | (_, _, Err(a)) => return a,
    };
    if start.is_some() && end.is_none() {
        return param_error("params error: endTime is required with startTime", now);
    }
    if !(1..=200).contains(&limit) {
        return param_error("params error: limit is invalid", now);
    }
    if category.parse_symbol(symbol).is_none() {
        return param_error("Not supported symbols", now);
    }
    let first = -(-data.listed_at).div_euclid(FUNDING_INTERVAL_MS);
    let lo = start
        .map_or(first, |s| -(-s).div_euclid(FUNDING_INTERVAL_MS))
        .max(first);
    let hi = end.unwrap_or(now).min(now).div_euclid(FUNDING_INTERVAL_MS);
    let mut result = String::from("{\"category\":\"");
    result.push_str(category.name());
    result.push_str("\",\"list\":[");
    let mut k = hi;
    let mut n = 0;
    while k >= lo && n < limit {
        let Some((time, rate)) = funding(category, symbol, k) else {
            break;
        };
        if n > 0 {
            result.push(',');
        }
        result.push_str("{\"symbol\":");
        result.push_str(&json_string(symbol));
        result.push_str(",\"fundingRate\":\"");
        result.push_str(&rate);
        result.push_str("\",\"fundingRateTimestamp\":\"");
        push_i64(&mut result, time);
        result.push_str("\"}");
        n += 1;
        k -= 1;
    }
    result.push_str("]}");
    ok(now, &result)
}

fn open_interest_history(query: &Query, data: &Data, now: i64) -> Answer {
    let category = match contract_category(query, now) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let Some(symbol) = query.get("symbol") else {
        return param_error("params error: symbol is required", now);
    };
    let Some(period) = query.get("intervalTime").and_then(open_interest_period) else {
        return param_error("params error: intervalTime is invalid", now);
    };
    let number = |name: &str| number(query, name, now);
    let (start, end, limit) = match (number("startTime"), number("endTime"), number("limit")) {
        (Ok(s), Ok(e), Ok(l)) => (s, e, l.unwrap_or(50)),
        (Err(a), _, _) | (_, Err(a), _) | (_, _, Err(a)) => return a,
    };
    if !(1..=200).contains(&limit) {
        return param_error("params error: limit is invalid", now);
    }
    if category.parse_symbol(symbol).is_none() {
        return param_error("Not supported symbols", now);
    }
    // The cursor is the time the next page ends at.
    let cursor = match query.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.strip_prefix("t=").and_then(|t| t.parse::<i64>().ok()) {
            Some(t) => Some(t),
            None => return param_error("params error: cursor is invalid", now),
        },
    };
    let first = period.align_up(data.listed_at);
    let lo = start.map_or(first, |s| period.align_up(s)).max(first);
    let hi = period.align_down(
        [end, cursor, Some(now)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now),
    );
    let mut result = String::from("{\"symbol\":");
    result.push_str(&json_string(symbol));
    result.push_str(",\"category\":\"");
    result.push_str(category.name());
    result.push_str("\",\"list\":[");
    let mut t = hi;
    let mut n = 0;
    while t >= lo && n < limit {
        let Some(oi) = open_interest(category, symbol, t) else {
            break;
        };
        if n > 0 {
            result.push(',');
        }
        result.push_str("{\"openInterest\":\"");
        result.push_str(&oi);
        result.push_str("\",\"timestamp\":\"");
        push_i64(&mut result, t);
        result.push_str("\"}");
        n += 1;
        t = period.prev_open(t);
    }
    result.push_str("],\"nextPageCursor\":\"");
    if t >= lo {
        result.push_str("t=");
        push_i64(&mut result, t);
    }
    result.push_str("\"}");
    ok(now, &result)
}
