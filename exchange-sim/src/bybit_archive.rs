//! Bybit's archive of trades, served under `/bybit-archive` ([`SimServer::bybit_archive_url`],
//! Bybit's `https://public.bybit.com`), from the same trades as the Bybit venue's markets
//! ([`crate::bybit`]). The layout and columns are those independent downloaders read (Bybit
//! documents neither):
//! - derivatives `trading/SYM/SYMYYYY-MM-DD.csv.gz`: header `timestamp,symbol,side,size,price,
//!   tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional`, `timestamp` in seconds
//!   with four decimals, `side` the taker's (`Buy`/`Sell`), `trdMatchID` a UUID;
//! - spot `spot/SYM/SYM_YYYY-MM-DD.csv.gz`: header `id,timestamp,price,volume,side`, ms times,
//!   lowercase sides.
//!
//! Files of days before 2021 run newest first, as some of Bybit's older files do. A day's file
//! appears when the day has ended by the simulator's clock, never before the symbol's listing,
//! and never for the archive's `missing_days`. The files are served as the object store behind
//! Bybit's CDN serves them ([`crate::object_store`]): size and md5 ETag, no checksum file.
//!
//! [`SimServer::bybit_archive_url`]: crate::SimServer::bybit_archive_url

use std::io::Write;

use crate::bybit::BybitCategory;
use crate::data::{mix, Data};
use crate::fmt::fixed8;
use crate::object_store::{day_start, ArchiveAnswer, ArchiveStats, ObjectStore};

const DAY_MS: i64 = 86_400_000;
/// Files of days before 2021-01-01 run newest first.
pub const NEWEST_FIRST_BEFORE_MS: i64 = 1_609_459_200_000;

/// One trade as the archive writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BybitTrade {
    /// `trdMatchID` (a UUID) on derivatives, `id` on spot.
    pub id: String,
    /// Whole milliseconds (the file's seconds with their fraction, cut at the millisecond).
    pub time_ms: i64,
    /// The file's `timestamp` as written.
    pub timestamp: String,
    pub price: String,
    pub size: String,
    /// The taker sold.
    pub sell: bool,
}

/// Every trade of `symbol` in `category` on the day starting at `day_ms`, in the order of
/// the time they happened (ascending `timestamp`, ties in the order they were made): the
/// archive file's order when the day is from 2021 on, else reversed. `None` for a symbol the
/// category does not list.
pub fn trades(
    data: &Data,
    category: BybitCategory,
    symbol: &str,
    day_ms: i64,
) -> Option<Vec<BybitTrade>> {
    trades_between(data, category, symbol, day_ms, day_ms + DAY_MS - 1)
}

/// Every trade of `symbol` in `category` with `from_ms <= time <= to_ms`, in the order of
/// [`trades`]: the trades of a day, cut to the span (Bybit's live `publicTrade` stream sends
/// exactly these). `None` for a symbol the category does not list.
pub fn trades_between(
    data: &Data,
    category: BybitCategory,
    symbol: &str,
    from_ms: i64,
    to_ms: i64,
) -> Option<Vec<BybitTrade>> {
    Some(
        sequenced(data, category, symbol, from_ms, to_ms)?
            .into_iter()
            .map(|(_, t)| t)
            .collect(),
    )
}

/// Like [`trades_between`], each trade with the id of the aggregate trade (the match) it
/// belongs to.
pub(crate) fn sequenced(
    data: &Data,
    category: BybitCategory,
    symbol: &str,
    from_ms: i64,
    to_ms: i64,
) -> Option<Vec<(u64, BybitTrade)>> {
    let m = category.market(symbol)?;
    let mut units = Vec::new();
    if let Some(first) = data.agg_ceil_existing(&m, from_ms) {
        let raw = crate::data::raw_range(&m, first).0;
        data.raw_from_id(&m, raw, to_ms, usize::MAX, &mut units);
    }
    let derivatives = category != BybitCategory::Spot;
    let mut out: Vec<(i64, u8, u64, BybitTrade)> = units
        .into_iter()
        .filter(|u| u.time >= from_ms)
        .map(|u| {
            let agg = crate::data::agg_of_raw(&m, u.id);
            // The tenth of a millisecond: the same for every trade of one aggregate.
            let tenth = (mix(m.seed ^ agg) % 10) as u8;
            let id = if derivatives {
                let h = mix(m.seed ^ u.id.rotate_left(17));
                let g = mix(h);
                format!(
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                    h >> 32,
                    (h >> 16) & 0xffff,
                    h & 0xffff,
                    g >> 48,
                    g & 0xffff_ffff_ffff
                )
            } else {
                u.id.to_string()
            };
            let timestamp = if derivatives {
                format!(
                    "{}.{:03}{tenth}",
                    u.time.div_euclid(1000),
                    u.time.rem_euclid(1000)
                )
            } else {
                u.time.to_string()
            };
            let t = BybitTrade {
                id,
                time_ms: u.time,
                timestamp,
                price: fixed8(u.price),
                size: fixed8(u.qty),
                // The taker sold when the buyer made the market.
                sell: u.buyer_maker,
            };
            (u.time, if derivatives { tenth } else { 0 }, agg, t)
        })
        .collect();
    // Sorted by the written timestamp; a stable sort keeps the order trades were made in.
    out.sort_by_key(|(ms, tenth, _, _)| (*ms, *tenth));
    Some(out.into_iter().map(|(_, _, agg, t)| (agg, t)).collect())
}

/// The CSV of a day's file, header first, rows in the file's order.
fn csv(category: BybitCategory, symbol: &str, day_ms: i64, trades: &[BybitTrade]) -> String {
    let mut s = String::with_capacity(trades.len() * 120 + 128);
    let rows: Box<dyn Iterator<Item = &BybitTrade>> = if day_ms < NEWEST_FIRST_BEFORE_MS {
        Box::new(trades.iter().rev())
    } else {
        Box::new(trades.iter())
    };
    if category == BybitCategory::Spot {
        s.push_str("id,timestamp,price,volume,side\n");
        for t in rows {
            let side = if t.sell { "sell" } else { "buy" };
            s.push_str(&format!(
                "{},{},{},{},{side}\n",
                t.id, t.timestamp, t.price, t.size
            ));
        }
    } else {
        s.push_str("timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional\n");
        for t in rows {
            let side = if t.sell { "Sell" } else { "Buy" };
            let tick = if t.sell { "MinusTick" } else { "PlusTick" };
            s.push_str(&format!(
                "{},{symbol},{side},{},{},{tick},{},0,{},0\n",
                t.timestamp, t.size, t.price, t.id, t.size
            ));
        }
    }
    s
}

/// Bybit's archive: its files in an [`ObjectStore`].
#[derive(Default)]
pub(crate) struct BybitArchive {
    store: ObjectStore,
}

/// What the Bybit archive was asked and sent.
pub type BybitArchiveStats = ArchiveStats;

impl BybitArchive {
    pub fn stats(&self) -> BybitArchiveStats {
        self.store.stats()
    }

    /// See [`ObjectStore::corrupt`].
    pub fn corrupt(&self, name: &str, downloads: u32) {
        self.store.corrupt(name, downloads);
    }

    /// See [`ObjectStore::replace_after_head`].
    pub fn replace_after_head(&self, name: &str) {
        self.store.replace_after_head(name);
    }

    /// See [`ObjectStore::opaque_etags`].
    pub fn opaque_etags(&self, on: bool) {
        self.store.opaque_etags(on);
    }

    /// Answers `path` (after `/bybit-archive/`); `head` for a `HEAD`.
    pub fn handle(
        &self,
        path: &str,
        head: bool,
        data: &Data,
        now: i64,
        missing_days: &[String],
    ) -> ArchiveAnswer {
        let Some((category, symbol, date)) = parse(path) else {
            return self.store.not_found();
        };
        let Some(day_ms) = day_start(date) else {
            return self.store.not_found();
        };
        let published = day_ms + DAY_MS <= now
            && day_ms + DAY_MS > data.listed_at
            && !missing_days.iter().any(|d| d.trim() == date);
        if !published {
            return self.store.not_found();
        }
        self.store.serve(path, head, |replaced| {
            let trades = trades(data, category, symbol, day_ms)?;
            // A replaced file holds the same rows packed otherwise.
            let level = if replaced {
                flate2::Compression::best()
            } else {
                flate2::Compression::fast()
            };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
            let _ = gz.write_all(csv(category, symbol, day_ms, &trades).as_bytes());
            Some(gz.finish().unwrap_or_default())
        })
    }
}

/// `(category, symbol, YYYY-MM-DD)` of a trade file's path.
fn parse(path: &str) -> Option<(BybitCategory, &str, &str)> {
    let (dir, rest) = path.split_once('/')?;
    let (symbol, file) = rest.split_once('/')?;
    let stem = file.strip_suffix(".csv.gz")?.strip_prefix(symbol)?;
    match dir {
        "spot" => Some((BybitCategory::Spot, symbol, stem.strip_prefix('_')?)),
        "trading" => {
            // Linear and inverse share the directory: the symbol says which.
            let category = [BybitCategory::Linear, BybitCategory::Inverse]
                .into_iter()
                .find(|c| c.parse_symbol(symbol).is_some())?;
            Some((category, symbol, stem))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_days_parse() {
        assert_eq!(day_start("2021-01-01"), Some(NEWEST_FIRST_BEFORE_MS));
        assert_eq!(day_start("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(day_start("2024-13-01"), None);
        assert_eq!(
            parse("trading/BTCUSDT/BTCUSDT2024-01-02.csv.gz"),
            Some((BybitCategory::Linear, "BTCUSDT", "2024-01-02"))
        );
        assert_eq!(
            parse("trading/BTCUSD/BTCUSD2024-01-02.csv.gz"),
            Some((BybitCategory::Inverse, "BTCUSD", "2024-01-02"))
        );
        assert_eq!(
            parse("spot/ETHUSDT/ETHUSDT_2024-01-02.csv.gz"),
            Some((BybitCategory::Spot, "ETHUSDT", "2024-01-02"))
        );
        assert_eq!(parse("spot/ETHUSDT/ETHUSDT2024-01-02.csv.gz"), None);
    }
}
