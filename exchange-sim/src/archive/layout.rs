//! The `data.binance.vision` layout of the bulk archive: which URL paths name a file (and which
//! of them are `.CHECKSUM`s) on which market (`data/spot/…`, `data/futures/um/…`,
//! `data/futures/cm/…`), the files' names and the time spans they cover, which ones carry a
//! header row or µs times, when a file is published, and the calendar arithmetic (UTC dates,
//! HTTP dates) all of that needs.

use kline_interval::{civil_from_days, days_from_civil};
use std::time::Duration;

use kline_interval::Interval;

use crate::futures::PriceSeries;
use crate::market::SimMarket;
use crate::ArchiveFaults;

const DAY_MS: i64 = 86_400_000;
/// Spot archive files whose span starts at or after 2025-01-01T00:00:00Z write their times in
/// microseconds; earlier ones in milliseconds.
pub(crate) const MICROS_FROM_MS: i64 = 1_735_689_600_000;
/// Futures archive files whose span starts at or after 2022-01-01T00:00:00Z have a header row;
/// older ones have none (Binance did not redo them).
pub(crate) const FUTURES_HEADER_FROM_MS: i64 = 1_640_995_200_000;

/// The record type of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Klines(Interval),
    /// Futures only: `markPriceKlines`, `indexPriceKlines` (keyed by pair on COIN-M),
    /// `premiumIndexKlines`.
    PriceKlines(PriceSeries, Interval),
    AggTrades,
    Trades,
    /// Futures only, daily only: open interest and long/short ratios every 5 minutes.
    Metrics,
}

/// The span of a file: one UTC day or one UTC calendar month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Period {
    Day { y: i64, m: u32, d: u32 },
    Month { y: i64, m: u32 },
}

/// One archive file (a zip; its `.CHECKSUM` is named by the same key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub market: SimMarket,
    /// The symbol, or the pair of a COIN-M `indexPriceKlines` file.
    pub symbol: String,
    pub kind: Kind,
    pub period: Period,
}

/// Daily kline files exist only for intervals up to one day.
fn has_daily_file(iv: Interval) -> bool {
    !matches!(iv, Interval::D3 | Interval::W1 | Interval::Mo1)
}

/// Parses a request path: the file it names and whether it is the `.CHECKSUM`, or `None` when
/// no such file can exist (wrong layout, unknown symbol or interval, malformed date).
pub(crate) fn parse_path(path: &str) -> Option<(FileKey, bool)> {
    let rest = path.strip_prefix("/data/")?;
    let (market, rest) = [SimMarket::Spot, SimMarket::UsdM, SimMarket::CoinM]
        .into_iter()
        .find_map(|m| Some((m, rest.strip_prefix(m.archive_dir())?.strip_prefix('/')?)))?;
    let futures = market.is_futures();
    let mut parts = rest.split('/');
    let daily = match parts.next()? {
        "daily" => true,
        "monthly" => false,
        _ => return None,
    };
    let kind_seg = parts.next()?;
    let symbol = parts.next()?;
    if kind_seg == "indexPriceKlines" {
        market.symbol_of_pair(symbol).ok()?;
    } else {
        market.parse_symbol(symbol).ok()?;
    }
    let mut interval = || -> Option<Interval> {
        let seg = parts.next()?;
        let iv: Interval = seg.parse().ok()?;
        // Futures have no 1-second candles.
        if iv.archive_str() != seg
            || (daily && !has_daily_file(iv))
            || (futures && iv == Interval::S1)
        {
            return None;
        }
        Some(iv)
    };
    let kind = match kind_seg {
        "klines" => Kind::Klines(interval()?),
        "aggTrades" => Kind::AggTrades,
        "trades" => Kind::Trades,
        "markPriceKlines" if futures => Kind::PriceKlines(PriceSeries::Mark, interval()?),
        "indexPriceKlines" if futures => Kind::PriceKlines(PriceSeries::Index, interval()?),
        "premiumIndexKlines" if futures => Kind::PriceKlines(PriceSeries::Premium, interval()?),
        "metrics" if futures && daily => Kind::Metrics,
        _ => return None,
    };
    let file = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let (stem, checksum) = match file.strip_suffix(".zip.CHECKSUM") {
        Some(stem) => (stem, true),
        None => (file.strip_suffix(".zip")?, false),
    };
    let date = stem
        .strip_prefix(symbol)?
        .strip_prefix('-')?
        .strip_prefix(kind.name_part())?
        .strip_prefix('-')?;
    let period = if daily {
        let (y, m, d) = parse_day(date)?;
        Period::Day { y, m, d }
    } else {
        let (y, m) = parse_month(date)?;
        Period::Month { y, m }
    };
    let key = FileKey {
        market,
        symbol: symbol.to_string(),
        kind,
        period,
    };
    Some((key, checksum))
}

impl Kind {
    /// The part of the file name after the symbol: `1m`, `1mo`, `aggTrades`, `trades`,
    /// `metrics`.
    fn name_part(self) -> &'static str {
        match self {
            Kind::Klines(iv) | Kind::PriceKlines(_, iv) => iv.archive_str(),
            Kind::AggTrades => "aggTrades",
            Kind::Trades => "trades",
            Kind::Metrics => "metrics",
        }
    }
}

impl FileKey {
    /// The date part of the name: `YYYY-MM-DD` or `YYYY-MM`.
    pub fn date(&self) -> String {
        match self.period {
            Period::Day { y, m, d } => format!("{y:04}-{m:02}-{d:02}"),
            Period::Month { y, m } => format!("{y:04}-{m:02}"),
        }
    }

    /// The file name without `.zip`, also the CSV's name without `.csv`:
    /// `BTCUSDT-1m-2024-01-01`.
    pub fn stem(&self) -> String {
        format!("{}-{}-{}", self.symbol, self.kind.name_part(), self.date())
    }

    /// The zip's name: `BTCUSDT-1m-2024-01-01.zip`.
    pub fn zip_name(&self) -> String {
        format!("{}.zip", self.stem())
    }

    /// The zip's key (path without the leading `/`):
    /// `data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip`.
    pub fn zip_key(&self) -> String {
        let period = match self.period {
            Period::Day { .. } => "daily",
            Period::Month { .. } => "monthly",
        };
        let dir = match self.kind {
            Kind::Klines(iv) => format!("klines/{}/{}", self.symbol, iv.archive_str()),
            Kind::PriceKlines(series, iv) => {
                let name = match series {
                    PriceSeries::Mark => "markPriceKlines",
                    PriceSeries::Index => "indexPriceKlines",
                    PriceSeries::Premium => "premiumIndexKlines",
                };
                format!("{name}/{}/{}", self.symbol, iv.archive_str())
            }
            Kind::AggTrades => format!("aggTrades/{}", self.symbol),
            Kind::Trades => format!("trades/{}", self.symbol),
            Kind::Metrics => format!("metrics/{}", self.symbol),
        };
        format!(
            "data/{}/{period}/{dir}/{}",
            self.market.archive_dir(),
            self.zip_name()
        )
    }

    /// The name the download counters use: the zip name on spot (as always), the whole key
    /// on futures, whose mark/index/premium files share their names with the klines files.
    pub fn download_name(&self) -> String {
        if self.market.is_futures() {
            self.zip_key()
        } else {
            self.zip_name()
        }
    }

    /// Whether the CSV starts with a header row of its own: futures files whose span starts in
    /// 2022 or later, and every `metrics` file. (Spot files get one only from the `header`
    /// fault.)
    pub fn native_header(&self) -> bool {
        self.market.is_futures()
            && (self.kind == Kind::Metrics || self.span().0 >= FUTURES_HEADER_FROM_MS)
    }

    pub fn is_daily(&self) -> bool {
        matches!(self.period, Period::Day { .. })
    }

    /// `[start, end)` in milliseconds: the records the file holds have their time (klines:
    /// open time) in it.
    pub fn span(&self) -> (i64, i64) {
        match self.period {
            Period::Day { y, m, d } => {
                let start = days_from_civil(y, m, d) * DAY_MS;
                (start, start + DAY_MS)
            }
            Period::Month { y, m } => {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * DAY_MS,
                    days_from_civil(ny, nm, 1) * DAY_MS,
                )
            }
        }
    }

    /// Whether the file's times are in microseconds (spot spans from 2025 on; futures stay in
    /// milliseconds).
    pub fn micros(&self) -> bool {
        !self.market.is_futures() && self.span().0 >= MICROS_FROM_MS
    }

    /// Whether the `.CHECKSUM` ends with a newline: Binance's files are inconsistent; here
    /// those of even days (daily) or even months (monthly) have one.
    pub fn checksum_newline(&self) -> bool {
        match self.period {
            Period::Day { d, .. } => d % 2 == 0,
            Period::Month { m, .. } => m % 2 == 0,
        }
    }

    /// When the file is published: the end of its span plus the configured delay.
    pub fn published_at(&self, f: &ArchiveFaults) -> i64 {
        let delay = if self.is_daily() {
            f.daily_delay
        } else {
            f.monthly_delay
        };
        self.span().1.saturating_add(ms(delay))
    }

    /// Whether the file exists at `now`: its span starts at or after the listing day (daily)
    /// or month (monthly), it is published, and the faults do not declare it missing.
    pub fn available(&self, listed_at: i64, now: i64, f: &ArchiveFaults) -> bool {
        let (start, _) = self.span();
        let first = if self.is_daily() {
            listed_at.div_euclid(DAY_MS) * DAY_MS
        } else {
            Interval::Mo1.align_down(listed_at)
        };
        let holes = if self.is_daily() {
            &f.missing_days
        } else {
            &f.missing_months
        };
        let date = self.date();
        start >= first && now >= self.published_at(f) && !holes.iter().any(|h| h.trim() == date)
    }

    /// Whether a file name given in the faults means this file: the zip name, the name without
    /// `.zip`, or the key with or without its leading `/`.
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim();
        let name = name.strip_prefix('/').unwrap_or(name);
        if name.starts_with("data/") {
            return name == self.zip_key();
        }
        match name.strip_suffix(".zip") {
            Some(stem) => stem == self.stem(),
            None => name == self.stem(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM` with a four-digit year.
pub(crate) fn parse_month(s: &str) -> Option<(i64, u32)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m) = (i64::from(number(y)?), number(m)?);
    (1..=12).contains(&m).then_some((y, m))
}

/// `YYYY-MM-DD` of a real calendar day.
pub(crate) fn parse_day(s: &str) -> Option<(i64, u32, u32)> {
    let (ym, d) = s.rsplit_once('-')?;
    let (y, m) = parse_month(ym)?;
    if d.len() != 2 {
        return None;
    }
    let d = number(d)?;
    (d >= 1 && civil_from_days(days_from_civil(y, m, d)) == (y, m, d)).then_some((y, m, d))
}

/// An HTTP date (`Tue, 02 Jan 2024 00:00:00 GMT`) of a time in ms.
pub(crate) fn http_date(t_ms: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = t_ms.div_euclid(DAY_MS);
    let secs = t_ms.rem_euclid(DAY_MS) / 1000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The UTC date `(year, month, day)` of a time in ms.
pub(crate) fn date_of(t_ms: i64) -> (i64, u32, u32) {
    civil_from_days(t_ms.div_euclid(DAY_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_print_back() {
        let cases = [
            "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip",
            "/data/spot/daily/klines/ETHBTC/1s/ETHBTC-1s-2024-02-29.zip",
            "/data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-01.zip",
            "/data/spot/monthly/klines/BTCUSDT/1w/BTCUSDT-1w-2024-01.zip",
            "/data/spot/daily/aggTrades/BNBUSDT/BNBUSDT-aggTrades-2023-12-31.zip",
            "/data/spot/monthly/trades/BTCFDUSD/BTCFDUSD-trades-2025-03.zip",
            "/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip",
            "/data/futures/um/monthly/markPriceKlines/BTCUSDT/1mo/BTCUSDT-1mo-2024-01.zip",
            "/data/futures/cm/daily/indexPriceKlines/BTCUSD/1h/BTCUSD-1h-2024-01-01.zip",
            "/data/futures/cm/daily/premiumIndexKlines/ETHUSD_PERP/1d/ETHUSD_PERP-1d-2021-01-01.zip",
            "/data/futures/cm/monthly/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2024-01.zip",
            "/data/futures/um/daily/trades/ETHUSDT/ETHUSDT-trades-2024-01-01.zip",
            "/data/futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-01-01.zip",
            "/data/futures/cm/daily/metrics/BTCUSD_PERP/BTCUSD_PERP-metrics-2021-12-31.zip",
        ];
        for path in cases {
            let (key, checksum) = parse_path(path).unwrap_or_else(|| panic!("{path}"));
            assert!(!checksum);
            assert_eq!(format!("/{}", key.zip_key()), path);
            let (again, checksum) = parse_path(&format!("{path}.CHECKSUM")).unwrap();
            assert!(checksum);
            assert_eq!(again, key);
        }
        let bad = [
            "/data/spot/daily/klines/BTCUSDT/1w/BTCUSDT-1w-2024-01-01.zip",
            "/data/spot/daily/klines/BTCUSDT/3d/BTCUSDT-3d-2024-01-01.zip",
            "/data/spot/daily/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-01-01.zip",
            "/data/spot/monthly/klines/BTCUSDT/1M/BTCUSDT-1M-2024-01.zip",
            "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02-30.zip",
            "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-1-01.zip",
            "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip",
            "/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip",
            "/data/spot/daily/klines/BTCUSDT/1m/ETHUSDT-1m-2024-01-01.zip",
            "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-5m-2024-01-01.zip",
            "/data/spot/daily/klines/NOPE/1m/NOPE-1m-2024-01-01.zip",
            "/data/spot/daily/klines/btcusdt/1m/btcusdt-1m-2024-01-01.zip",
            "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.csv",
            "/data/spot/daily/klines/BTCUSDT/1m/",
            "/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-trades-2024-01-01.zip",
            "/data/spot/daily/aggTrades/BTCUSDT/x/BTCUSDT-aggTrades-2024-01-01.zip",
            "/data/futures/um/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2024-01-01.zip",
            "/data/futures/um/daily/klines/ETHBTC/1m/ETHBTC-1m-2024-01-01.zip",
            "/data/futures/cm/daily/klines/BTCUSD/1m/BTCUSD-1m-2024-01-01.zip",
            "/data/futures/um/monthly/metrics/BTCUSDT/BTCUSDT-metrics-2024-01.zip",
            "/data/spot/daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-01-01.zip",
            "/data/spot/daily/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip",
            "/data/futures/xm/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip",
            "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip.CHECKSUM.zip",
        ];
        for path in bad {
            assert!(parse_path(path).is_none(), "{path}");
        }
    }

    #[test]
    fn spans_units_and_names() {
        let (k, _) =
            parse_path("/data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-12.zip").unwrap();
        assert_eq!(k.span(), (1_733_011_200_000, MICROS_FROM_MS));
        assert!(!k.micros());
        assert!(k.checksum_newline());
        assert!(k.is_named("BTCUSDT-1mo-2024-12.zip"));
        assert!(k.is_named("BTCUSDT-1mo-2024-12"));
        assert!(k.is_named("/data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-12.zip"));
        assert!(!k.is_named("BTCUSDT-1mo-2024-11.zip"));
        let (k, _) =
            parse_path("/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-01.zip").unwrap();
        assert_eq!(k.span(), (MICROS_FROM_MS, MICROS_FROM_MS + DAY_MS));
        assert!(k.micros());
        assert!(!k.checksum_newline());
        assert_eq!(k.stem(), "BTCUSDT-trades-2025-01-01");
    }

    #[test]
    fn availability_follows_listing_delay_and_holes() {
        let listed = 1_704_888_000_000; // 2024-01-10T12:00:00Z
        let key = |p: &str| parse_path(p).unwrap().0;
        let d9 = key("/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-09.zip");
        let d10 = key("/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-10.zip");
        let dec = key("/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2023-12.zip");
        let jan = key("/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01.zip");
        let f = ArchiveFaults::default();
        let end10 = d10.span().1;
        assert!(!d9.available(listed, i64::MAX, &f));
        assert!(!d10.available(listed, end10 - 1, &f));
        assert!(d10.available(listed, end10, &f));
        assert!(!dec.available(listed, i64::MAX, &f));
        assert!(jan.available(listed, jan.span().1, &f));
        let f = ArchiveFaults {
            daily_delay: Duration::from_secs(3600),
            missing_months: vec!["2024-01".into()],
            ..ArchiveFaults::default()
        };
        assert!(!d10.available(listed, end10 + 3_599_999, &f));
        assert!(d10.available(listed, end10 + 3_600_000, &f));
        assert!(!jan.available(listed, i64::MAX, &f));
        let f = ArchiveFaults {
            missing_days: vec!["2024-01-10".into()],
            ..ArchiveFaults::default()
        };
        assert!(!d10.available(listed, i64::MAX, &f));
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_704_153_599_000),
            "Mon, 01 Jan 2024 23:59:59 GMT"
        );
        assert_eq!(date_of(MICROS_FROM_MS - 1), (2024, 12, 31));
        assert_eq!(parse_day("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("2024-00-10"), None);
        assert_eq!(parse_month("2024-7"), None);
        assert_eq!(parse_month("+024-07"), None);
    }
}
