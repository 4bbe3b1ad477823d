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
//! and never for the archive's `missing_days`. `GET` sends the file, `HEAD` its size; both send
//! `ETag: "<md5>"`, as the object store behind Bybit's CDN does for a file stored whole. No
//! checksum file exists. [`BybitArchive::corrupt`] damages the next downloads of a file (the
//! ETag stays the true file's); [`BybitArchive::opaque_etags`] makes every ETag 32 hex digits
//! that are not the file's md5; [`BybitArchive::replace_after_head`] re-publishes a file (the
//! same rows, other bytes) right after a client probed it.
//!
//! [`SimServer::bybit_archive_url`]: crate::SimServer::bybit_archive_url

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};

use md5::Digest;

use crate::bybit::BybitCategory;
use crate::data::{mix, Data};
use crate::fmt::fixed8;

const DAY_MS: i64 = 86_400_000;
/// Files of days before 2021-01-01 run newest first.
pub const NEWEST_FIRST_BEFORE_MS: i64 = 1_609_459_200_000;
/// Generated files kept for the next request (a `HEAD` is followed by a `GET`).
const CACHED_FILES: usize = 8;

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
    let m = category.market(symbol)?;
    let mut units = Vec::new();
    if let Some(first) = data.agg_ceil_existing(&m, day_ms) {
        let raw = crate::data::raw_range(&m, first).0;
        data.raw_from_id(&m, raw, day_ms + DAY_MS - 1, usize::MAX, &mut units);
    }
    let derivatives = category != BybitCategory::Spot;
    let mut out: Vec<(i64, u8, BybitTrade)> = units
        .into_iter()
        .filter(|u| u.time >= day_ms)
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
            (u.time, if derivatives { tenth } else { 0 }, t)
        })
        .collect();
    // Sorted by the written timestamp; a stable sort keeps the order trades were made in.
    out.sort_by_key(|(ms, tenth, _)| (*ms, *tenth));
    Some(out.into_iter().map(|(_, _, t)| t).collect())
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

/// A generated file: its gzip bytes and md5.
struct File {
    gz: Arc<Vec<u8>>,
    md5: String,
}

/// The archive's state: generated files, damaged downloads to come, counters.
#[derive(Default)]
pub(crate) struct BybitArchive {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cache: VecDeque<(String, Arc<File>)>,
    corrupt: HashMap<String, u32>,
    /// ETags of 32 hex digits that are not the file's md5 (as a store gives with some
    /// server-side encryption).
    opaque_etags: bool,
    /// Files replaced once their next `HEAD` is answered, and files replaced: the same rows
    /// packed again (other bytes, another md5), as an archive re-publishes a day.
    replace_after_head: std::collections::HashSet<String>,
    replaced: std::collections::HashSet<String>,
    stats: BybitArchiveStats,
}

/// What the Bybit archive was asked and sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BybitArchiveStats {
    /// `GET`s answered with a file.
    pub downloads: u64,
    /// `HEAD`s answered with a file's size.
    pub heads: u64,
    pub not_found: u64,
    /// Downloads per file name.
    pub per_file: BTreeMap<String, u64>,
}

/// An answer: status, body, and the ETag of a file.
pub(crate) struct ArchiveAnswer {
    pub status: u16,
    pub body: Arc<Vec<u8>>,
    pub etag: Option<String>,
    /// The size a `HEAD` announces.
    pub length: usize,
}

impl BybitArchive {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> BybitArchiveStats {
        self.lock().stats.clone()
    }

    /// The next `downloads` downloads of the file named `name` are damaged (bytes in the middle
    /// flipped; the ETag and size stay the true file's).
    pub fn corrupt(&self, name: &str, downloads: u32) {
        self.lock().corrupt.insert(name.to_string(), downloads);
    }

    /// The file named `name` is replaced right after its next `HEAD` is answered: what a
    /// client probed is no longer what it downloads.
    pub fn replace_after_head(&self, name: &str) {
        self.lock().replace_after_head.insert(name.to_string());
    }

    /// ETags of 32 hex digits that are no md5 of the file, from now on (or md5s again).
    pub fn opaque_etags(&self, on: bool) {
        self.lock().opaque_etags = on;
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
        let not_found = |st: &mut State| {
            st.stats.not_found += 1;
            ArchiveAnswer {
                status: 404,
                body: Arc::new(b"<Error><Code>NoSuchKey</Code></Error>".to_vec()),
                etag: None,
                length: 0,
            }
        };
        let Some((category, symbol, date)) = parse(path) else {
            return not_found(&mut self.lock());
        };
        let Some(day_ms) = day_start(date) else {
            return not_found(&mut self.lock());
        };
        let published = day_ms + DAY_MS <= now
            && day_ms + DAY_MS > data.listed_at
            && !missing_days.iter().any(|d| d.trim() == date);
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        let (cached, replaced) = {
            let st = self.lock();
            let cached = st
                .cache
                .iter()
                .find(|(n, _)| *n == path)
                .map(|(_, f)| f.clone());
            (cached, st.replaced.contains(&name))
        };
        let file = match cached {
            Some(f) => f,
            None => {
                let Some(trades) = published
                    .then(|| trades(data, category, symbol, day_ms))
                    .flatten()
                else {
                    return not_found(&mut self.lock());
                };
                // A replaced file holds the same rows packed otherwise.
                let level = if replaced {
                    flate2::Compression::best()
                } else {
                    flate2::Compression::fast()
                };
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
                let _ = gz.write_all(csv(category, symbol, day_ms, &trades).as_bytes());
                let gz = gz.finish().unwrap_or_default();
                let md5 = md5::Md5::digest(&gz)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let f = Arc::new(File {
                    gz: Arc::new(gz),
                    md5,
                });
                let mut st = self.lock();
                st.cache.push_back((path.to_string(), f.clone()));
                if st.cache.len() > CACHED_FILES {
                    st.cache.pop_front();
                }
                f
            }
        };
        if !published {
            return not_found(&mut self.lock());
        }
        let mut st = self.lock();
        let etag = Some(if st.opaque_etags {
            let other: String = md5::Md5::digest(file.md5.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("\"{other}\"")
        } else {
            format!("\"{}\"", file.md5)
        });
        if head {
            st.stats.heads += 1;
            if st.replace_after_head.remove(&name) {
                st.replaced.insert(name.clone());
                st.cache.retain(|(n, _)| n != path);
            }
            return ArchiveAnswer {
                status: 200,
                body: Arc::new(Vec::new()),
                etag,
                length: file.gz.len(),
            };
        }
        st.stats.downloads += 1;
        *st.stats.per_file.entry(name.clone()).or_default() += 1;
        let damaged = match st.corrupt.get_mut(&name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        let body = if damaged {
            let mut bytes = file.gz.as_ref().clone();
            let mid = bytes.len() / 2;
            for b in bytes.iter_mut().skip(mid).take(8) {
                *b ^= 0x5a;
            }
            Arc::new(bytes)
        } else {
            file.gz.clone()
        };
        ArchiveAnswer {
            status: 200,
            length: body.len(),
            body,
            etag,
        }
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

/// Epoch ms of `YYYY-MM-DD`'s midnight UTC.
fn day_start(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some()
        || date.len() != 10
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * DAY_MS)
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
