//! Deterministic synthetic market data: the price path of every symbol, its klines, aggregate
//! trades, raw trades and order-book snapshots. Everything is a pure function of the symbol, the
//! time or id, and the [`Data`] settings, so tests can compute the records a loader should have
//! fetched without going through HTTP.
//!
//! The model:
//! - every symbol gets a base price (realistic for well-known assets, hashed otherwise), a tick
//!   size and a lot step; its price wanders smoothly around the base price through slow
//!   sinusoids (periods from ~47 minutes to ~173 days) plus a tiny per-millisecond noise;
//! - kline `n` opens at the price of its open time and closes at the price of the next open time,
//!   so the close of one candle equals the open of the next; high and low stretch beyond open and
//!   close by a hashed amount that grows with the candle length; its trade count is the number of
//!   raw trades in it (a candle without trades has no volume), so klines agree with the trades;
//! - aggregate trade `k` happens at `listed_at + k * spacing + jitter(k)` with
//!   `0 <= jitter < spacing`, so times never decrease; agg trades `2j` and `2j+1` together cover
//!   the raw trade ids `4j..=4j+3`, so raw ids are contiguous (except under missing agg ids);
//! - ids listed in [`Data::missing`] do not exist, nor do their raw trades;
//! - the order book changes once per 100 ms slot ([`BOOK_SLOT_MS`]): [`BOOK_LEVELS`] levels a
//!   side, one tick apart around the noise-free price, each level's quantity re-drawn every
//!   2 s at a hashed phase; slot `s` ends with update id `3s + 0..=2`, so update ids are
//!   contiguous and a diff between two slots' books is exactly what changed ([`order_book`]);
//!   futures slot `s` holds the ids `10s - 3 + 0..=2` to `10s + 0..=4` instead, so futures ids
//!   jump between events, as Binance's do (clients chain futures events by `pu`);
//! - each market ([`SimMarket`]) salts the symbol's seed, so `BTCUSDT` on USD-M has its own
//!   price path, trades and book, unlike spot's; COIN-M quantities are whole contracts (100 USD
//!   for BTC, 10 USD otherwise) and the "quote" amounts of its klines and trades are base-asset
//!   amounts (contracts × size / price);
//! - the futures-only series (mark, index and premium prices, funding, open interest, ratios,
//!   liquidations) live in the crate's `futures` module and are re-exported here;
//! - the Bybit and OKX venues' liquidations (their `allLiquidation` and `liquidation-orders`
//!   streams) live in the crate's `venue_liquidations` module and are re-exported here
//!   ([`bybit_liquidations`], [`okx_liquidations`], [`okx_liquidation_instruments`],
//!   [`okx_liquidation_instruments_at`], [`VenueLiquidation`]).
//!
//! All prices and quantities are printed with 8 decimals like Binance (`"16541.77000000"`).

use crate::fmt::{fixed8, push_fixed8_wide, SCALE};
pub use crate::futures::{
    funding_rate, funding_rates, index_price, index_price_kline, liquidations, long_short_ratios,
    mark_price, mark_price_kline, open_interest, premium_index, premium_index_kline, FundingRate,
    Liquidation, LongShortRatios, OpenInterest, Ratio, FUNDING_INTERVAL_MS,
    FUTURES_DATA_RETENTION_MS, METRICS_PERIOD_MS,
};
pub use crate::market::SimMarket;
pub use crate::venue_liquidations::{
    bybit_liquidations, okx_liquidation_instruments, okx_liquidation_instruments_at,
    okx_liquidations, VenueLiquidation,
};
use kline_interval::Interval;

/// Default first data time of every symbol: 2017-08-17T00:00:00Z.
pub const DEFAULT_LISTED_AT_MS: i64 = 1_502_928_000_000;
/// Default mean time between two aggregate trades.
pub const DEFAULT_AGG_TRADE_SPACING_MS: i64 = 250;

/// One kline as Binance reports it; decimals are strings with 8 places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kline {
    pub open_time: i64,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub close_time: i64,
    pub quote_volume: String,
    pub trades: u64,
    pub taker_buy_base: String,
    pub taker_buy_quote: String,
}

/// One aggregate trade as Binance reports it (`a`, `p`, `q`, `f`, `l`, `T`, `m`, `M`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggTrade {
    pub id: u64,
    pub price: String,
    pub qty: String,
    pub first_trade_id: u64,
    pub last_trade_id: u64,
    pub time: i64,
    pub is_buyer_maker: bool,
    pub is_best_match: bool,
}

/// One raw trade as `historicalTrades` reports it. On COIN-M, `qty` is in contracts and
/// `quote_qty` holds the `baseQty` (contracts × contract size / price); futures have no
/// `isBestMatch` (the field is always `true` here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trade {
    pub id: u64,
    pub price: String,
    pub qty: String,
    pub quote_qty: String,
    pub time: i64,
    pub is_buyer_maker: bool,
    pub is_best_match: bool,
}

// ---------------------------------------------------------------------------------------------
// Hashing

#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
pub(crate) fn hash(seed: u64, salt: u64, x: u64) -> u64 {
    mix(seed ^ mix(x ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93)))
}

/// A uniform number in `[0, 1)` from a hash.
#[inline]
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

pub(crate) fn symbol_seed(symbol: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in symbol.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

const SALT_PHASE: u64 = 1;
const SALT_NOISE: u64 = 2;
const SALT_KLINE: u64 = 3;
const SALT_AGG: u64 = 4;
const SALT_PAIR: u64 = 5;
const SALT_BOOK: u64 = 6;
const SALT_MARKET: u64 = 7;
const SALT_BOOK_IDS: u64 = 8;

// ---------------------------------------------------------------------------------------------
// Per-symbol market parameters and the price path

/// Rough US-dollar values of assets the simulator prices realistically.
fn known_usd(asset: &str) -> Option<f64> {
    Some(match asset {
        "BTC" => 30_000.0,
        "ETH" => 2_000.0,
        "BNB" => 300.0,
        "SOL" => 100.0,
        "LTC" => 80.0,
        "AVAX" => 30.0,
        "LINK" => 12.0,
        "DOT" => 6.0,
        "MATIC" => 0.8,
        "XRP" => 0.5,
        "ADA" => 0.4,
        "TRX" => 0.1,
        "DOGE" => 0.08,
        "USDT" | "USDC" | "FDUSD" | "BUSD" => 1.0,
        "EUR" => 1.08,
        "TRY" => 0.033,
        _ => return None,
    })
}

fn pow10(exp: i32) -> i64 {
    10i64.pow(exp as u32)
}

/// Angular speeds (radians per ms) of the four sinusoids of the price path.
const OMEGA: [f64; 4] = [
    std::f64::consts::TAU / (173.0 * 86_400_000.0),
    std::f64::consts::TAU / (23.0 * 86_400_000.0),
    std::f64::consts::TAU / (1.7 * 86_400_000.0),
    std::f64::consts::TAU / (47.0 * 60_000.0),
];
const AMPLITUDE: [f64; 4] = [0.35, 0.12, 0.03, 0.004];
const NOISE: f64 = 0.0004;

/// The market parameters of one symbol: its price path, tick size and lot step.
///
/// Any string gives a market (unknown assets get hashed prices); the server only builds markets
/// for symbols it accepts.
#[derive(Clone, Debug)]
pub struct Market {
    pub(crate) seed: u64,
    base_price: f64,
    /// US dollars one unit of quantity is worth: the base asset's value, or on COIN-M the
    /// contract size (quantities are in contracts there).
    qty_usd: f64,
    /// COIN-M contract size in USD.
    contract_size: Option<i64>,
    tick: i64,
    step: i64,
    quote_per_ms: f64,
    phase: [f64; 4],
}

impl Market {
    /// The spot market of `symbol`.
    pub fn new(symbol: &str) -> Market {
        Market::of(SimMarket::Spot, symbol)
    }

    /// The market of `symbol` on `market`. The futures markets salt the symbol's seed, so
    /// `BTCUSDT` has another price path (and other trades, books, …) on USD-M than on spot.
    pub fn of(market: SimMarket, symbol: &str) -> Market {
        let seed = match market.salt() {
            0 => symbol_seed(symbol),
            salt => mix(symbol_seed(symbol) ^ salt),
        };
        let (base, quote) = market.parse_symbol(symbol).unwrap_or((symbol, "USDT"));
        Market::build(seed, base, quote, market.contract_size(symbol))
    }

    /// A market of `base`/`quote` whose data follows `seed`; with `contract_size`, quantities
    /// are contracts worth that many US dollars (inverse contracts).
    pub(crate) fn build(seed: u64, base: &str, quote: &str, contract_size: Option<i64>) -> Market {
        let base_usd = known_usd(base)
            .unwrap_or_else(|| 10f64.powf(-2.0 + 5.0 * unit(hash(seed, SALT_MARKET, 0))));
        let quote_usd = known_usd(quote).unwrap_or(1.0);
        let base_price = base_usd / quote_usd;
        // About six significant digits of price, at most 8 decimals and at least 0.01.
        let magnitude = base_price.log10().floor() as i32;
        let tick = pow10((magnitude - 6).clamp(-8, -2) + 8);
        // A lot step worth about 0.1 to 1 US dollar.
        let mut step = pow10((-(base_usd.log10().floor() as i32) - 1).clamp(-8, 0) + 8);
        let mut qty_usd = base_usd;
        if let Some(cs) = contract_size {
            // COIN-M quantities are whole contracts.
            step = SCALE;
            qty_usd = cs as f64;
        }
        let usd_per_day = 10f64.powf(6.0 + 3.0 * unit(hash(seed, SALT_MARKET, 1)));
        let quote_per_ms = usd_per_day / quote_usd / 86_400_000.0;
        let mut phase = [0.0; 4];
        for (i, p) in phase.iter_mut().enumerate() {
            *p = std::f64::consts::TAU * unit(hash(seed, SALT_PHASE, i as u64));
        }
        Market {
            seed,
            base_price,
            qty_usd,
            contract_size,
            tick,
            step,
            quote_per_ms,
            phase,
        }
    }

    /// The unrounded price (in quote asset) at time `t`.
    #[inline]
    pub fn price_at(&self, t: i64) -> f64 {
        let noise = NOISE * (unit(hash(self.seed, SALT_NOISE, t as u64)) - 0.5);
        self.smooth_price_at(t) * (1.0 + noise)
    }

    /// The price at time `t` without the per-millisecond noise: the order book's mid price.
    #[inline]
    pub(crate) fn smooth_price_at(&self, t: i64) -> f64 {
        let x = t as f64;
        let mut w = 0.0;
        for i in 0..4 {
            w += AMPLITUDE[i] * (x * OMEGA[i] + self.phase[i]).sin();
        }
        self.base_price * w.exp()
    }

    /// The price at time `t` in 1e-8 units, rounded to the tick size (never below one tick).
    #[inline]
    pub fn price_units(&self, t: i64) -> i64 {
        self.round_tick(self.price_at(t) * SCALE as f64)
    }

    #[inline]
    pub(crate) fn round_tick(&self, units: f64) -> i64 {
        let ticks = (units / self.tick as f64).round() as i64;
        ticks.max(1) * self.tick
    }

    /// The tick size (price step) in 1e-8 units.
    pub fn tick_units(&self) -> i64 {
        self.tick
    }

    /// The lot step (quantity step) in 1e-8 units.
    pub fn step_units(&self) -> i64 {
        self.step
    }

    /// COIN-M contract size in USD, `None` on the other markets.
    pub fn contract_size(&self) -> Option<i64> {
        self.contract_size
    }

    /// The US-dollar value of one unit of quantity (base asset, or one COIN-M contract).
    pub(crate) fn qty_usd(&self) -> f64 {
        self.qty_usd
    }

    /// The other side of a quantity at a price, in 1e-8 units: the quote amount
    /// (`qty × price`), or on COIN-M the base amount (`contracts × size / price`).
    #[inline]
    pub(crate) fn counter_units(&self, qty: i128, price: i128) -> i128 {
        match self.contract_size {
            Some(cs) => qty * i128::from(cs) * i128::from(SCALE) / price.max(1),
            None => qty * price / i128::from(SCALE),
        }
    }

    /// Rounds an amount in 1e-8 units down to the lot step, keeping at least `min_steps`.
    #[inline]
    pub(crate) fn to_steps(&self, units: f64, min_steps: i128) -> i128 {
        let step = i128::from(self.step);
        ((units.max(0.0) as i128) / step).max(min_steps) * step
    }
}

// ---------------------------------------------------------------------------------------------
// Klines

/// A kline in fixed-point units, as the server renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KlineUnits {
    pub open_time: i64,
    pub close_time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i128,
    pub quote_volume: i128,
    pub trades: u64,
    pub taker_buy_base: i128,
    pub taker_buy_quote: i128,
}

impl KlineUnits {
    pub(crate) fn to_kline(self) -> Kline {
        let wide = |v: i128| {
            let mut s = String::with_capacity(24);
            push_fixed8_wide(&mut s, v);
            s
        };
        Kline {
            open_time: self.open_time,
            open: fixed8(self.open),
            high: fixed8(self.high),
            low: fixed8(self.low),
            close: fixed8(self.close),
            volume: wide(self.volume),
            close_time: self.close_time,
            quote_volume: wide(self.quote_volume),
            trades: self.trades,
            taker_buy_base: wide(self.taker_buy_base),
            taker_buy_quote: wide(self.taker_buy_quote),
        }
    }
}

/// Computes the candle opened at `open_time`; when `now` falls inside it, the candle is the
/// unclosed one Binance shows at `now` (close = price at `now`, volumes so far).
pub(crate) fn kline_units(
    m: &Market,
    data: &Data,
    interval: Interval,
    open_time: i64,
    now: i64,
) -> KlineUnits {
    let close_time = interval.close_time(open_time);
    let end = if now < close_time {
        now.max(open_time)
    } else {
        close_time + 1
    };
    let elapsed = (end - open_time).max(1);
    let open = m.price_units(open_time);
    let close = m.price_units(end);
    let h = hash(
        m.seed,
        SALT_KLINE,
        (open_time as u64) ^ ((interval as u64) << 58),
    );
    let u = |i: u64| unit(mix(h ^ i));
    let stretch = (0.0006 * (elapsed as f64 / 60_000.0).sqrt()).min(0.15);
    let tick = m.tick;
    let high_f = open.max(close) as f64 * (1.0 + stretch * u(1));
    let high = ((high_f / tick as f64).ceil() as i64 * tick).max(open.max(close));
    let low_f = open.min(close) as f64 * (1.0 - stretch * u(2));
    let low = ((low_f / tick as f64).floor() as i64 * tick)
        .min(open.min(close))
        .max(tick);
    let mean = i128::from(open + high + low + close) / 4;
    let quote_amount = m.quote_per_ms * elapsed as f64 * (0.4 + 1.2 * u(3));
    let volume = match m.contract_size {
        // COIN-M volumes are in contracts; the quote amount is in USD.
        Some(cs) => m.to_steps(quote_amount / cs as f64 * SCALE as f64, 1),
        None => m.to_steps(
            quote_amount / mean as f64 * (SCALE as f64 * SCALE as f64),
            1,
        ),
    };
    let quote_volume = m.counter_units(volume, mean);
    // The trades of the candle are the server's own: a candle without any (a quiet or
    // delisted symbol, missing ids) has no volume, as on Binance, so that clients may look for
    // trades through klines.
    let trades = data.raw_count(m, open_time, end - 1);
    let (volume, quote_volume) = if trades == 0 {
        (0, 0)
    } else {
        (volume, quote_volume)
    };
    let taker_buy_base = m
        .to_steps(volume as f64 * (0.3 + 0.4 * u(5)), 0)
        .min(volume);
    let taker_buy_quote = m.counter_units(taker_buy_base, mean);
    KlineUnits {
        open_time,
        close_time,
        open,
        high,
        low,
        close,
        volume,
        quote_volume,
        trades,
        taker_buy_base,
        taker_buy_quote,
    }
}

/// The closed candle of `symbol` opened at `open_time` (which should be an open time of
/// `interval`; see [`Interval::align_down`]). Pure: it ignores listing time and the clock, which
/// decide only which candles the server shows.
pub fn kline(data: &Data, symbol: &str, interval: Interval, open_time: i64) -> Kline {
    kline_in(data, SimMarket::Spot, symbol, interval, open_time)
}

/// Like [`kline`] for a symbol of `market` (`/fapi/v1/klines`, `/dapi/v1/klines`). On COIN-M
/// `volume` and `taker_buy_base` are in contracts, and `quote_volume` / `taker_buy_quote` hold
/// the base-asset volumes (Binance's `baseVolume` / `takerBuyBaseVolume`).
pub fn kline_in(
    data: &Data,
    market: SimMarket,
    symbol: &str,
    interval: Interval,
    open_time: i64,
) -> Kline {
    kline_units(
        &Market::of(market, symbol),
        data,
        interval,
        open_time,
        i64::MAX,
    )
    .to_kline()
}

/// The open times `t` of `interval` with `start_ms <= t < end_ms_exclusive`, ascending.
pub fn interval_open_times(interval: Interval, start_ms: i64, end_ms_exclusive: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut t = interval.align_up(start_ms);
    while t < end_ms_exclusive {
        out.push(t);
        t = interval.next_open(t);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Aggregate and raw trades

/// Aggregate-trade settings shared by every symbol: mean spacing, listing time and the id
/// ranges that do not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    /// Mean milliseconds between aggregate trades (values below 1 count as 1).
    pub spacing: i64,
    /// Time of aggregate trade 0, and of the first kline (the first open time `>= listed_at`).
    pub listed_at: i64,
    /// Inclusive ranges of aggregate trade ids that do not exist.
    pub missing: Vec<(u64, u64)>,
}

impl Default for Data {
    fn default() -> Self {
        Data {
            spacing: DEFAULT_AGG_TRADE_SPACING_MS,
            listed_at: DEFAULT_LISTED_AT_MS,
            missing: Vec::new(),
        }
    }
}

/// An aggregate trade in fixed-point units, as the server renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AggUnits {
    pub id: u64,
    pub price: i64,
    pub qty: i64,
    pub first: u64,
    pub last: u64,
    pub time: i64,
    pub buyer_maker: bool,
}

/// A raw trade in fixed-point units, as the server renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TradeUnits {
    pub id: u64,
    pub price: i64,
    pub qty: i64,
    pub quote_qty: i64,
    pub time: i64,
    pub buyer_maker: bool,
}

impl AggUnits {
    pub(crate) fn to_agg_trade(self) -> AggTrade {
        AggTrade {
            id: self.id,
            price: fixed8(self.price),
            qty: fixed8(self.qty),
            first_trade_id: self.first,
            last_trade_id: self.last,
            time: self.time,
            is_buyer_maker: self.buyer_maker,
            is_best_match: true,
        }
    }
}

impl TradeUnits {
    pub(crate) fn to_trade(self) -> Trade {
        Trade {
            id: self.id,
            price: fixed8(self.price),
            qty: fixed8(self.qty),
            quote_qty: fixed8(self.quote_qty),
            time: self.time,
            is_buyer_maker: self.buyer_maker,
            is_best_match: true,
        }
    }
}

/// How many of the 4 raw trades of agg pair `j` belong to its even member, minus one (0..=2).
#[inline]
fn pair_split(m: &Market, j: u64) -> u64 {
    hash(m.seed, SALT_PAIR, j) % 3
}

/// The raw trade ids `(first, last)` of agg trade `id` (whether or not it is missing).
#[inline]
pub(crate) fn raw_range(m: &Market, id: u64) -> (u64, u64) {
    let j = id / 2;
    let x = pair_split(m, j);
    if id % 2 == 0 {
        (4 * j, 4 * j + x)
    } else {
        (4 * j + x + 1, 4 * j + 3)
    }
}

impl Data {
    /// Settings with `missing` sorted and overlapping ranges merged.
    pub fn new(spacing: i64, listed_at: i64, missing: Vec<(u64, u64)>) -> Data {
        let mut ranges: Vec<(u64, u64)> = missing
            .into_iter()
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Data {
            spacing: spacing.max(1),
            listed_at,
            missing: merged,
        }
    }

    #[inline]
    fn spacing(&self) -> i64 {
        self.spacing.max(1)
    }

    /// The largest id whose time can be computed without overflow.
    pub(crate) fn max_id(&self) -> u64 {
        ((i64::MAX / 4 - self.listed_at.max(0)) / self.spacing()).max(0) as u64
    }

    /// Whether aggregate trade `id` is in one of the missing ranges.
    pub fn is_missing(&self, id: u64) -> bool {
        self.missing.iter().any(|&(a, b)| a <= id && id <= b)
    }

    /// The smallest existing id `>= id` (ignoring time), if any.
    pub fn next_existing(&self, mut id: u64) -> Option<u64> {
        loop {
            match self.missing.iter().find(|&&(a, b)| a <= id && id <= b) {
                Some(&(_, b)) => id = b.checked_add(1)?,
                None => return (id <= self.max_id()).then_some(id),
            }
        }
    }

    /// The largest existing id `<= id`, if any.
    pub fn prev_existing(&self, mut id: u64) -> Option<u64> {
        id = id.min(self.max_id());
        loop {
            match self.missing.iter().find(|&&(a, b)| a <= id && id <= b) {
                Some(&(a, _)) => id = a.checked_sub(1)?,
                None => return Some(id),
            }
        }
    }

    /// Time of aggregate trade `id` (missing or not); `id` must be at most `max_id()`.
    #[inline]
    pub(crate) fn time_of(&self, m: &Market, id: u64) -> i64 {
        let s = self.spacing();
        let jitter = (hash(m.seed, SALT_AGG, id) % s as u64) as i64;
        self.listed_at + id as i64 * s + jitter
    }

    /// The smallest id (missing or not) with time `>= t`.
    fn id_ceil(&self, m: &Market, t: i64) -> u64 {
        if t <= self.listed_at {
            return 0;
        }
        let k = ((t - self.listed_at) / self.spacing()) as u64;
        let k = k.min(self.max_id());
        if self.time_of(m, k) >= t {
            k
        } else {
            k + 1
        }
    }

    /// The largest id (missing or not) with time `<= t`.
    pub(crate) fn id_floor(&self, m: &Market, t: i64) -> Option<u64> {
        if t < self.listed_at {
            return None;
        }
        let k = (((t - self.listed_at) / self.spacing()) as u64).min(self.max_id());
        if self.time_of(m, k) <= t {
            Some(k)
        } else {
            k.checked_sub(1)
        }
    }

    /// Aggregate trade `id` whether or not it is listed as missing.
    pub(crate) fn agg_units(&self, m: &Market, id: u64) -> AggUnits {
        let time = self.time_of(m, id);
        let h = hash(m.seed, SALT_AGG, !id);
        let u = |i: u64| unit(mix(h ^ i));
        let mid = m.price_at(time) * SCALE as f64;
        let price = m.round_tick(mid * (1.0 + 0.0002 * (u(1) - 0.5)));
        let notional_usd = 10f64.powf(1.0 + 3.0 * u(2));
        let qty = m.to_steps(notional_usd / m.qty_usd * SCALE as f64, 3);
        let (first, last) = raw_range(m, id);
        AggUnits {
            id,
            price,
            qty: i64::try_from(qty).unwrap_or(i64::MAX),
            first,
            last,
            time,
            buyer_maker: h & 1 == 1,
        }
    }

    /// Existing aggregate trades with id `>= from_id` and time `<= until`, ascending, at most
    /// `limit`.
    pub(crate) fn agg_from_id(
        &self,
        m: &Market,
        from_id: u64,
        until: i64,
        limit: usize,
        out: &mut Vec<AggUnits>,
    ) {
        let Some(last) = self.id_floor(m, until) else {
            return;
        };
        let mut id = from_id;
        while out.len() < limit {
            let Some(next) = self.next_existing(id) else {
                return;
            };
            if next > last {
                return;
            }
            out.push(self.agg_units(m, next));
            id = next + 1;
        }
    }

    /// Existing aggregate trades with time `<= until`, the newest `limit` of them, ascending.
    pub(crate) fn agg_newest(&self, m: &Market, until: i64, limit: usize, out: &mut Vec<AggUnits>) {
        let Some(mut id) = self.id_floor(m, until) else {
            return;
        };
        let start = out.len();
        while out.len() - start < limit {
            let Some(prev) = self.prev_existing(id) else {
                break;
            };
            out.push(self.agg_units(m, prev));
            match prev.checked_sub(1) {
                Some(p) => id = p,
                None => break,
            }
        }
        out[start..].reverse();
    }

    /// The first existing agg id with time `>= t`.
    pub(crate) fn agg_ceil_existing(&self, m: &Market, t: i64) -> Option<u64> {
        self.next_existing(self.id_ceil(m, t))
    }

    /// The raw trade ids `(first, last)` spanned by the existing trades with
    /// `start <= time <= end`, if there are any.
    pub(crate) fn raw_span(&self, m: &Market, start: i64, end: i64) -> Option<(u64, u64)> {
        let first = self.agg_ceil_existing(m, start)?;
        let last = self
            .id_floor(m, end)
            .and_then(|id| self.prev_existing(id))?;
        (first <= last).then(|| (raw_range(m, first).0, raw_range(m, last).1))
    }

    /// How many existing raw trades have `start <= time <= end` (a candle's trade count).
    pub(crate) fn raw_count(&self, m: &Market, start: i64, end: i64) -> u64 {
        let Some(first) = self.agg_ceil_existing(m, start) else {
            return 0;
        };
        let Some(last) = self.id_floor(m, end).and_then(|id| self.prev_existing(id)) else {
            return 0;
        };
        if first > last {
            return 0;
        }
        let mut n = raw_range(m, last).1 - raw_range(m, first).0 + 1;
        for &(a, b) in &self.missing {
            let (a, b) = (a.max(first), b.min(last));
            if a <= b {
                n -= raw_range(m, b).1 - raw_range(m, a).0 + 1;
            }
        }
        n
    }

    /// Aggregate trade `id` of `symbol`, or `None` when the id is missing. Pure: the trade may
    /// lie in the future; the server only shows trades with time `<=` now.
    pub fn trade(&self, symbol: &str, id: u64) -> Option<AggTrade> {
        self.trade_in(SimMarket::Spot, symbol, id)
    }

    /// Like [`trade`](Self::trade) on `market` (COIN-M quantities in contracts).
    pub fn trade_in(&self, market: SimMarket, symbol: &str, id: u64) -> Option<AggTrade> {
        if self.is_missing(id) || id > self.max_id() {
            return None;
        }
        Some(
            self.agg_units(&Market::of(market, symbol), id)
                .to_agg_trade(),
        )
    }

    /// The time of aggregate trade `id` (also for missing ids).
    pub fn trade_time(&self, symbol: &str, id: u64) -> i64 {
        self.trade_time_in(SimMarket::Spot, symbol, id)
    }

    /// Like [`trade_time`](Self::trade_time) on `market`.
    pub fn trade_time_in(&self, market: SimMarket, symbol: &str, id: u64) -> i64 {
        self.time_of(&Market::of(market, symbol), id.min(self.max_id()))
    }

    /// The first existing aggregate trade id whose time is `>= t` (`u64::MAX` if none).
    pub fn first_id_at_or_after(&self, symbol: &str, t: i64) -> u64 {
        self.first_id_at_or_after_in(SimMarket::Spot, symbol, t)
    }

    /// Like [`first_id_at_or_after`](Self::first_id_at_or_after) on `market`.
    pub fn first_id_at_or_after_in(&self, market: SimMarket, symbol: &str, t: i64) -> u64 {
        self.agg_ceil_existing(&Market::of(market, symbol), t)
            .unwrap_or(u64::MAX)
    }

    /// The last existing aggregate trade id whose time is `<= t`, if any.
    pub fn last_id_at_or_before(&self, symbol: &str, t: i64) -> Option<u64> {
        self.last_id_at_or_before_in(SimMarket::Spot, symbol, t)
    }

    /// Like [`last_id_at_or_before`](Self::last_id_at_or_before) on `market`.
    pub fn last_id_at_or_before_in(&self, market: SimMarket, symbol: &str, t: i64) -> Option<u64> {
        let m = Market::of(market, symbol);
        self.id_floor(&m, t).and_then(|id| self.prev_existing(id))
    }

    /// Every existing aggregate trade of `symbol` with `start_ms <= time <= end_ms_inclusive`,
    /// ascending — what a loader should have after fetching that range.
    pub fn trades_between(
        &self,
        symbol: &str,
        start_ms: i64,
        end_ms_inclusive: i64,
    ) -> Vec<AggTrade> {
        self.trades_between_in(SimMarket::Spot, symbol, start_ms, end_ms_inclusive)
    }

    /// Like [`trades_between`](Self::trades_between) on `market`.
    pub fn trades_between_in(
        &self,
        market: SimMarket,
        symbol: &str,
        start_ms: i64,
        end_ms_inclusive: i64,
    ) -> Vec<AggTrade> {
        let m = Market::of(market, symbol);
        let mut out = Vec::new();
        if let Some(first) = self.agg_ceil_existing(&m, start_ms) {
            self.agg_from_id(&m, first, end_ms_inclusive, usize::MAX, &mut out);
        }
        out.into_iter().map(AggUnits::to_agg_trade).collect()
    }

    /// Existing aggregate trades of `symbol` with id `>= from_id` and time `<= until_ms`,
    /// ascending, at most `limit` — what `aggTrades?fromId=` returns when `until_ms` is now.
    pub fn trades_from_id(
        &self,
        symbol: &str,
        from_id: u64,
        until_ms: i64,
        limit: usize,
    ) -> Vec<AggTrade> {
        self.trades_from_id_in(SimMarket::Spot, symbol, from_id, until_ms, limit)
    }

    /// Like [`trades_from_id`](Self::trades_from_id) on `market`.
    pub fn trades_from_id_in(
        &self,
        market: SimMarket,
        symbol: &str,
        from_id: u64,
        until_ms: i64,
        limit: usize,
    ) -> Vec<AggTrade> {
        let m = Market::of(market, symbol);
        let mut out = Vec::new();
        self.agg_from_id(&m, from_id, until_ms, limit, &mut out);
        out.into_iter().map(AggUnits::to_agg_trade).collect()
    }

    /// The aggregate trade id that raw trade `raw_id` belongs to.
    pub fn agg_id_of_raw(&self, symbol: &str, raw_id: u64) -> u64 {
        self.agg_id_of_raw_in(SimMarket::Spot, symbol, raw_id)
    }

    /// Like [`agg_id_of_raw`](Self::agg_id_of_raw) on `market`.
    pub fn agg_id_of_raw_in(&self, market: SimMarket, symbol: &str, raw_id: u64) -> u64 {
        agg_of_raw(&Market::of(market, symbol), raw_id)
    }

    /// Raw trade `raw_id` of `symbol`, or `None` when its aggregate trade is missing.
    pub fn raw_trade(&self, symbol: &str, raw_id: u64) -> Option<Trade> {
        self.raw_trade_in(SimMarket::Spot, symbol, raw_id)
    }

    /// Like [`raw_trade`](Self::raw_trade) on `market` (COIN-M: `quote_qty` is `baseQty`).
    pub fn raw_trade_in(&self, market: SimMarket, symbol: &str, raw_id: u64) -> Option<Trade> {
        let m = Market::of(market, symbol);
        let agg = agg_of_raw(&m, raw_id);
        if self.is_missing(agg) || agg > self.max_id() {
            return None;
        }
        Some(self.trade_units(&m, raw_id).to_trade())
    }

    /// Raw trade `raw_id` whether or not its aggregate trade is missing.
    pub(crate) fn trade_units(&self, m: &Market, raw_id: u64) -> TradeUnits {
        split_raw(m, &self.agg_units(m, agg_of_raw(m, raw_id)), raw_id)
    }

    /// The existing aggregate trade ids `(first, last)` whose times lie in
    /// `[start, end_exclusive)`, if there are any (ids between them may be missing).
    pub(crate) fn agg_id_span(
        &self,
        m: &Market,
        start: i64,
        end_exclusive: i64,
    ) -> Option<(u64, u64)> {
        let first = self.agg_ceil_existing(m, start)?;
        let last = self
            .id_floor(m, end_exclusive.checked_sub(1)?)
            .and_then(|id| self.prev_existing(id))?;
        (first <= last).then_some((first, last))
    }

    /// Existing raw trades with id `>= from_id` and time `<= until`, ascending, at most `limit`.
    pub(crate) fn raw_from_id(
        &self,
        m: &Market,
        from_id: u64,
        until: i64,
        limit: usize,
        out: &mut Vec<TradeUnits>,
    ) {
        let Some(last_agg) = self.id_floor(m, until) else {
            return;
        };
        let mut raw = from_id;
        while out.len() < limit {
            let agg = agg_of_raw(m, raw);
            let Some(existing) = self.next_existing(agg) else {
                return;
            };
            if existing > last_agg {
                return;
            }
            if existing != agg {
                raw = raw_range(m, existing).0;
            }
            out.push(self.trade_units(m, raw));
            raw += 1;
        }
    }

    /// Existing raw trades with id `<= at_most` and time `<= until`, newest first, at most
    /// `limit` (a venue that pages trades backwards).
    pub(crate) fn raw_descending(
        &self,
        m: &Market,
        at_most: u64,
        until: i64,
        limit: usize,
        out: &mut Vec<TradeUnits>,
    ) {
        let Some(last_agg) = self
            .id_floor(m, until)
            .and_then(|id| self.prev_existing(id))
        else {
            return;
        };
        let mut raw = raw_range(m, last_agg).1.min(at_most);
        let start = out.len();
        while out.len() - start < limit {
            let agg = agg_of_raw(m, raw);
            let Some(existing) = self.prev_existing(agg) else {
                break;
            };
            if existing != agg {
                raw = raw_range(m, existing).1;
            }
            out.push(self.trade_units(m, raw));
            match raw.checked_sub(1) {
                Some(r) => raw = r,
                None => break,
            }
        }
    }

    /// Existing raw trades with time `<= until`, the newest `limit` of them, ascending.
    pub(crate) fn raw_newest(
        &self,
        m: &Market,
        until: i64,
        limit: usize,
        out: &mut Vec<TradeUnits>,
    ) {
        let start = out.len();
        self.raw_descending(m, u64::MAX, until, limit, out);
        out[start..].reverse();
    }
}

/// Raw trade `raw_id` (one of `agg.first..=agg.last`) of aggregate trade `agg`: the same price,
/// time and side, and an even share of its quantity (the last raw trade takes the remainder).
#[inline]
pub(crate) fn split_raw(m: &Market, agg: &AggUnits, raw_id: u64) -> TradeUnits {
    let n = agg.last - agg.first + 1;
    let idx = raw_id - agg.first;
    let steps = agg.qty / m.step;
    let share = steps / n as i64;
    let own = if idx + 1 == n {
        steps - share * (n as i64 - 1)
    } else {
        share
    };
    let qty = own * m.step;
    let quote_qty = m.counter_units(i128::from(qty), i128::from(agg.price));
    TradeUnits {
        id: raw_id,
        price: agg.price,
        qty,
        quote_qty: i64::try_from(quote_qty).unwrap_or(i64::MAX),
        time: agg.time,
        buyer_maker: agg.buyer_maker,
    }
}

/// The agg trade id that raw trade `raw_id` belongs to.
#[inline]
pub(crate) fn agg_of_raw(m: &Market, raw_id: u64) -> u64 {
    let j = raw_id / 4;
    if raw_id % 4 <= pair_split(m, j) {
        2 * j
    } else {
        2 * j + 1
    }
}

// ---------------------------------------------------------------------------------------------
// Order book

/// Price levels on each side of every simulated order book (fewer on the bid side when prices
/// would reach zero): `/api/v3/depth` never returns more, whatever its `limit`.
pub const BOOK_LEVELS: usize = 100;
/// The order book changes once per slot of this many milliseconds (since the Unix epoch); each
/// slot has one or more update ids, and a `@depth@100ms` event describes one slot.
pub const BOOK_SLOT_MS: i64 = 100;
/// A level's quantity changes once every this many slots, at a phase hashed from its price.
const BOOK_QTY_PERIOD: u64 = 20;

/// An order-book snapshot as `/api/v3/depth` shows it: `(price, quantity)` decimal strings,
/// bids best (highest) first, asks best (lowest) first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBook {
    pub last_update_id: u64,
    pub bids: Vec<(String, String)>,
    pub asks: Vec<(String, String)>,
}

/// The whole book of `symbol` (at most [`BOOK_LEVELS`] per side) that the server shows at time
/// `t` (ms), with its `lastUpdateId`. Pure, like everything in this module: the book of a slot
/// is a function of the symbol and the slot, and the diff-depth events of the WebSocket streams
/// are the differences between consecutive books, so a snapshot plus the events with
/// `u > lastUpdateId` gives the book of any later time.
pub fn order_book(symbol: &str, t: i64) -> OrderBook {
    order_book_in(SimMarket::Spot, symbol, t)
}

/// Like [`order_book`] for a symbol of `market`; futures books use futures update ids, which
/// jump between slots (see the module documentation).
pub fn order_book_in(market: SimMarket, symbol: &str, t: i64) -> OrderBook {
    let m = Market::of(market, symbol);
    let slot = book_slot(t);
    let book = book_at(&m, slot);
    let text = |side: &[(i64, i64)]| -> Vec<(String, String)> {
        side.iter().map(|&(p, q)| (fixed8(p), fixed8(q))).collect()
    };
    OrderBook {
        last_update_id: last_update_id(market, &m, slot),
        bids: text(&book.bids),
        asks: text(&book.asks),
    }
}

/// The book slot that contains time `t` (times before the epoch count as slot 0).
#[inline]
pub(crate) fn book_slot(t: i64) -> i64 {
    t.max(0) / BOOK_SLOT_MS
}

/// The last update id of slot `s`: `3s` plus a hashed 0..=2, so every slot has 1 to 5 ids and
/// consecutive slots' ids are contiguous.
#[inline]
pub(crate) fn slot_last_update_id(m: &Market, s: i64) -> u64 {
    let s = s.max(0) as u64;
    3 * s + hash(m.seed, SALT_BOOK_IDS, s) % 3
}

/// The first update id of slot `s` (the previous slot's last id plus one).
#[inline]
pub(crate) fn slot_first_update_id(m: &Market, s: i64) -> u64 {
    if s <= 0 {
        0
    } else {
        slot_last_update_id(m, s - 1) + 1
    }
}

/// The last update id of slot `s` on `market`. Spot's ids are contiguous
/// ([`slot_last_update_id`]); futures ids are not: slot `s` holds `10s - 3 + 0..=2` to
/// `10s + 0..=4`, so between two slots (and so two diff-depth events) ids jump by at least 3
/// and a futures client must chain events by `pu` (the previous event's `u`), not by `U`.
#[inline]
pub(crate) fn last_update_id(market: SimMarket, m: &Market, s: i64) -> u64 {
    if !market.is_futures() {
        return slot_last_update_id(m, s);
    }
    let s = s.max(0) as u64;
    10 * s + hash(m.seed, SALT_BOOK_IDS, s) % 5
}

/// The first update id of slot `s` on `market` (see [`last_update_id`]).
#[inline]
pub(crate) fn first_update_id(market: SimMarket, m: &Market, s: i64) -> u64 {
    if !market.is_futures() {
        return slot_first_update_id(m, s);
    }
    if s <= 0 {
        return 0;
    }
    let s = s as u64;
    10 * s - 3 + hash(m.seed, SALT_BOOK_IDS, !s) % 3
}

/// The book of one slot in fixed-point units: bids descending, asks ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Book {
    pub bids: Vec<(i64, i64)>,
    pub asks: Vec<(i64, i64)>,
}

/// The mid price of slot `s`, rounded to the tick: the best ask; the best bid is one tick lower.
#[inline]
pub(crate) fn book_mid(m: &Market, s: i64) -> i64 {
    m.round_tick(m.smooth_price_at(s * BOOK_SLOT_MS) * SCALE as f64)
}

/// The quantity of the level at `price` on one side during slot `s`.
#[inline]
pub(crate) fn level_qty(m: &Market, price: i64, bid: bool, s: i64) -> i64 {
    let h0 = hash(m.seed, SALT_BOOK, (price as u64) ^ (u64::from(bid) << 63));
    let epoch = (s.max(0) as u64 + h0 % BOOK_QTY_PERIOD) / BOOK_QTY_PERIOD;
    let h = mix(h0 ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let notional_usd = 10f64.powf(1.0 + 3.5 * unit(h));
    let qty = m.to_steps(notional_usd / m.qty_usd * SCALE as f64, 1);
    i64::try_from(qty).unwrap_or(i64::MAX)
}

/// The best bid (none when prices would reach zero) and best ask `(price, qty)` of a slot.
pub(crate) type BookTop = (Option<(i64, i64)>, (i64, i64));

/// The best bid and best ask `(price, qty)` of slot `s`.
pub(crate) fn book_top(m: &Market, s: i64) -> BookTop {
    let mid = book_mid(m, s);
    let bid = mid - m.tick;
    let best_bid = (bid > 0).then(|| (bid, level_qty(m, bid, true, s)));
    (best_bid, (mid, level_qty(m, mid, false, s)))
}

/// The full book of slot `s`.
pub(crate) fn book_at(m: &Market, s: i64) -> Book {
    let mid = book_mid(m, s);
    let tick = m.tick;
    let mut book = Book {
        bids: Vec::with_capacity(BOOK_LEVELS),
        asks: Vec::with_capacity(BOOK_LEVELS),
    };
    for i in 0..BOOK_LEVELS as i64 {
        let price = mid - (i + 1) * tick;
        if price <= 0 {
            break;
        }
        book.bids.push((price, level_qty(m, price, true, s)));
    }
    for i in 0..BOOK_LEVELS as i64 {
        let price = mid + i * tick;
        book.asks.push((price, level_qty(m, price, false, s)));
    }
    book
}

/// The changes that turn side `old` into side `new` (both sorted best first, `descending` for
/// bids): new or changed levels with their new quantity, vanished levels with quantity 0; in the
/// side's order.
pub(crate) fn side_diff(
    old: &[(i64, i64)],
    new: &[(i64, i64)],
    descending: bool,
) -> Vec<(i64, i64)> {
    let before = |a: i64, b: i64| if descending { a > b } else { a < b };
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(&(po, qo)), Some(&(pn, qn))) if po == pn => {
                if qo != qn {
                    out.push((pn, qn));
                }
                i += 1;
                j += 1;
            }
            (Some(&(po, _)), Some(&(pn, _))) if before(po, pn) => {
                out.push((po, 0));
                i += 1;
            }
            (Some(_), Some(&n)) => {
                out.push(n);
                j += 1;
            }
            (Some(&(po, _)), None) => {
                out.push((po, 0));
                i += 1;
            }
            (None, Some(&n)) => {
                out.push(n);
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Applies changes (quantity 0 removes a level) to one side sorted best first.
#[cfg(test)]
pub(crate) fn side_apply(side: &mut Vec<(i64, i64)>, changes: &[(i64, i64)], descending: bool) {
    for &(p, q) in changes {
        let pos = side.binary_search_by(|&(x, _)| if descending { p.cmp(&x) } else { x.cmp(&p) });
        match (pos, q) {
            (Ok(k), 0) => {
                side.remove(k);
            }
            (Ok(k), q) => side[k].1 = q,
            (Err(_), 0) => {}
            (Err(k), q) => side.insert(k, (p, q)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn kline_trade_counts_are_the_trades_in_the_candle() {
        let start = DEFAULT_LISTED_AT_MS + 10 * DAY;
        let d = Data::new(1_000, DEFAULT_LISTED_AT_MS, vec![]);
        let m = Market::new("BTCUSDT");
        // Ids of the second minute are missing: its candle has no trades and no volume.
        let quiet = d.agg_id_span(&m, start + 60_000, start + 120_000).unwrap();
        let holed = Data::new(1_000, DEFAULT_LISTED_AT_MS, vec![quiet]);
        for data in [&d, &holed] {
            for i in 0..3 {
                let t = start + i * 60_000;
                let k = kline(data, "BTCUSDT", Interval::M1, t);
                let raw: usize = data
                    .trades_between("BTCUSDT", t, t + 59_999)
                    .iter()
                    .map(|a| (a.last_trade_id - a.first_trade_id + 1) as usize)
                    .sum();
                assert_eq!(k.trades as usize, raw, "minute {i}");
            }
        }
        let k = kline(&holed, "BTCUSDT", Interval::M1, start + 60_000);
        assert_eq!((k.trades, k.volume.as_str()), (0, "0.00000000"));
        assert!(kline(&d, "BTCUSDT", Interval::M1, start + 60_000).trades >= 60);
    }

    #[test]
    fn klines_are_plausible_and_deterministic() {
        let data = Data::new(DEFAULT_AGG_TRADE_SPACING_MS, DEFAULT_LISTED_AT_MS, vec![]);
        let kline = |symbol: &str, iv: Interval, t: i64| kline(&data, symbol, iv, t);
        let start = DEFAULT_LISTED_AT_MS;
        for symbol in ["BTCUSDT", "ETHBTC", "DOGEUSDT", "QQQUSDC", "USDTTRY"] {
            for iv in Interval::ALL {
                let times = interval_open_times(iv, start, start + 40 * iv.nominal_ms());
                let mut prev_close: Option<String> = None;
                for &t in &times {
                    let k = kline(symbol, iv, t);
                    assert_eq!(k, kline(symbol, iv, t));
                    assert_eq!(k.close_time, iv.close_time(t));
                    let p = |s: &str| s.parse::<f64>().unwrap();
                    assert!(
                        p(&k.high) >= p(&k.open).max(p(&k.close)),
                        "{symbol} {iv} {k:?}"
                    );
                    assert!(
                        p(&k.low) <= p(&k.open).min(p(&k.close)),
                        "{symbol} {iv} {k:?}"
                    );
                    assert!(p(&k.low) > 0.0);
                    assert!(p(&k.volume) > 0.0 && p(&k.quote_volume) > 0.0);
                    assert!(p(&k.taker_buy_base) <= p(&k.volume));
                    assert!(k.trades >= 1);
                    for s in [&k.open, &k.high, &k.volume, &k.taker_buy_quote] {
                        assert_eq!(s.len() - s.find('.').unwrap(), 9, "{s}");
                    }
                    if let Some(pc) = &prev_close {
                        assert_eq!(pc, &k.open, "close of n is open of n+1");
                    }
                    prev_close = Some(k.close.clone());
                }
            }
        }
        let btc = kline("BTCUSDT", Interval::D1, start);
        let open: f64 = btc.open.parse().unwrap();
        assert!((10_000.0..100_000.0).contains(&open), "{btc:?}");
        assert_ne!(kline("ETHUSDT", Interval::D1, start), btc);
    }

    #[test]
    fn price_moves_smoothly() {
        let m = Market::new("BTCUSDT");
        let mut prev = m.price_at(DEFAULT_LISTED_AT_MS);
        for i in 1..10_000 {
            let p = m.price_at(DEFAULT_LISTED_AT_MS + i * 1000);
            assert!((p / prev - 1.0).abs() < 0.002, "{prev} -> {p}");
            prev = p;
        }
    }

    #[test]
    fn agg_trade_times_and_ids_are_consistent() {
        let d = Data::new(
            250,
            DEFAULT_LISTED_AT_MS,
            vec![(10, 12), (11, 20), (100, 100)],
        );
        assert_eq!(d.missing, vec![(10, 20), (100, 100)]);
        let m = Market::new("BTCUSDT");
        let mut prev: Option<AggUnits> = None;
        for id in 0..2_000u64 {
            let a = d.agg_units(&m, id);
            assert!(a.time >= d.listed_at + id as i64 * 250);
            assert!(a.time < d.listed_at + (id as i64 + 1) * 250);
            assert!(a.first <= a.last && a.last - a.first <= 2);
            if let Some(p) = prev {
                assert!(a.time >= p.time);
                assert_eq!(a.first, p.last + 1, "raw ids are contiguous");
            }
            assert!(a.qty >= 3 * m.step_units());
            prev = Some(a);
        }
        assert!(d.trade("BTCUSDT", 15).is_none());
        assert!(d.trade("BTCUSDT", 21).is_some());
        let t = d.trade_time("BTCUSDT", 9);
        assert_eq!(d.first_id_at_or_after("BTCUSDT", t + 1), 21);
        assert_eq!(d.first_id_at_or_after("BTCUSDT", t), 9);
        assert_eq!(d.first_id_at_or_after("BTCUSDT", 0), 0);
        assert_eq!(d.last_id_at_or_before("BTCUSDT", t), Some(9));
        let t21 = d.trade_time("BTCUSDT", 21);
        assert_eq!(d.last_id_at_or_before("BTCUSDT", t21 - 1), Some(9));
        assert_eq!(d.last_id_at_or_before("BTCUSDT", d.listed_at - 1), None);
        let between = d.trades_between("BTCUSDT", d.listed_at, d.listed_at + 9_999);
        assert!(between.iter().all(|a| !(10..=20).contains(&a.id)));
        assert_eq!(between.len(), 40 - 11);
    }

    #[test]
    fn raw_trades_split_their_agg_trade() {
        let d = Data::new(100, DEFAULT_LISTED_AT_MS, vec![(5, 6)]);
        let m = Market::new("ETHUSDT");
        for id in 0..50u64 {
            let a = d.agg_units(&m, id);
            let mut total = 0;
            for raw in a.first..=a.last {
                assert_eq!(agg_of_raw(&m, raw), id);
                let t = d.trade_units(&m, raw);
                assert_eq!((t.price, t.time), (a.price, a.time));
                assert!(t.qty > 0);
                total += t.qty;
            }
            assert_eq!(total, a.qty);
        }
        let mut out = Vec::new();
        let (first5, _) = raw_range(&m, 5);
        d.raw_from_id(&m, first5, i64::MAX / 8, 3, &mut out);
        assert_eq!(
            out[0].id,
            raw_range(&m, 7).0,
            "raw trades of missing agg ids are skipped"
        );
        assert!(d.raw_trade("ETHUSDT", first5).is_none());
        let mut newest = Vec::new();
        let until = d.trade_time("ETHUSDT", 7) - 1;
        d.raw_newest(&m, until, 3, &mut newest);
        assert_eq!(newest.last().unwrap().id, raw_range(&m, 4).1);
        assert!(newest.windows(2).all(|w| w[0].id + 1 == w[1].id));
    }

    #[test]
    fn newest_agg_trades_respect_until_and_missing() {
        let d = Data::new(1000, 0, vec![(3, 4)]);
        let m = Market::new("BNBUSDT");
        let mut out = Vec::new();
        d.agg_newest(&m, 5 * 1000 + 999, 10, &mut out);
        let ids: Vec<u64> = out.iter().map(|a| a.id).collect();
        let last = if d.time_of(&m, 5) <= 5999 { 5 } else { 4 };
        let mut expect: Vec<u64> = (0..=last).filter(|i| !(3..=4).contains(i)).collect();
        expect.truncate(10);
        assert_eq!(ids, expect);
        assert!(d.trades_from_id("BNBUSDT", 0, 10 * DAY, 5).len() == 5);
    }

    #[test]
    fn books_are_ordered_and_diffs_chain() {
        for symbol in ["BTCUSDT", "ETHBTC", "DOGEUSDT", "USDTTRY"] {
            let m = Market::new(symbol);
            let s0 = book_slot(DEFAULT_LISTED_AT_MS + DAY);
            let first = book_at(&m, s0);
            assert_eq!(first.bids.len(), BOOK_LEVELS);
            assert_eq!(first.asks.len(), BOOK_LEVELS);
            assert!(first.bids.windows(2).all(|w| w[0].0 > w[1].0));
            assert!(first.asks.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(first.bids[0].0 < first.asks[0].0);
            let (bid, ask) = book_top(&m, s0);
            assert_eq!((bid.unwrap(), ask), (first.bids[0], first.asks[0]));
            let mut local = first.clone();
            let mut changes = 0;
            for s in s0 + 1..s0 + 300 {
                assert_eq!(
                    slot_first_update_id(&m, s),
                    slot_last_update_id(&m, s - 1) + 1
                );
                assert!(slot_last_update_id(&m, s) >= slot_first_update_id(&m, s));
                let (old, new) = (book_at(&m, s - 1), book_at(&m, s));
                let db = side_diff(&old.bids, &new.bids, true);
                let da = side_diff(&old.asks, &new.asks, false);
                changes += db.len() + da.len();
                side_apply(&mut local.bids, &db, true);
                side_apply(&mut local.asks, &da, false);
                assert_eq!(local, new, "{symbol} slot {s}");
            }
            // Levels change a little every slot, not wholesale.
            assert!(changes > 300 && changes < 300 * 60, "{symbol}: {changes}");
            // A multi-slot diff equals the chained one.
            let (a, b) = (book_at(&m, s0), book_at(&m, s0 + 299));
            let mut bids = a.bids.clone();
            side_apply(&mut bids, &side_diff(&a.bids, &b.bids, true), true);
            assert_eq!(bids, b.bids);
        }
        let ob = order_book("BTCUSDT", DEFAULT_LISTED_AT_MS + DAY + 5);
        assert_eq!(ob, order_book("BTCUSDT", DEFAULT_LISTED_AT_MS + DAY + 99));
        assert!(
            order_book("BTCUSDT", DEFAULT_LISTED_AT_MS + DAY + 100).last_update_id
                > ob.last_update_id
        );
    }
}
