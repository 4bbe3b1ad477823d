//! OKX's v5 REST market data, served under `/okx` ([`SimServer::okx_url`]), from the same
//! deterministic generator as the other venues but with data of its own (a salted seed per
//! instrument type), as OKX documents it (www.okx.com/docs-v5/en/):
//! - every answer is `{"code":"0","msg":"","data":[…]}`, or an error code (a string) and its
//!   message with `data` empty;
//! - `GET /api/v5/public/time`: `data:[{"ts":"…"}]` (the server clock, ms, a string);
//! - `GET /api/v5/public/instruments?instType=&instId=`: `instType` (`SPOT`, `SWAP`, `FUTURES`)
//!   is required (HTTP 400, code 51000 "Parameter instType error" otherwise); the instrument in
//!   `data` with `state` `live` when the type lists it, code 51001 when it does not (a future
//!   delivered before now among them: its candles are still served);
//! - `GET /api/v5/market/history-candles?instId=&bar=&after=&before=&limit=`: bars `1m 3m 5m
//!   15m 30m 1H 2H 4H` and the UTC-aligned `6Hutc 12Hutc 1Dutc 1Wutc 1Mutc` (the UTC+8 ones,
//!   `6H … 1M`, are refused here: a loader must never ask for them); `after` answers candles
//!   opened earlier than it, `before` later than it (both exclusive), the newest first and at
//!   most `limit` (default 100, at most 300; more is code 51000) of them, but never more than
//!   100: OKX answers history-candles 100 at a time for older ranges whatever `limit` says
//!   (freqtrade and ccxt measured it), so a client that asks for more loses candles here as it
//!   would there. Rows `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`, strings; `confirm`
//!   `0` for the candle still open. Spot: `vol` in the base coin, `volCcy` and `volCcyQuote` in
//!   the quote coin; contracts: `vol` in contracts, `volCcy` in the base coin, `volCcyQuote` in
//!   the quote coin. An instrument the type does not list: HTTP 200, code 51001;
//! - `GET /api/v5/public/funding-rate-history?instId=&after=&before=&limit=`: perpetuals
//!   (`SWAP`) only (code 51001 otherwise); settlements every 8 hours on the hour ([`funding`]),
//!   of the last three months only (92 days: older ones are not answered); `after`/`before`
//!   exclusive as for candles, the newest first, at most `limit` (default and most 400); rows
//!   `{instType, instId, formulaType, fundingRate, realizedRate, fundingTime, method}`, the
//!   settled rate in both;
//! - `GET /api/v5/rubik/stat/contracts/open-interest-history?instId=&period=&begin=&end=&limit=`:
//!   swaps and futures (code 51001 otherwise); periods `5m 15m 30m 1H 2H 4H 6Hutc 12Hutc 1Dutc`;
//!   the latest 1,440 periods only; `begin`/`end` exclusive, the newest first, at most `limit`
//!   (default and most 100); rows `[ts, oi, oiCcy, oiUsd]` ([`open_interest`]);
//! - requests are limited per endpoint, as OKX documents each ("Rate Limit: 20 requests per 2
//!   seconds", "Rate limit rule: IP"): history-candles and instruments 20, time and funding 10,
//!   in any 2 s
//!   (sliding, server clock); one more is HTTP 429, code 50011 "Too Many Requests". OKX
//!   documents no ban beyond that; [`OkxStats`] counts them.
//!
//! Instruments: spot `BASE-QUOTE` of what the Binance spot market takes (`BTC-USDT`); swap
//! `BASE-USDT-SWAP`, `BASE-USDC-SWAP` (linear) and `BASE-USD-SWAP` (inverse, of the COIN-M
//! bases, contracts of 1 USD here); futures the same with a `YYMMDD` delivery date for `SWAP`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use kline_interval::Interval;

use crate::data::{kline_units, mix, symbol_seed, Data, Kline, Market};
use crate::fmt::push_i64;
use crate::market::{SimMarket, COINM_BASES};
use crate::query::Query;
/// The liquidations of the `liquidation-orders` channel ([`crate::okx_ws`]), also in
/// [`crate::data`].
pub use crate::venue_liquidations::{
    okx_liquidation_instruments, okx_liquidation_instruments_at, okx_liquidations, VenueLiquidation,
};
use crate::SimClock;

/// The window every OKX limit is counted in: "per 2 seconds".
pub const WINDOW_MS: i64 = 2_000;

/// The limit of each endpoint this venue serves, in any [`WINDOW_MS`].
pub fn endpoint_limit(path: &str) -> Option<usize> {
    Some(match path {
        "/api/v5/market/history-candles"
        | "/api/v5/public/instruments"
        | "/api/v5/market/history-trades" => 20,
        "/api/v5/public/time"
        | "/api/v5/public/funding-rate-history"
        | "/api/v5/rubik/stat/contracts/open-interest-history" => 10,
        _ => return None,
    })
}

/// How far back history-trades answers: "the last 3 months", 92 days here.
pub const TRADES_HISTORY_MS: i64 = 92 * 86_400_000;

/// The most candles history-candles answers at once, whatever `limit` asks.
pub const CANDLES_ANSWERED: usize = 100;

/// An OKX instrument type (`instType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OkxInstType {
    Spot,
    Swap,
    Futures,
}

impl OkxInstType {
    pub const ALL: [OkxInstType; 3] = [OkxInstType::Spot, OkxInstType::Swap, OkxInstType::Futures];

    pub fn name(self) -> &'static str {
        match self {
            OkxInstType::Spot => "SPOT",
            OkxInstType::Swap => "SWAP",
            OkxInstType::Futures => "FUTURES",
        }
    }

    fn parse(s: &str) -> Option<OkxInstType> {
        OkxInstType::ALL.into_iter().find(|t| t.name() == s)
    }

    fn salt(self) -> u64 {
        match self {
            OkxInstType::Spot => 0x4f4b_5800_0000_0001,
            OkxInstType::Swap => 0x4f4b_5800_0000_0002,
            OkxInstType::Futures => 0x4f4b_5800_0000_0003,
        }
    }

    /// `(base, quote, contract size in USD)` of an instrument this type lists: the contract
    /// size is set on inverse contracts.
    pub fn parse_inst(self, inst_id: &str) -> Option<(&str, &str, Option<i64>)> {
        let mut parts = inst_id.split('-');
        let (base, quote) = (parts.next()?, parts.next()?);
        let suffix = parts.next();
        if parts.next().is_some() || base.is_empty() {
            return None;
        }
        let listed_pair = || {
            SimMarket::Spot
                .parse_symbol(&format!("{base}{quote}"))
                .ok()
                .is_some_and(|(b, q)| b == base && q == quote)
        };
        let contract = |suffix_ok: bool| -> Option<(&str, &str, Option<i64>)> {
            if !suffix_ok {
                return None;
            }
            match quote {
                "USDT" | "USDC" if listed_pair() => Some((base, quote, None)),
                "USD" if COINM_BASES.contains(&base) => Some((base, quote, Some(1))),
                _ => None,
            }
        };
        match self {
            OkxInstType::Spot if suffix.is_none() && listed_pair() => Some((base, quote, None)),
            OkxInstType::Spot => None,
            OkxInstType::Swap => contract(suffix == Some("SWAP")),
            OkxInstType::Futures => contract(
                suffix.is_some_and(|d| d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit())),
            ),
        }
    }

    /// The type an instrument id is of, by its form.
    pub fn of_inst(inst_id: &str) -> Option<OkxInstType> {
        OkxInstType::ALL
            .into_iter()
            .find(|t| t.parse_inst(inst_id).is_some())
    }

    pub(crate) fn market(self, inst_id: &str) -> Option<Market> {
        let (base, quote, contract) = self.parse_inst(inst_id)?;
        Some(Market::build(
            mix(symbol_seed(inst_id) ^ self.salt()),
            base,
            quote,
            contract,
        ))
    }
}

/// OKX's name of a bar this venue serves (UTC-aligned names only from 6 hours up).
pub fn bar_of(name: &str) -> Option<Interval> {
    Some(match name {
        "1m" => Interval::M1,
        "3m" => Interval::M3,
        "5m" => Interval::M5,
        "15m" => Interval::M15,
        "30m" => Interval::M30,
        "1H" => Interval::H1,
        "2H" => Interval::H2,
        "4H" => Interval::H4,
        "6Hutc" => Interval::H6,
        "12Hutc" => Interval::H12,
        "1Dutc" => Interval::D1,
        "1Wutc" => Interval::W1,
        "1Mutc" => Interval::Mo1,
        _ => return None,
    })
}

/// The candle of `inst_id` opened at `open_time`, as history-candles reports it once closed;
/// `None` for an instrument no type lists.
pub fn kline(data: &Data, inst_id: &str, interval: Interval, open_time: i64) -> Option<Kline> {
    let t = OkxInstType::of_inst(inst_id)?;
    let m = t.market(inst_id)?;
    Some(kline_units(&m, data, interval, open_time, i64::MAX).to_kline())
}

/// The funding interval of every perpetual in the simulator: 8 hours.
pub const FUNDING_INTERVAL_MS: i64 = 8 * 3_600_000;

/// How far back funding-rate-history answers: "up to three months", 92 days here.
pub const FUNDING_HISTORY_MS: i64 = 92 * 86_400_000;

/// Funding settlement `k` of the perpetual `inst_id` (at `k` × 8 h): its time and rate.
/// `None` for an instrument that is no perpetual.
pub fn funding(inst_id: &str, k: i64) -> Option<(i64, String)> {
    let m = OkxInstType::Swap.market(inst_id)?;
    Some((
        k * FUNDING_INTERVAL_MS,
        crate::fmt::fixed8(crate::futures::funding_units(&m, k)),
    ))
}

/// OKX's name of an open-interest period.
pub fn open_interest_period(name: &str) -> Option<Interval> {
    Some(match name {
        "5m" => Interval::M5,
        "15m" => Interval::M15,
        "30m" => Interval::M30,
        "1H" => Interval::H1,
        "2H" => Interval::H2,
        "4H" => Interval::H4,
        "6Hutc" => Interval::H6,
        "12Hutc" => Interval::H12,
        "1Dutc" => Interval::D1,
        _ => return None,
    })
}

/// Periods of open interest OKX keeps: "the latest 1440 entries".
pub const OPEN_INTEREST_KEPT: i64 = 1440;

/// Open interest of the contract `inst_id` at `t`: `(oi, oiCcy, oiUsd)` (contracts, the coin,
/// USD; here a contract is a coin on linear ones and a dollar on inverse ones). `None` for an
/// instrument that is no swap or future.
pub fn open_interest(inst_id: &str, t: i64) -> Option<(String, String, String)> {
    let kind = OkxInstType::of_inst(inst_id).filter(|k| *k != OkxInstType::Spot)?;
    let m = kind.market(inst_id)?;
    let (oi, value) = crate::futures::open_interest_units(&m, t);
    let (coin, usd) = (crate::fmt::fixed8(oi), crate::fmt::fixed8(value));
    let contracts = if market_is_inverse(inst_id) {
        usd.clone()
    } else {
        coin.clone()
    };
    Some((contracts, coin, usd))
}

/// Requests and answers of the OKX venue.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OkxStats {
    pub requests: u64,
    /// HTTP 429 answers (code 50011): over an endpoint's limit.
    pub responses_429: u64,
    /// Per endpoint, the most requests that arrived within any 2 s (sliding), refused ones
    /// included.
    pub max_in_window: BTreeMap<String, u64>,
    /// Requests per path (`"other"` for unknown ones).
    pub per_endpoint: BTreeMap<String, u64>,
}

/// The OKX venue's state: a window per endpoint, the counters.
#[derive(Default)]
pub(crate) struct OkxVenue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per endpoint, arrival times (server clock) within the last window.
    windows: BTreeMap<&'static str, VecDeque<i64>>,
    /// history-candles requests still to be refused as if other clients on the IP had spent
    /// the endpoint's limit ([`OkxVenue::spend_candle_limit_elsewhere`]).
    spent_elsewhere: u32,
    stats: OkxStats,
}

/// An answer: HTTP status and JSON body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
}

const CANDLES: &str = "/api/v5/market/history-candles";
const INSTRUMENTS: &str = "/api/v5/public/instruments";
const TIME: &str = "/api/v5/public/time";
const FUNDING: &str = "/api/v5/public/funding-rate-history";
const OPEN_INTEREST: &str = "/api/v5/rubik/stat/contracts/open-interest-history";
const TRADES: &str = "/api/v5/market/history-trades";

impl OkxVenue {
    pub fn stats(&self) -> OkxStats {
        self.lock().stats.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `requests` to history-candles are answered 429 (code 50011), as when other
    /// clients on the same IP spent the endpoint's limit.
    pub fn spend_candle_limit_elsewhere(&self, requests: u32) {
        self.lock().spent_elsewhere = requests;
    }

    /// Answers `path` (after `/okx`).
    pub fn handle(&self, path: &str, query: &Query, data: &Data, clock: &SimClock) -> Answer {
        let now = clock.now_ms();
        let endpoint = [CANDLES, INSTRUMENTS, TIME, FUNDING, OPEN_INTEREST, TRADES]
            .into_iter()
            .find(|p| *p == path);
        {
            let mut st = self.lock();
            st.stats.requests += 1;
            *st.stats
                .per_endpoint
                .entry(endpoint.unwrap_or("other").to_string())
                .or_default() += 1;
            if let Some(endpoint) = endpoint {
                let limit = endpoint_limit(endpoint).unwrap_or(usize::MAX);
                let window = st.windows.entry(endpoint).or_default();
                while window.front().is_some_and(|t| now - t >= WINDOW_MS) {
                    window.pop_front();
                }
                window.push_back(now);
                let in_window = window.len();
                let peak = st
                    .stats
                    .max_in_window
                    .entry(endpoint.to_string())
                    .or_default();
                *peak = (*peak).max(in_window as u64);
                let elsewhere = endpoint == CANDLES && st.spent_elsewhere > 0;
                if elsewhere {
                    st.spent_elsewhere -= 1;
                }
                if in_window > limit || elsewhere {
                    // A refused request still arrived; it stays in the window.
                    st.stats.responses_429 += 1;
                    return error(429, "50011", "Too Many Requests");
                }
            }
        }
        match endpoint {
            Some(TIME) => {
                let mut row = String::from("{\"ts\":\"");
                push_i64(&mut row, now);
                row.push_str("\"}");
                ok(&row)
            }
            Some(INSTRUMENTS) => instruments(query, now),
            Some(CANDLES) => candles(query, data, now),
            Some(FUNDING) => funding_history(query, data, now),
            Some(OPEN_INTEREST) => open_interest_history(query, data, now),
            Some(TRADES) => trades_history(query, data, now),
            _ => Answer {
                status: 404,
                body: "{\"code\":\"404\",\"msg\":\"Not Found\",\"data\":[]}".into(),
            },
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `{"code":"0","msg":"","data":[rows]}`.
fn ok(rows: &str) -> Answer {
    let mut body = String::with_capacity(rows.len() + 32);
    body.push_str("{\"code\":\"0\",\"msg\":\"\",\"data\":[");
    body.push_str(rows);
    body.push_str("]}");
    Answer { status: 200, body }
}

fn error(status: u16, code: &str, msg: &str) -> Answer {
    Answer {
        status,
        body: format!(
            "{{\"code\":\"{code}\",\"msg\":{},\"data\":[]}}",
            json_string(msg)
        ),
    }
}

/// Code 51000 "Parameter {name} error", HTTP 400.
fn param_error(name: &str) -> Answer {
    error(400, "51000", &format!("Parameter {name} error"))
}

/// Code 51001, HTTP 200: the instrument does not exist.
fn no_such_instrument() -> Answer {
    error(
        200,
        "51001",
        "Instrument ID, Instrument ID code or Spread ID doesn't exist.",
    )
}

/// Whether the future `inst_id` (`…-YYMMDD`) was delivered before `now`.
fn delivered(inst_id: &str, now: i64) -> bool {
    let Some(date) = inst_id.rsplit('-').next() else {
        return false;
    };
    let d = |r: std::ops::Range<usize>| date.get(r).and_then(|s| s.parse::<u32>().ok());
    let (Some(y), Some(m), Some(day)) = (d(0..2), d(2..4), d(4..6)) else {
        return false;
    };
    // Delivered at 08:00 UTC of its date.
    let at =
        kline_interval::days_from_civil(2000 + i64::from(y), m, day) * 86_400_000 + 8 * 3_600_000;
    at <= now
}

fn instruments(query: &Query, now: i64) -> Answer {
    let Some(inst_type) = query.get("instType").and_then(OkxInstType::parse) else {
        return param_error("instType");
    };
    let Some(inst_id) = query.get("instId") else {
        // The whole list is not served: the loader asks for its instruments one by one.
        return param_error("instId");
    };
    let Some((_, quote, contract)) = inst_type.parse_inst(inst_id) else {
        return no_such_instrument();
    };
    // Delivered futures are no longer listed (their candles are still served).
    if inst_type == OkxInstType::Futures && delivered(inst_id, now) {
        return no_such_instrument();
    }
    let mut row = format!(
        "{{\"instType\":\"{}\",\"instId\":{},\"state\":\"live\"",
        inst_type.name(),
        json_string(inst_id)
    );
    if inst_type != OkxInstType::Spot {
        let (ct_type, settle) = match contract {
            Some(_) => ("inverse", inst_id.split('-').next().unwrap_or("")),
            None => ("linear", quote),
        };
        row.push_str(&format!(
            ",\"ctType\":\"{ct_type}\",\"settleCcy\":\"{settle}\""
        ));
    }
    row.push('}');
    ok(&row)
}

fn candles(query: &Query, data: &Data, now: i64) -> Answer {
    let Some(inst_id) = query.get("instId").filter(|s| !s.is_empty()) else {
        return error(400, "50014", "Parameter instId can not be empty.");
    };
    let Some(interval) = bar_of(query.get("bar").unwrap_or("1m")) else {
        return param_error("bar");
    };
    let (after, before, limit) = match bounds(query, 100, 300) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some(market) = OkxInstType::of_inst(inst_id).and_then(|t| t.market(inst_id)) else {
        return no_such_instrument();
    };
    let contracts = OkxInstType::of_inst(inst_id) != Some(OkxInstType::Spot);
    let first = interval.align_up(data.listed_at);
    // Opened before `after` (exclusive), and not after now.
    let newest = interval.align_down(after.map_or(now, |a| (a - 1).min(now)));
    let mut rows = String::new();
    let mut t = newest;
    let mut n = 0usize;
    let cap = (limit as usize).min(CANDLES_ANSWERED);
    while t >= first && before.is_none_or(|b| t > b) && n < cap {
        let k = kline_units(&market, data, interval, t, now).to_kline();
        if n > 0 {
            rows.push(',');
        }
        rows.push_str("[\"");
        push_i64(&mut rows, k.open_time);
        let (vol_ccy, vol_quote) = match (contracts, market_is_inverse(inst_id)) {
            // Contracts of 1 USD: the base coin is the Binance-style quote volume, the USD
            // value the contracts themselves.
            (true, true) => (&k.quote_volume, &k.volume),
            (true, false) => (&k.volume, &k.quote_volume),
            (false, _) => (&k.quote_volume, &k.quote_volume),
        };
        for v in [
            &k.open, &k.high, &k.low, &k.close, &k.volume, vol_ccy, vol_quote,
        ] {
            rows.push_str("\",\"");
            rows.push_str(v);
        }
        rows.push_str(if interval.close_time(t) < now {
            "\",\"1\"]"
        } else {
            "\",\"0\"]"
        });
        n += 1;
        t = interval.prev_open(t);
    }
    ok(&rows)
}

/// The trade id of raw trade `raw` (OKX's ids start at 1).
pub fn trade_id(raw: u64) -> u64 {
    raw + 1
}

/// A trade as history-trades answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OkxTrade {
    pub trade_id: u64,
    pub time: i64,
    pub px: String,
    pub sz: String,
    /// The taker's side, `buy` or `sell`.
    pub side: &'static str,
}

/// Every trade of `inst_id` with time in `[start, end)`, oldest first (what a test expects of
/// a load); `None` for an instrument OKX does not have.
pub fn trades(data: &Data, inst_id: &str, start: i64, end: i64) -> Option<Vec<OkxTrade>> {
    let m = OkxInstType::of_inst(inst_id)?.market(inst_id)?;
    let mut units = Vec::new();
    if let Some(first) = data.agg_ceil_existing(&m, start) {
        let raw = crate::data::raw_range(&m, first).0;
        data.raw_from_id(&m, raw, end - 1, usize::MAX, &mut units);
    }
    Some(
        units
            .into_iter()
            .filter(|u| u.time >= start)
            .map(okx_trade)
            .collect(),
    )
}

fn okx_trade(t: crate::data::TradeUnits) -> OkxTrade {
    OkxTrade {
        trade_id: trade_id(t.id),
        time: t.time,
        px: crate::fmt::fixed8(t.price),
        sz: crate::fmt::fixed8(t.qty),
        // The taker's side: a taker that sells hits a buyer who made the market.
        side: if t.buyer_maker { "sell" } else { "buy" },
    }
}

/// history-trades: the trades before `after` (a trade id with `type` 1, the default, a time
/// with `type` 2), newest first, at most 100, of the last [`TRADES_HISTORY_MS`] only; with
/// `before` alone, the newest trades after that id or time.
fn trades_history(query: &Query, data: &Data, now: i64) -> Answer {
    let Some(inst_id) = query.get("instId").filter(|s| !s.is_empty()) else {
        return error(400, "50014", "Parameter instId can not be empty.");
    };
    let by_time = match query.get("type").unwrap_or("1") {
        "1" | "" => false,
        "2" => true,
        _ => return param_error("type"),
    };
    let (after, before, limit) = match bounds(query, 100, 100) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some(market) = OkxInstType::of_inst(inst_id).and_then(|t| t.market(inst_id)) else {
        return no_such_instrument();
    };
    let (mut at_most, mut until) = (u64::MAX, now);
    match after {
        Some(a) if by_time => until = until.min(a - 1),
        Some(a) if a <= 1 => return ok(""),
        Some(a) => at_most = a as u64 - 2,
        None => {}
    }
    let mut found = Vec::new();
    data.raw_descending(&market, at_most, until, limit as usize, &mut found);
    let oldest = now - TRADES_HISTORY_MS;
    let mut rows = String::new();
    let answered = found
        .into_iter()
        .filter(|t| t.time >= oldest)
        .map(okx_trade);
    for t in answered.filter(|t| match before {
        Some(b) if by_time => t.time > b,
        Some(b) => t.trade_id as i64 > b,
        None => true,
    }) {
        if !rows.is_empty() {
            rows.push(',');
        }
        rows.push_str("{\"instId\":");
        rows.push_str(&json_string(inst_id));
        rows.push_str(",\"tradeId\":\"");
        push_i64(&mut rows, t.trade_id as i64);
        rows.push_str("\",\"px\":\"");
        rows.push_str(&t.px);
        rows.push_str("\",\"sz\":\"");
        rows.push_str(&t.sz);
        rows.push_str("\",\"side\":\"");
        rows.push_str(t.side);
        rows.push_str("\",\"source\":\"0\",\"ts\":\"");
        push_i64(&mut rows, t.time);
        rows.push_str("\"}");
    }
    ok(&rows)
}

/// `after`, `before` and `limit` (by default `default`, at most `max_limit`), or the error
/// answer.
fn bounds(
    query: &Query,
    default: i64,
    max_limit: i64,
) -> Result<(Option<i64>, Option<i64>, i64), Answer> {
    named_bounds(query, ("after", "before"), default, max_limit)
}

/// [`bounds`] for an endpoint that names them otherwise (open interest: `end`, `begin`).
fn named_bounds(
    query: &Query,
    (older_than, newer_than): (&str, &str),
    default: i64,
    max_limit: i64,
) -> Result<(Option<i64>, Option<i64>, i64), Answer> {
    let number = |name: &str| match query.get(name) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| param_error(name)),
    };
    let (after, before, limit) = (number(older_than)?, number(newer_than)?, number("limit")?);
    let limit = limit.unwrap_or(default);
    if !(1..=max_limit).contains(&limit) {
        return Err(param_error("limit"));
    }
    Ok((after, before, limit))
}

fn funding_history(query: &Query, data: &Data, now: i64) -> Answer {
    let Some(inst_id) = query.get("instId").filter(|s| !s.is_empty()) else {
        return error(400, "50014", "Parameter instId can not be empty.");
    };
    let (after, before, limit) = match bounds(query, 400, 400) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if OkxInstType::Swap.parse_inst(inst_id).is_none() {
        return no_such_instrument();
    }
    let oldest = (now - FUNDING_HISTORY_MS).max(data.listed_at);
    let first = -(-oldest).div_euclid(FUNDING_INTERVAL_MS);
    // Settled before `after` (exclusive), and not after now.
    let newest = after
        .map_or(now, |a| (a - 1).min(now))
        .div_euclid(FUNDING_INTERVAL_MS);
    let mut rows = String::new();
    let mut k = newest;
    let mut n = 0;
    while k >= first && n < limit {
        let Some((time, rate)) = funding(inst_id, k) else {
            break;
        };
        if before.is_some_and(|b| time <= b) {
            break;
        }
        if n > 0 {
            rows.push(',');
        }
        rows.push_str("{\"instType\":\"SWAP\",\"instId\":");
        rows.push_str(&json_string(inst_id));
        rows.push_str(",\"formulaType\":\"noRate\",\"fundingRate\":\"");
        rows.push_str(&rate);
        rows.push_str("\",\"realizedRate\":\"");
        rows.push_str(&rate);
        rows.push_str("\",\"fundingTime\":\"");
        push_i64(&mut rows, time);
        rows.push_str("\",\"method\":\"current_period\"}");
        n += 1;
        k -= 1;
    }
    ok(&rows)
}

fn open_interest_history(query: &Query, data: &Data, now: i64) -> Answer {
    let Some(inst_id) = query.get("instId").filter(|s| !s.is_empty()) else {
        return error(400, "50014", "Parameter instId can not be empty.");
    };
    let Some(period) = open_interest_period(query.get("period").unwrap_or("5m")) else {
        return param_error("period");
    };
    let (end, begin, limit) = match named_bounds(query, ("end", "begin"), 100, 100) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if OkxInstType::of_inst(inst_id).is_none_or(|k| k == OkxInstType::Spot) {
        return no_such_instrument();
    }
    let newest_kept = period.align_down(now);
    let mut oldest_kept = newest_kept;
    for _ in 1..OPEN_INTEREST_KEPT {
        oldest_kept = period.prev_open(oldest_kept);
    }
    let first = oldest_kept.max(period.align_up(data.listed_at));
    let mut t = period.align_down(end.map_or(now, |e| (e - 1).min(now)));
    let mut rows = String::new();
    let mut n = 0;
    while t >= first && begin.is_none_or(|b| t > b) && n < limit {
        let Some((oi, coin, usd)) = open_interest(inst_id, t) else {
            break;
        };
        if n > 0 {
            rows.push(',');
        }
        rows.push_str("[\"");
        push_i64(&mut rows, t);
        for v in [&oi, &coin, &usd] {
            rows.push_str("\",\"");
            rows.push_str(v);
        }
        rows.push_str("\"]");
        n += 1;
        t = period.prev_open(t);
    }
    ok(&rows)
}

fn market_is_inverse(inst_id: &str) -> bool {
    inst_id.split('-').nth(1) == Some("USD")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruments_are_told_apart_by_their_form() {
        assert_eq!(OkxInstType::of_inst("BTC-USDT"), Some(OkxInstType::Spot));
        assert_eq!(
            OkxInstType::of_inst("BTC-USDT-SWAP"),
            Some(OkxInstType::Swap)
        );
        assert_eq!(
            OkxInstType::of_inst("BTC-USD-SWAP"),
            Some(OkxInstType::Swap)
        );
        assert_eq!(
            OkxInstType::of_inst("BTC-USD-250328"),
            Some(OkxInstType::Futures)
        );
        assert_eq!(OkxInstType::of_inst("BTCUSDT"), None);
        assert_eq!(OkxInstType::of_inst("FOO-USD-SWAP"), None);
        assert_eq!(OkxInstType::Spot.parse_inst("BTC-USDT-SWAP"), None);
    }

    /// Paging back from a time (`type` 2) and then by trade id (`type` 1) answers every trade
    /// once, newest first, the same trades `trades` lists; nothing older than three months.
    #[test]
    fn history_trades_pages_back_through_every_trade() {
        let data = Data::default();
        let now = 1_773_748_830_000;
        let (start, end) = (now - 3_600_000, now - 3_540_000);
        let want = trades(&data, "BTC-USDT", start, end).unwrap();
        assert!(want.len() > 300, "{}", want.len());
        let mut got = Vec::new();
        let mut query = format!("instId=BTC-USDT&type=2&after={end}&limit=100");
        loop {
            let a = trades_history(&Query::parse(Some(&query)), &data, now);
            assert_eq!(a.status, 200, "{}", a.body);
            let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
            let rows = body["data"].as_array().unwrap().clone();
            let last = rows.last().map(|r| {
                (
                    r["tradeId"].as_str().unwrap().to_string(),
                    r["ts"].as_str().unwrap().parse::<i64>().unwrap(),
                )
            });
            got.extend(rows.into_iter().filter_map(|r| {
                let ts = r["ts"].as_str()?.parse::<i64>().ok()?;
                (ts >= start).then(|| r["tradeId"].as_str().unwrap().parse::<u64>().unwrap())
            }));
            match last {
                Some((id, ts)) if ts >= start => {
                    query = format!("instId=BTC-USDT&after={id}&limit=100");
                }
                _ => break,
            }
        }
        got.reverse();
        let ids: Vec<u64> = want.iter().map(|t| t.trade_id).collect();
        assert_eq!(got, ids);
        // Older than three months: nothing.
        let old = now - TRADES_HISTORY_MS - 60_000;
        let a = trades_history(
            &Query::parse(Some(&format!("instId=BTC-USDT&type=2&after={old}"))),
            &data,
            now,
        );
        assert!(a.body.contains("\"data\":[]"), "{}", a.body);
    }
}
