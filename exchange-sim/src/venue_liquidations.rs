//! The liquidations of the Bybit and OKX venues, which their public WebSockets push (Bybit's
//! `allLiquidation.{symbol}`, [`crate::bybit_ws`]; OKX's `liquidation-orders`,
//! [`crate::okx_ws`]): pure functions of the venue's market of a symbol and the time, like
//! Binance's schedule in the `futures` module, each venue with a salt of its own. Public
//! through [`crate::data`] (and [`crate::bybit`], [`crate::okx`]): [`VenueLiquidation`],
//! [`bybit_liquidations`], [`okx_liquidations`], [`okx_liquidation_instruments`],
//! [`okx_liquidation_instruments_at`].
//!
//! Bybit (bybit-exchange.github.io/docs/v5/websocket/public/all-liquidation: "Push frequency:
//! 500ms", `S` "Position side": "When you receive a Buy update, this means that a long position
//! has been liquidated"): per symbol of `linear` and `inverse` and per half-second window
//! (aligned to the epoch), a hash of the symbol's seed, [`SALT_BYBIT`] and the window's start
//! gives about 20 % of the windows one liquidation, 5 % two and 2 % three; in about a third
//! of the windows with two or three, two of them share one millisecond (with opposite sides,
//! so different prices and sizes too), and otherwise no two of a window share a millisecond:
//! no two liquidations are ever identical in time, side, size and price. A window's
//! liquidations are ordered by time, a shared millisecond in the order they were drawn (the
//! same every time). The bankruptcy price is 0.2–0.8 % beyond the symbol's noise-free price
//! (the book's mid) on the losing side (below it for a long, `Buy`), on the tick; the size is
//! 100 to 100,000 USD worth in the symbol's lot steps (whole contracts on inverse), as
//! Binance's liquidations are drawn. Both print with 8 decimals, as the Bybit venue prints its
//! trades.
//!
//! OKX (www.okx.com/docs-v5/en/#public-data-websocket-liquidation-orders-channel: "each
//! contract will only show a maximum of one order per one-second period"): the channel covers
//! the instruments of [`okx_liquidation_instruments_at`]: the perpetuals [`OKX_SWAPS`], and for
//! each family of [`OKX_FUTURE_FAMILIES`] the current and the next quarterly future (delivered
//! at 08:00 UTC on the last Friday of March, June, September and December; from 2018 to 2030),
//! each from the delivery of the future two quarters before it until its own delivery. Per
//! instrument and second, about a quarter of the seconds have one liquidation, `ts` inside the
//! second. About 4 % of the seconds of an instrument type are a cascade: every instrument of
//! the type that has a liquidation then (half of them) has it at the same millisecond, so two
//! instruments' liquidations now and then come due together. `posSide` is `long` or `short`,
//! `side` the liquidation order's (`sell` for a long); `sz` whole contracts (at least one:
//! here a contract is a coin on linear instruments and a dollar on inverse ones), 1,000 to
//! about 300,000 USD worth; `bkPx` 0.2–0.8 % beyond the noise-free price on the losing side, on
//! the tick, without trailing zeros (as OKX prints prices).

use kline_interval::{civil_from_days, days_from_civil};

use crate::bybit::BybitCategory;
use crate::data::{hash, mix, unit, Market};
use crate::fmt::{fixed8, SCALE};
use crate::okx::OkxInstType;

/// The salt of Bybit's liquidation schedule.
pub const SALT_BYBIT: u64 = 0x4259_4c51_0000_0001;
/// The salt of OKX's liquidation schedule (per instrument).
pub const SALT_OKX: u64 = 0x4f4b_4c51_0000_0001;
/// The salt of OKX's cascade seconds (per instrument type).
const SALT_OKX_CASCADE: u64 = 0x4f4b_4c51_0000_0002;

/// Bybit's push interval of `allLiquidation` ("Push frequency: 500ms"); the schedule's windows.
pub const BYBIT_WINDOW_MS: i64 = 500;
/// The perpetuals OKX's `liquidation-orders` channel covers (`instType` `SWAP`).
pub const OKX_SWAPS: [&str; 5] = [
    "BTC-USDT-SWAP",
    "ETH-USDT-SWAP",
    "SOL-USDT-SWAP",
    "BTC-USD-SWAP",
    "ETH-USD-SWAP",
];
/// The families whose quarterly futures OKX's `liquidation-orders` channel covers (`instType`
/// `FUTURES`): `<family>-YYMMDD`.
pub const OKX_FUTURE_FAMILIES: [&str; 3] = ["BTC-USD", "ETH-USD", "BTC-USDT"];
/// The years of the quarterly futures the simulator lists.
const FUTURE_YEARS: std::ops::RangeInclusive<i64> = 2018..=2030;

const DAY_MS: i64 = 86_400_000;

/// One liquidation as a venue's stream shows it, strings as the venue writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VenueLiquidation {
    /// Bybit's `T`, OKX's `ts` (ms).
    pub time: i64,
    /// Bybit: the position's side `Buy` (a long liquidated) or `Sell`; OKX: the liquidation
    /// order's side `sell` (a long liquidated) or `buy`.
    pub side: String,
    /// Bybit's `v` (8 decimals, the symbol's quantity units), OKX's `sz` (whole contracts).
    pub size: String,
    /// The bankruptcy price: Bybit's `p` (8 decimals), OKX's `bkPx` (no trailing zeros).
    pub price: String,
    /// Bybit's `s` (`BTCUSDT`), OKX's `instId` (`BTC-USDT-SWAP`).
    pub symbol: String,
}

/// A liquidation in 1e-8 units (OKX: `qty` in whole contracts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LiqUnits {
    pub time: i64,
    /// A long position was liquidated.
    pub long: bool,
    pub qty: i64,
    pub price: i64,
}

/// The bankruptcy price at `time`: `away` (a fraction) beyond the noise-free price on the side
/// that lost, on the tick.
fn bankruptcy(m: &Market, time: i64, long: bool, away: f64) -> i64 {
    let price = m.smooth_price_at(time) * SCALE as f64;
    m.round_tick(price * if long { 1.0 - away } else { 1.0 + away })
}

// ---------------------------------------------------------------------------------------------
// Bybit

/// How many liquidations the window of hash `h` has.
fn bybit_count(h: u64) -> usize {
    match unit(h) {
        u if u < 0.02 => 3,
        u if u < 0.07 => 2,
        u if u < 0.27 => 1,
        _ => 0,
    }
}

/// The liquidations of the half-second window starting at `start` (a multiple of
/// [`BYBIT_WINDOW_MS`]) on market `m`: at most three, by time, a shared millisecond in drawing
/// order.
pub(crate) fn bybit_window(m: &Market, start: i64) -> Vec<LiqUnits> {
    let h = hash(m.seed, SALT_BYBIT, start as u64);
    let n = bybit_count(h);
    if n == 0 {
        return Vec::new();
    }
    let h2 = mix(h);
    let tie = n >= 2 && h2 % 3 == 0;
    let mut out: Vec<LiqUnits> = Vec::with_capacity(n);
    for i in 0..n {
        let hi = mix(h2 ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let twin = out.first().filter(|_| tie && i == 1);
        let (offset, long) = if let Some(first) = twin {
            // The same millisecond as the first, the other side.
            (first.time - start, !first.long)
        } else {
            let mut offset = (hi % BYBIT_WINDOW_MS as u64) as i64;
            while out.iter().any(|l| l.time - start == offset) {
                offset = (offset + 1) % BYBIT_WINDOW_MS;
            }
            (offset, (hi >> 40) & 1 == 1)
        };
        let time = start.saturating_add(offset);
        let away = 0.002 + 0.006 * unit(mix(hi ^ 0x11));
        let notional_usd = 10f64.powf(2.0 + 3.0 * unit(mix(hi ^ 0x22)));
        let qty = m.to_steps(notional_usd / m.qty_usd() * SCALE as f64, 1);
        out.push(LiqUnits {
            time,
            long,
            qty: i64::try_from(qty).unwrap_or(i64::MAX),
            price: bankruptcy(m, time, long, away),
        });
    }
    // Stable: a shared millisecond keeps the drawing order.
    out.sort_by_key(|l| l.time);
    out
}

/// A Bybit liquidation as `allLiquidation` writes it.
pub(crate) fn bybit_entry(symbol: &str, l: &LiqUnits) -> VenueLiquidation {
    VenueLiquidation {
        time: l.time,
        side: if l.long { "Buy" } else { "Sell" }.to_string(),
        size: fixed8(l.qty),
        price: fixed8(l.price),
        symbol: symbol.to_string(),
    }
}

/// Every liquidation of `symbol` in `category` with `start_ms <= T <= end_ms`, ascending by
/// `T` and, within a millisecond, in the order `allLiquidation.{symbol}` sends them (one
/// message per half-second window that has any). Empty on spot (Bybit has no spot
/// liquidations) and for a symbol the category does not list.
pub fn bybit_liquidations(
    category: BybitCategory,
    symbol: &str,
    start_ms: i64,
    end_ms: i64,
) -> Vec<VenueLiquidation> {
    if category == BybitCategory::Spot {
        return Vec::new();
    }
    let Some(m) = category.market(symbol) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut w = start_ms.div_euclid(BYBIT_WINDOW_MS) * BYBIT_WINDOW_MS;
    while w <= end_ms {
        for l in bybit_window(&m, w) {
            if (start_ms..=end_ms).contains(&l.time) {
                out.push(bybit_entry(symbol, &l));
            }
        }
        let Some(next) = w.checked_add(BYBIT_WINDOW_MS) else {
            break;
        };
        w = next;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// OKX

/// An instrument of OKX's `liquidation-orders` channel, with what its schedule needs.
#[derive(Clone, Debug)]
pub(crate) struct OkxLiqInst {
    pub inst_id: String,
    /// `instFamily` and `uly` (`BTC-USDT`).
    pub family: String,
    pub kind: OkxInstType,
    pub market: Market,
    /// Liquidations happen at `live.0 <= ts < live.1` (a future's listing and delivery).
    pub live: (i64, i64),
}

/// The quarter `q` (`year × 4 + 0..=3`) as `(year, month of its delivery)`.
fn quarter_month(q: i64) -> (i64, u32) {
    (q.div_euclid(4), 3 * (q.rem_euclid(4) as u32 + 1))
}

/// The delivery of the quarterly future of quarter `q`: 08:00 UTC on the last Friday of the
/// quarter's last month.
fn delivery_ms(q: i64) -> i64 {
    let (y, m) = quarter_month(q);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let last = days_from_civil(ny, nm, 1) - 1;
    // 1970-01-01 was a Thursday: weekday 0 = Sunday … 5 = Friday.
    let weekday = (last + 4).rem_euclid(7);
    let friday = last - (weekday - 5).rem_euclid(7);
    friday.saturating_mul(DAY_MS).saturating_add(8 * 3_600_000)
}

/// The quarter of the first quarterly delivery after `t`.
fn first_quarter_after(t: i64) -> i64 {
    let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
    let q = y * 4 + i64::from((m - 1) / 3);
    if delivery_ms(q) > t {
        q
    } else {
        q + 1
    }
}

fn listed_quarter(q: i64) -> bool {
    FUTURE_YEARS.contains(&quarter_month(q).0)
}

/// `BTC-USD-260327`.
fn future_id(family: &str, q: i64) -> String {
    let (y, m, d) = civil_from_days(delivery_ms(q).div_euclid(DAY_MS));
    format!("{family}-{:02}{m:02}{d:02}", y.rem_euclid(100))
}

/// The quarter of a listed quarterly future `<family>-YYMMDD`, if it is one.
fn future_quarter(inst_id: &str) -> Option<(&str, i64)> {
    let (family, date) = inst_id.rsplit_once('-')?;
    if !OKX_FUTURE_FAMILIES.contains(&family) || date.len() != 6 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| date.get(r)?.parse::<i64>().ok();
    let (y, m) = (2000 + num(0..2)?, num(2..4)?);
    if ![3, 6, 9, 12].contains(&m) {
        return None;
    }
    let q = y * 4 + m / 3 - 1;
    (listed_quarter(q) && future_id(family, q) == inst_id).then_some((family, q))
}

/// The instrument `inst_id` if the channel ever covers it.
pub(crate) fn okx_inst(inst_id: &str) -> Option<OkxLiqInst> {
    let (kind, family, live) = if OKX_SWAPS.contains(&inst_id) {
        let family = inst_id.strip_suffix("-SWAP")?;
        (OkxInstType::Swap, family, (i64::MIN, i64::MAX))
    } else {
        let (family, q) = future_quarter(inst_id)?;
        let live = (delivery_ms(q - 2), delivery_ms(q));
        (OkxInstType::Futures, family, live)
    };
    Some(OkxLiqInst {
        inst_id: inst_id.to_string(),
        family: family.to_string(),
        kind,
        market: kind.market(inst_id)?,
        live,
    })
}

/// The instrument type `liquidation-orders` serves by this `instType` (`SWAP`, `FUTURES`).
pub(crate) fn okx_liq_type(inst_type: &str) -> Option<OkxInstType> {
    match inst_type {
        "SWAP" => Some(OkxInstType::Swap),
        "FUTURES" => Some(OkxInstType::Futures),
        _ => None,
    }
}

/// The ids of the instruments of `kind` the channel covers at `t`.
fn covered_ids(kind: OkxInstType, t: i64) -> Vec<String> {
    match kind {
        OkxInstType::Swap => OKX_SWAPS.iter().map(|s| s.to_string()).collect(),
        OkxInstType::Futures => {
            let q = first_quarter_after(t);
            [q, q + 1]
                .into_iter()
                .filter(|q| listed_quarter(*q))
                .flat_map(|q| OKX_FUTURE_FAMILIES.iter().map(move |f| future_id(f, q)))
                .collect()
        }
        OkxInstType::Spot => Vec::new(),
    }
}

/// What decides which instruments of `kind` the channel covers at `t` (the same key, the same
/// instruments): the quarter of the first delivery after `t` for futures.
pub(crate) fn okx_cover_key(kind: OkxInstType, t: i64) -> i64 {
    match kind {
        OkxInstType::Futures => first_quarter_after(t),
        _ => 0,
    }
}

/// The instruments of `kind` the channel covers at some time of `from..=to` (`to - from` well
/// under a quarter), in the order of [`okx_liquidation_instruments_at`].
pub(crate) fn okx_covered(kind: OkxInstType, from: i64, to: i64) -> Vec<OkxLiqInst> {
    let mut ids = covered_ids(kind, from);
    for id in covered_ids(kind, to) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.iter().filter_map(|id| okx_inst(id)).collect()
}

/// The salt of `kind`'s cascade seconds.
fn cascade_seed(kind: OkxInstType) -> u64 {
    match kind {
        OkxInstType::Spot => 0x4f4b_4341_0000_0001,
        OkxInstType::Swap => 0x4f4b_4341_0000_0002,
        OkxInstType::Futures => 0x4f4b_4341_0000_0003,
    }
}

/// The liquidation of `inst` in the second starting at `sec`, if there is one.
pub(crate) fn okx_liquidation_at(inst: &OkxLiqInst, sec: i64) -> Option<LiqUnits> {
    let m = &inst.market;
    let h = hash(m.seed, SALT_OKX, sec as u64);
    let c = hash(cascade_seed(inst.kind), SALT_OKX_CASCADE, sec as u64);
    let cascade = unit(c) < 0.04;
    let odds = if cascade { 0.5 } else { 0.25 };
    if unit(h) >= odds {
        return None;
    }
    let h2 = mix(h);
    let offset = if cascade { mix(c) % 1000 } else { h2 % 1000 } as i64;
    let time = sec.saturating_add(offset);
    if !(inst.live.0..inst.live.1).contains(&time) {
        return None;
    }
    let long = (h2 >> 20) & 1 == 1;
    let away = 0.002 + 0.006 * unit(mix(h2 ^ 0x11));
    let notional_usd = 10f64.powf(3.0 + 2.5 * unit(mix(h2 ^ 0x22)));
    let contracts = (notional_usd / m.qty_usd()).floor().max(1.0);
    Some(LiqUnits {
        time,
        long,
        qty: contracts.min(1e15) as i64,
        price: bankruptcy(m, time, long, away),
    })
}

/// A decimal of 1e-8 units without trailing zeros (`30000`, `0.01`), as OKX prints prices.
pub(crate) fn okx_dec(units: i64) -> String {
    let mut s = fixed8(units);
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// An OKX liquidation as `liquidation-orders` writes it (`side` the order's).
pub(crate) fn okx_entry(inst_id: &str, l: &LiqUnits) -> VenueLiquidation {
    VenueLiquidation {
        time: l.time,
        side: if l.long { "sell" } else { "buy" }.to_string(),
        size: l.qty.to_string(),
        price: okx_dec(l.price),
        symbol: inst_id.to_string(),
    }
}

/// Every liquidation of `inst_id` with `start_ms <= ts <= end_ms`, ascending (at most one a
/// second), as `liquidation-orders` pushes them: `side` the order's (`buy`/`sell`), `size` =
/// `sz`, `price` = `bkPx`, `time` = `ts`. Empty for an instrument the channel does not cover
/// ([`okx_liquidation_instruments`]), and for a future outside its life.
pub fn okx_liquidations(inst_id: &str, start_ms: i64, end_ms: i64) -> Vec<VenueLiquidation> {
    let Some(inst) = okx_inst(inst_id) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut sec = start_ms.div_euclid(1000) * 1000;
    while sec <= end_ms {
        if let Some(l) = okx_liquidation_at(&inst, sec) {
            if (start_ms..=end_ms).contains(&l.time) {
                out.push(okx_entry(inst_id, &l));
            }
        }
        let Some(next) = sec.checked_add(1000) else {
            break;
        };
        sec = next;
    }
    out
}

/// Every instrument `liquidation-orders` covers for `inst_type` (`SWAP`: [`OKX_SWAPS`];
/// `FUTURES`: every quarterly future of [`OKX_FUTURE_FAMILIES`] from 2018 to 2030, each
/// covered only while it is live, see [`okx_liquidation_instruments_at`]); empty for any other
/// type.
pub fn okx_liquidation_instruments(inst_type: &str) -> Vec<String> {
    match okx_liq_type(inst_type) {
        Some(OkxInstType::Swap) => covered_ids(OkxInstType::Swap, 0),
        Some(OkxInstType::Futures) => {
            let (first, last) = (*FUTURE_YEARS.start() * 4, *FUTURE_YEARS.end() * 4 + 3);
            (first..=last)
                .flat_map(|q| OKX_FUTURE_FAMILIES.iter().map(move |f| future_id(f, q)))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The instruments `liquidation-orders` covers for `inst_type` at `t_ms`: every perpetual, or
/// the current and next quarterly future of each family (the first two deliveries after
/// `t_ms`); empty for any other type.
pub fn okx_liquidation_instruments_at(inst_type: &str, t_ms: i64) -> Vec<String> {
    okx_liq_type(inst_type).map_or_else(Vec::new, |k| covered_ids(k, t_ms))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    const T0: i64 = 1_773_446_400_000; // 2026-03-14

    #[test]
    fn quarterly_deliveries_are_last_fridays() {
        // 2025-03-28, 2026-03-27, 2026-06-26, 2026-12-25 are the last Fridays of their months.
        let q = |y: i64, m: i64| y * 4 + m / 3 - 1;
        for (qq, id) in [
            (q(2025, 3), "BTC-USD-250328"),
            (q(2026, 3), "BTC-USD-260327"),
            (q(2026, 6), "BTC-USD-260626"),
            (q(2026, 12), "BTC-USD-261225"),
        ] {
            assert_eq!(future_id("BTC-USD", qq), id);
            assert_eq!(future_quarter(id), Some(("BTC-USD", qq)));
            let (y, m, d) = civil_from_days(delivery_ms(qq).div_euclid(DAY_MS));
            assert_eq!(
                delivery_ms(qq),
                days_from_civil(y, m, d) * DAY_MS + 8 * 3_600_000
            );
        }
        assert_eq!(
            okx_liquidation_instruments_at("FUTURES", T0),
            vec![
                "BTC-USD-260327",
                "ETH-USD-260327",
                "BTC-USDT-260327",
                "BTC-USD-260626",
                "ETH-USD-260626",
                "BTC-USDT-260626"
            ]
        );
        assert_eq!(okx_liquidation_instruments("FUTURES").len(), 13 * 4 * 3);
        assert!(okx_liquidation_instruments("FUTURES").contains(&"ETH-USD-250328".to_string()));
        assert_eq!(okx_liquidation_instruments("SWAP").len(), OKX_SWAPS.len());
        assert!(okx_liquidation_instruments("SPOT").is_empty());
        assert!(okx_liquidation_instruments_at("MARGIN", T0).is_empty());
        // Not quarterlies, not covered families, not listed years.
        for id in [
            "BTC-USD-260320",
            "SOL-USD-260327",
            "BTC-USD-350330",
            "BTC-USDT",
            "BTC-USDC-SWAP",
        ] {
            assert!(okx_inst(id).is_none(), "{id}");
            assert!(okx_liquidations(id, T0, T0 + 600_000).is_empty(), "{id}");
        }
        // A future liquidates from the delivery two quarters before it until its own.
        let delivery = delivery_ms(q(2026, 3));
        let last = okx_liquidations("BTC-USD-260327", delivery - 3_600_000, delivery + 3_600_000);
        assert!(!last.is_empty() && last.iter().all(|l| l.time < delivery));
        let listing = delivery_ms(q(2025, 9));
        let first = okx_liquidations("BTC-USD-260327", listing - 3_600_000, listing + 3_600_000);
        assert!(!first.is_empty() && first.iter().all(|l| l.time >= listing));
    }

    #[test]
    fn bybit_schedule_has_its_density_ties_and_no_duplicates() {
        let span = 6 * 3_600_000;
        for (category, symbol) in [
            (BybitCategory::Linear, "BTCUSDT"),
            (BybitCategory::Inverse, "ETHUSD"),
        ] {
            let all = bybit_liquidations(category, symbol, T0, T0 + span - 1);
            assert_eq!(all, bybit_liquidations(category, symbol, T0, T0 + span - 1));
            let mut per_window: BTreeMap<i64, Vec<&VenueLiquidation>> = BTreeMap::new();
            for l in &all {
                per_window
                    .entry(l.time / BYBIT_WINDOW_MS)
                    .or_default()
                    .push(l);
            }
            let windows = (span / BYBIT_WINDOW_MS) as f64;
            let with = |n: usize| per_window.values().filter(|v| v.len() == n).count() as f64;
            let (one, two, three) = (with(1) / windows, with(2) / windows, with(3) / windows);
            assert!((0.18..0.22).contains(&one), "{one}");
            assert!((0.04..0.06).contains(&two), "{two}");
            assert!((0.015..0.025).contains(&three), "{three}");
            assert!(per_window.values().all(|v| v.len() <= 3));
            let multi: Vec<_> = per_window.values().filter(|v| v.len() > 1).collect();
            let tied = multi
                .iter()
                .filter(|v| v.windows(2).any(|w| w[0].time == w[1].time))
                .count() as f64;
            let share = tied / multi.len() as f64;
            assert!((0.25..0.42).contains(&share), "{share}");
            assert!(all.windows(2).all(|w| w[0].time <= w[1].time));
            let distinct: HashSet<_> = all
                .iter()
                .map(|l| (l.time, l.side.clone(), l.size.clone(), l.price.clone()))
                .collect();
            assert_eq!(distinct.len(), all.len(), "no two identical");
            // Prices beyond the noise-free price on the losing side, on the tick; sizes in
            // steps.
            let m = category.market(symbol).unwrap();
            let units = |s: &str| -> i64 { s.replace('.', "").parse().unwrap() };
            for l in &all {
                assert_eq!(l.symbol, symbol);
                let (p, v) = (units(&l.price), units(&l.size));
                assert_eq!(p % m.tick_units(), 0);
                assert!(v > 0 && v % m.step_units() == 0, "{l:?}");
                let mid = m.smooth_price_at(l.time) * SCALE as f64;
                let away = (p as f64 - mid) / mid;
                match l.side.as_str() {
                    "Buy" => assert!((-0.0081..=-0.0019).contains(&away), "{l:?} {away}"),
                    "Sell" => assert!((0.0019..=0.0081).contains(&away), "{l:?} {away}"),
                    other => panic!("side {other}"),
                }
            }
            if category == BybitCategory::Inverse {
                assert!(all.iter().all(|l| l.size.ends_with(".00000000")));
            }
        }
        assert!(bybit_liquidations(BybitCategory::Spot, "BTCUSDT", T0, T0 + 600_000).is_empty());
        assert!(bybit_liquidations(BybitCategory::Linear, "BTCUSD", T0, T0 + 600_000).is_empty());
        // Another symbol, another schedule; the bounds are inclusive.
        let a = bybit_liquidations(BybitCategory::Linear, "BTCUSDT", T0, T0 + 60_000);
        let b = bybit_liquidations(BybitCategory::Linear, "ETHUSDT", T0, T0 + 60_000);
        assert_ne!(
            a.iter().map(|l| l.time).collect::<Vec<_>>(),
            b.iter().map(|l| l.time).collect::<Vec<_>>()
        );
        let t = a[0].time;
        assert_eq!(
            bybit_liquidations(BybitCategory::Linear, "BTCUSDT", t, t)[0],
            a[0]
        );
    }

    #[test]
    fn okx_schedule_has_its_density_and_cascades() {
        let span = 3_600_000;
        let mut by_time: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for inst in okx_liquidation_instruments_at("SWAP", T0)
            .into_iter()
            .chain(okx_liquidation_instruments_at("FUTURES", T0))
        {
            let all = okx_liquidations(&inst, T0, T0 + span - 1);
            let share = all.len() as f64 / (span / 1000) as f64;
            assert!((0.23..0.29).contains(&share), "{inst}: {share}");
            assert!(
                all.windows(2).all(|w| w[0].time / 1000 < w[1].time / 1000),
                "{inst}: at most one a second, ascending"
            );
            let m = okx_inst(&inst).unwrap().market;
            for l in &all {
                assert_eq!(l.symbol, inst);
                let sz: i64 = l.size.parse().unwrap();
                assert!(sz >= 1, "{l:?}");
                assert!(!l.price.ends_with('0') || !l.price.contains('.'), "{l:?}");
                let p = (l.price.parse::<f64>().unwrap() * SCALE as f64).round() as i64;
                assert_eq!(p % m.tick_units(), 0, "{l:?}");
                let mid = m.smooth_price_at(l.time) * SCALE as f64;
                let away = (p as f64 - mid) / mid;
                match l.side.as_str() {
                    "sell" => assert!((-0.0081..=-0.0019).contains(&away), "{l:?}"),
                    "buy" => assert!((0.0019..=0.0081).contains(&away), "{l:?}"),
                    other => panic!("side {other}"),
                }
                by_time.entry(l.time).or_default().push(inst.clone());
            }
        }
        // Cascades: several instruments of a type at one millisecond, now and then.
        let shared = by_time.values().filter(|v| v.len() >= 2).count();
        assert!((30..400).contains(&shared), "{shared}");
    }
}
