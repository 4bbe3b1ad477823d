//! The futures-only series of the USD-M and COIN-M markets, as pure functions of the market,
//! the symbol and the time, like everything in [`crate::data`] (which re-exports the public
//! ones): mark, index and premium-index prices and their klines, funding rates, open interest,
//! the long/short ratios of `/futures/data/*` and the `metrics` archive, and liquidations.
//!
//! The model:
//! - the mark price changes once a second (Binance publishes it every second): it is the
//!   symbol's noise-free price at the start of the second, rounded to the tick, so it follows
//!   the trades smoothly; the index is the mark minus a small basis (a few basis points that
//!   drift over hours), the premium index is that basis as a ratio (`"0.00012345"`);
//! - mark/index/premium candles open at the value of their open time and close at the value of
//!   their close time (the last second of the candle), high and low are the extremes of those
//!   and three samples inside the candle; their volume-type columns are zero;
//! - funding happens every 8 h at 00:00, 08:00 and 16:00 UTC from the listing on; funding `k`
//!   (settled at `k × 8 h`) has a hashed rate (often the 0.01 % baseline) and a `fundingTime`
//!   of `k × 8 h` plus a hashed 0–9 ms, since Binance's are not exactly on the grid;
//! - open interest and the three long/short ratios are smooth functions of time sampled at
//!   period-aligned timestamps; long + short = 1 with 4 decimals, ratio = long / short;
//! - a liquidation happens in about 6 % of the seconds of a symbol (a few a minute), at most
//!   one a second, at a price about half a percent beyond the mark.

use std::f64::consts::TAU;

use kline_interval::Interval;

use crate::data::{hash, mix, unit, Kline, Market};
use crate::fmt::{fixed4, fixed8, SCALE};
use crate::market::SimMarket;

/// Funding happens every 8 hours (00:00, 08:00, 16:00 UTC).
pub const FUNDING_INTERVAL_MS: i64 = 8 * 3_600_000;
/// `/futures/data/*` keeps this much history (30 days).
pub const FUTURES_DATA_RETENTION_MS: i64 = 30 * 86_400_000;
/// The `metrics` archive has one row per this many milliseconds.
pub const METRICS_PERIOD_MS: i64 = 300_000;

const SALT_BASIS: u64 = 0x21;
const SALT_FUNDING: u64 = 0x22;
const SALT_OI: u64 = 0x23;
const SALT_RATIO: u64 = 0x24;
const SALT_LIQ: u64 = 0x25;

/// One funding event, as `/fapi/v1/fundingRate` and `/dapi/v1/fundingRate` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FundingRate {
    pub symbol: String,
    /// The 8-hour mark plus 0–9 ms.
    pub funding_time: i64,
    /// 8 decimals (`"0.00010000"`); also the `r` of the markPrice stream before the funding.
    pub funding_rate: String,
    /// The mark price at `funding_time` (USD-M rows only carry it).
    pub mark_price: String,
}

/// Open interest at one timestamp (`/futures/data/openInterestHist`, `metrics` archive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenInterest {
    pub timestamp: i64,
    /// Base asset (USD-M) or contracts (COIN-M), 8 decimals.
    pub sum_open_interest: String,
    /// Quote asset (USD-M) or base asset (COIN-M), 8 decimals.
    pub sum_open_interest_value: String,
}

/// One long/short ratio: `long` + `short` = 1, `ratio` = long / short, 4 decimals each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub long_short_ratio: String,
    pub long: String,
    pub short: String,
}

/// The long/short series at one timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongShortRatios {
    pub timestamp: i64,
    /// `globalLongShortAccountRatio` (metrics `count_long_short_ratio`).
    pub global_account: Ratio,
    /// `topLongShortAccountRatio` (metrics `count_toptrader_long_short_ratio`).
    pub top_account: Ratio,
    /// `topLongShortPositionRatio` (metrics `sum_toptrader_long_short_ratio`).
    pub top_position: Ratio,
    /// Taker buy/sell volume ratio (metrics `sum_taker_long_short_vol_ratio`), 4 decimals.
    pub taker_buy_sell: String,
}

/// One liquidation order as the `@forceOrder` stream shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liquidation {
    pub symbol: String,
    /// `SELL` (a long liquidated) or `BUY`.
    pub side: &'static str,
    pub qty: String,
    pub price: String,
    pub avg_price: String,
    pub time: i64,
}

/// The market of a symbol, or on COIN-M of a pair (`BTCUSD` means `BTCUSD_PERP`).
pub(crate) fn market_of(market: SimMarket, symbol_or_pair: &str) -> Market {
    if market == SimMarket::CoinM && !symbol_or_pair.ends_with("_PERP") {
        return Market::of(market, &format!("{symbol_or_pair}_PERP"));
    }
    Market::of(market, symbol_or_pair)
}

// ---------------------------------------------------------------------------------------------
// Mark, index and premium index

#[inline]
fn second_of(t: i64) -> i64 {
    t.div_euclid(1000) * 1000
}

/// The basis (mark / index - 1) at the second of `t`: a slow drift of a few basis points plus
/// a little noise per second.
fn basis(m: &Market, t: i64) -> f64 {
    let s = second_of(t);
    let phase = TAU * unit(hash(m.seed, SALT_BASIS, u64::MAX));
    let slow = (s as f64 * TAU / (5.3 * 3_600_000.0) + phase).sin();
    let noise = unit(hash(m.seed, SALT_BASIS, (s / 1000) as u64)) - 0.5;
    0.0003 * slow + 0.00008 + 0.00004 * noise
}

/// The mark price at `t` in 1e-8 units.
pub(crate) fn mark_units(m: &Market, t: i64) -> i64 {
    m.round_tick(m.smooth_price_at(second_of(t)) * SCALE as f64)
}

/// The index price at `t` in 1e-8 units (not tick-rounded, like Binance's index).
pub(crate) fn index_units(m: &Market, t: i64) -> i64 {
    let mark = m.smooth_price_at(second_of(t));
    ((mark / (1.0 + basis(m, t))) * SCALE as f64)
        .round()
        .max(1.0) as i64
}

/// The premium index at `t` in 1e-8 units (a ratio: `12345` = `0.00012345`).
pub(crate) fn premium_units(m: &Market, t: i64) -> i64 {
    (basis(m, t) * SCALE as f64).round() as i64
}

/// The estimated settle price (`P` of the markPrice stream): the index at the start of the
/// current minute.
pub(crate) fn settle_units(m: &Market, t: i64) -> i64 {
    index_units(m, t.div_euclid(60_000) * 60_000)
}

/// Which price series a price kline follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PriceSeries {
    Mark,
    Index,
    Premium,
}

impl PriceSeries {
    fn at(self, m: &Market, t: i64) -> i64 {
        match self {
            PriceSeries::Mark => mark_units(m, t),
            PriceSeries::Index => index_units(m, t),
            PriceSeries::Premium => premium_units(m, t),
        }
    }
}

/// A price kline in 1e-8 units: `(open_time, open, high, low, close, close_time)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PriceKline {
    pub open_time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub close_time: i64,
}

/// The candle of `series` opened at `open_time`; when `now` falls inside it, the candle so far.
pub(crate) fn price_kline(
    m: &Market,
    series: PriceSeries,
    iv: Interval,
    open_time: i64,
    now: i64,
) -> PriceKline {
    let close_time = iv.close_time(open_time);
    let end = if now < close_time {
        now.max(open_time)
    } else {
        close_time
    };
    let open = series.at(m, open_time);
    let close = series.at(m, end);
    let (mut high, mut low) = (open.max(close), open.min(close));
    for k in 1..=3 {
        let v = series.at(m, open_time + (end - open_time) * k / 4);
        high = high.max(v);
        low = low.min(v);
    }
    PriceKline {
        open_time,
        open,
        high,
        low,
        close,
        close_time,
    }
}

fn price_kline_public(m: &Market, series: PriceSeries, iv: Interval, open_time: i64) -> Kline {
    let k = price_kline(m, series, iv, open_time, i64::MAX);
    let zero = || "0".to_string();
    Kline {
        open_time: k.open_time,
        open: fixed8(k.open),
        high: fixed8(k.high),
        low: fixed8(k.low),
        close: fixed8(k.close),
        volume: zero(),
        close_time: k.close_time,
        quote_volume: zero(),
        trades: 0,
        taker_buy_base: zero(),
        taker_buy_quote: zero(),
    }
}

/// The mark price of `symbol` at `t` (what the markPrice stream shows as `p` for the second of
/// `t`), 8 decimals.
pub fn mark_price(market: SimMarket, symbol: &str, t: i64) -> String {
    fixed8(mark_units(&market_of(market, symbol), t))
}

/// The index price at `t` (`i` of the markPrice stream). On COIN-M `symbol` may be the pair.
pub fn index_price(market: SimMarket, symbol: &str, t: i64) -> String {
    fixed8(index_units(&market_of(market, symbol), t))
}

/// The premium index at `t`, 8 decimals (`"0.00012345"`, may be negative).
pub fn premium_index(market: SimMarket, symbol: &str, t: i64) -> String {
    fixed8(premium_units(&market_of(market, symbol), t))
}

/// The closed `markPriceKlines` candle opened at `open_time` (volume-type columns `"0"`,
/// count 0).
pub fn mark_price_kline(market: SimMarket, symbol: &str, iv: Interval, open_time: i64) -> Kline {
    price_kline_public(&market_of(market, symbol), PriceSeries::Mark, iv, open_time)
}

/// The closed `indexPriceKlines` candle of `pair` (USD-M: the symbol; COIN-M: `BTCUSD`).
pub fn index_price_kline(market: SimMarket, pair: &str, iv: Interval, open_time: i64) -> Kline {
    price_kline_public(&market_of(market, pair), PriceSeries::Index, iv, open_time)
}

/// The closed `premiumIndexKlines` candle opened at `open_time`.
pub fn premium_index_kline(market: SimMarket, symbol: &str, iv: Interval, open_time: i64) -> Kline {
    price_kline_public(
        &market_of(market, symbol),
        PriceSeries::Premium,
        iv,
        open_time,
    )
}

// ---------------------------------------------------------------------------------------------
// Funding

/// The time of funding `k` (settled at the 8-hour mark `k × 8 h`): the mark plus 0–9 ms.
pub(crate) fn funding_time(m: &Market, k: i64) -> i64 {
    k * FUNDING_INTERVAL_MS + (hash(m.seed, SALT_FUNDING, !(k as u64)) % 10) as i64
}

/// The rate of funding `k` in 1e-8 units: a third of them the 0.01 % baseline, the others
/// between -0.005 % and 0.025 %.
pub(crate) fn funding_units(m: &Market, k: i64) -> i64 {
    let h = hash(m.seed, SALT_FUNDING, k as u64);
    if h % 3 == 0 {
        10_000
    } else {
        10_000 + ((unit(mix(h)) - 0.5) * 30_000.0) as i64
    }
}

/// The index `k` of the next funding after `t` (strictly: at an 8-hour mark, the one after).
pub(crate) fn next_funding_index(t: i64) -> i64 {
    t.div_euclid(FUNDING_INTERVAL_MS) + 1
}

/// The first funding index of a market listed at `listed_at` (the first mark at or after it).
pub(crate) fn first_funding_index(listed_at: i64) -> i64 {
    -(-listed_at).div_euclid(FUNDING_INTERVAL_MS)
}

/// The smallest funding index whose funding time is `>= t`.
pub(crate) fn funding_index_at_or_after(m: &Market, t: i64) -> i64 {
    let mut k = (t - 10).div_euclid(FUNDING_INTERVAL_MS);
    while funding_time(m, k) < t {
        k += 1;
    }
    k
}

/// The largest funding index whose funding time is `<= t`.
pub(crate) fn funding_index_at_or_before(m: &Market, t: i64) -> i64 {
    let mut k = t.div_euclid(FUNDING_INTERVAL_MS);
    while funding_time(m, k) > t {
        k -= 1;
    }
    k
}

fn funding_public(market: SimMarket, symbol: &str, m: &Market, k: i64) -> FundingRate {
    let time = funding_time(m, k);
    FundingRate {
        symbol: symbol.to_string(),
        funding_time: time,
        funding_rate: fixed8(funding_units(m, k)),
        mark_price: if market == SimMarket::UsdM {
            fixed8(mark_units(m, time))
        } else {
            String::new()
        },
    }
}

/// The funding of the period that contains `t`: the one settled at the first 8-hour mark after
/// `t`, whose rate the markPrice stream shows as `r` (with that mark as `T`) during the period.
/// `mark_price` is empty on COIN-M.
pub fn funding_rate(market: SimMarket, symbol: &str, t: i64) -> FundingRate {
    let m = market_of(market, symbol);
    funding_public(market, symbol, &m, next_funding_index(t))
}

/// Every funding with `start_ms <= fundingTime <= end_ms`, ascending (ignores the listing
/// time, which the server applies).
pub fn funding_rates(
    market: SimMarket,
    symbol: &str,
    start_ms: i64,
    end_ms: i64,
) -> Vec<FundingRate> {
    let m = market_of(market, symbol);
    let (lo, hi) = (
        funding_index_at_or_after(&m, start_ms),
        funding_index_at_or_before(&m, end_ms),
    );
    (lo..=hi)
        .map(|k| funding_public(market, symbol, &m, k))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Open interest and long/short ratios

/// Open interest at `t` in 1e-8 units (base asset or contracts) and its value (quote asset or,
/// on COIN-M, base asset).
pub(crate) fn open_interest_units(m: &Market, t: i64) -> (i64, i64) {
    let x = t as f64;
    let u = |i: u64| unit(hash(m.seed, SALT_OI, i));
    let usd = 10f64.powf(8.0 + 1.5 * u(0))
        * (0.25 * (x * TAU / (9.0 * 86_400_000.0) + TAU * u(1)).sin()
            + 0.06 * (x * TAU / (7.0 * 3_600_000.0) + TAU * u(2)).sin()
            + 0.004 * (unit(hash(m.seed, SALT_OI, t as u64 ^ (1 << 62))) - 0.5))
            .exp();
    let oi = m.to_steps(usd / m.qty_usd() * SCALE as f64, 1);
    let value = m.counter_units(oi, i128::from(mark_units(m, t)));
    (
        i64::try_from(oi).unwrap_or(i64::MAX),
        i64::try_from(value).unwrap_or(i64::MAX),
    )
}

/// The long share (1e-4 units, 1500..=8500) of ratio series `i` at `t`.
fn long_share(m: &Market, i: u64, t: i64) -> i64 {
    let x = t as f64;
    let u = |j: u64| unit(hash(m.seed, SALT_RATIO, i * 16 + j));
    let slow = (x * TAU / ((3.0 + 4.0 * u(0)) * 86_400_000.0) + TAU * u(1)).sin();
    let fast = (x * TAU / ((5.0 + 6.0 * u(2)) * 3_600_000.0) + TAU * u(3)).sin();
    let noise = unit(hash(m.seed, SALT_RATIO, (t as u64) ^ (i << 60))) - 0.5;
    let share = 0.5 + 0.08 * (u(4) - 0.5) + 0.15 * slow + 0.05 * fast + 0.01 * noise;
    ((share * 10_000.0).round() as i64).clamp(1500, 8500)
}

/// A ratio from a long share in 1e-4 units.
fn ratio_of(long: i64) -> Ratio {
    let short = 10_000 - long;
    Ratio {
        long_short_ratio: fixed4((long * 10_000 + short / 2) / short),
        long: fixed4(long),
        short: fixed4(short),
    }
}

/// Open interest of `symbol` (COIN-M: the symbol or the pair) at timestamp `t` — the value
/// `openInterestHist` reports for timestamp `t` and the `metrics` archive for its 5-minute rows.
pub fn open_interest(market: SimMarket, symbol: &str, t: i64) -> OpenInterest {
    let (oi, value) = open_interest_units(&market_of(market, symbol), t);
    OpenInterest {
        timestamp: t,
        sum_open_interest: fixed8(oi),
        sum_open_interest_value: fixed8(value),
    }
}

/// The long/short ratios of `symbol` (COIN-M: the symbol or the pair) at timestamp `t`.
pub fn long_short_ratios(market: SimMarket, symbol: &str, t: i64) -> LongShortRatios {
    let m = market_of(market, symbol);
    LongShortRatios {
        timestamp: t,
        global_account: ratio_of(long_share(&m, 0, t)),
        top_account: ratio_of(long_share(&m, 1, t)),
        top_position: ratio_of(long_share(&m, 2, t)),
        taker_buy_sell: fixed4(long_share(&m, 3, t) * 2),
    }
}

// ---------------------------------------------------------------------------------------------
// Liquidations

/// A liquidation in 1e-8 units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LiqUnits {
    pub sell: bool,
    pub qty: i64,
    pub price: i64,
    pub avg_price: i64,
    pub time: i64,
}

/// The liquidation of the second starting at `sec_ms`, if there is one.
pub(crate) fn liquidation_at(m: &Market, sec_ms: i64) -> Option<LiqUnits> {
    let h = hash(m.seed, SALT_LIQ, sec_ms as u64);
    if unit(h) >= 0.06 {
        return None;
    }
    let h2 = mix(h);
    let time = sec_ms + (h2 % 1000) as i64;
    let sell = (h2 >> 20) & 1 == 1;
    let mark = m.smooth_price_at(time) * SCALE as f64;
    let away = 0.002 + 0.006 * unit(mix(h2));
    let price = m.round_tick(mark * if sell { 1.0 - away } else { 1.0 + away });
    // The fill is a little better than the limit price.
    let avg_price = m.round_tick(
        mark * if sell {
            1.0 - away / 2.0
        } else {
            1.0 + away / 2.0
        },
    );
    let notional_usd = 10f64.powf(2.0 + 3.0 * unit(mix(h2 ^ 7)));
    let qty = m.to_steps(notional_usd / m.qty_usd() * SCALE as f64, 1);
    Some(LiqUnits {
        sell,
        qty: i64::try_from(qty).unwrap_or(i64::MAX),
        price,
        avg_price,
        time,
    })
}

/// Every liquidation of `symbol` with `start_ms <= time <= end_ms`, ascending (what
/// `<symbol>@forceOrder` pushes, one event each).
pub fn liquidations(
    market: SimMarket,
    symbol: &str,
    start_ms: i64,
    end_ms: i64,
) -> Vec<Liquidation> {
    let m = market_of(market, symbol);
    let mut out = Vec::new();
    let mut s = second_of(start_ms);
    while s <= end_ms {
        if let Some(l) = liquidation_at(&m, s).filter(|l| l.time >= start_ms && l.time <= end_ms) {
            out.push(Liquidation {
                symbol: symbol.to_string(),
                side: if l.sell { "SELL" } else { "BUY" },
                qty: fixed8(l.qty),
                price: fixed8(l.price),
                avg_price: fixed8(l.avg_price),
                time: l.time,
            });
        }
        s += 1000;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01

    #[test]
    fn prices_are_close_and_markets_differ() {
        for (market, sym) in [
            (SimMarket::UsdM, "BTCUSDT"),
            (SimMarket::CoinM, "BTCUSD_PERP"),
        ] {
            let m = market_of(market, sym);
            for i in 0..200 {
                let t = T0 + i * 61_001;
                let (mark, index) = (mark_units(&m, t) as f64, index_units(&m, t) as f64);
                assert!((mark / index - 1.0).abs() < 0.001, "{mark} {index}");
                assert!(premium_units(&m, t).abs() < 100_000);
                assert_eq!(mark_units(&m, t), mark_units(&m, second_of(t)));
            }
        }
        assert_ne!(
            mark_price(SimMarket::UsdM, "BTCUSDT", T0),
            mark_price(SimMarket::Spot, "BTCUSDT", T0)
        );
        assert_eq!(
            index_price(SimMarket::CoinM, "BTCUSD", T0),
            index_price(SimMarket::CoinM, "BTCUSD_PERP", T0)
        );
    }

    #[test]
    fn price_klines_bracket_their_samples() {
        let m = market_of(SimMarket::UsdM, "ETHUSDT");
        for series in [PriceSeries::Mark, PriceSeries::Index, PriceSeries::Premium] {
            let k = price_kline(&m, series, Interval::H1, T0, i64::MAX);
            assert!(k.high >= k.open.max(k.close) && k.low <= k.open.min(k.close));
            assert_eq!(k.close, series.at(&m, T0 + 3_599_999));
        }
    }

    #[test]
    fn funding_times_jitter_and_search() {
        let m = market_of(SimMarket::UsdM, "BTCUSDT");
        let mut exact = 0;
        for k in 0..100 {
            let kk = T0 / FUNDING_INTERVAL_MS + k;
            let t = funding_time(&m, kk);
            assert!((0..10).contains(&(t - kk * FUNDING_INTERVAL_MS)));
            exact += i32::from(t == kk * FUNDING_INTERVAL_MS);
            assert_eq!(funding_index_at_or_after(&m, t), kk);
            assert_eq!(funding_index_at_or_after(&m, t + 1), kk + 1);
            assert_eq!(funding_index_at_or_before(&m, t), kk);
            assert_eq!(funding_index_at_or_before(&m, t - 1), kk - 1);
        }
        assert!(exact < 30, "most funding times are off the grid");
        let rates = funding_rates(SimMarket::UsdM, "BTCUSDT", T0, T0 + 86_400_000);
        assert_eq!(rates.len(), 3);
        let f = funding_rate(SimMarket::UsdM, "BTCUSDT", T0 + 1);
        assert_eq!(f, rates[1]);
        assert_eq!(first_funding_index(T0), T0 / FUNDING_INTERVAL_MS);
        assert_eq!(first_funding_index(T0 + 1), T0 / FUNDING_INTERVAL_MS + 1);
    }

    #[test]
    fn ratios_add_up() {
        for i in 0..300 {
            let r = long_short_ratios(SimMarket::CoinM, "ETHUSD", T0 + i * METRICS_PERIOD_MS);
            for x in [&r.global_account, &r.top_account, &r.top_position] {
                let (l, s): (f64, f64) = (x.long.parse().unwrap(), x.short.parse().unwrap());
                assert!((l + s - 1.0).abs() < 1e-9);
                let ratio: f64 = x.long_short_ratio.parse().unwrap();
                assert!((ratio - l / s).abs() < 0.0001, "{x:?}");
                assert_eq!(x.long.len(), 6);
            }
        }
        let oi = open_interest(SimMarket::UsdM, "BTCUSDT", T0);
        assert!(oi.sum_open_interest.parse::<f64>().unwrap() > 0.0);
    }

    #[test]
    fn liquidations_are_sparse() {
        let day = liquidations(SimMarket::UsdM, "BTCUSDT", T0, T0 + 3_600_000 - 1);
        assert!(day.len() > 60 && day.len() < 600, "{}", day.len());
        assert!(day.windows(2).all(|w| w[0].time / 1000 < w[1].time / 1000));
    }
}
