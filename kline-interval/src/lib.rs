//! Binance kline intervals: parsing from and printing to Binance's interval strings, and the
//! calendar arithmetic of candle open times (epoch-aligned fixed intervals, Monday-aligned weeks,
//! calendar months in UTC).

use std::fmt;
use std::str::FromStr;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;
/// The Unix epoch was a Thursday; the first Monday 00:00 UTC after it is 1970-01-05.
const WEEK_OFFSET: i64 = 4 * DAY;

/// A Binance kline (candlestick) interval.
///
/// Open times are aligned like Binance's:
/// - fixed intervals (`1s` … `1d`, and `3d`) start at multiples of their length since the Unix
///   epoch (UTC);
/// - `1w` candles start on Monday 00:00 UTC;
/// - `1M` candles start on the first day of a calendar month, 00:00 UTC.
///
/// A candle is identified by its open time; its close time is the next open time minus 1 ms.
/// All times are milliseconds since the Unix epoch.
///
/// ```
/// use kline_interval::Interval;
/// let iv: Interval = "1w".parse().unwrap();
/// assert_eq!(iv, Interval::W1);
/// assert_eq!(iv.to_string(), "1w");
/// // 2024-01-03 (a Wednesday) lies in the week opened on Monday 2024-01-01.
/// assert_eq!(iv.align_down(1_704_240_000_000), 1_704_067_200_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    /// `1s`
    S1,
    /// `1m`
    M1,
    /// `3m`
    M3,
    /// `5m`
    M5,
    /// `15m`
    M15,
    /// `30m`
    M30,
    /// `1h`
    H1,
    /// `2h`
    H2,
    /// `4h`
    H4,
    /// `6h`
    H6,
    /// `8h`
    H8,
    /// `12h`
    H12,
    /// `1d`
    D1,
    /// `3d`
    D3,
    /// `1w` (weeks start Monday 00:00 UTC)
    W1,
    /// `1M` (calendar months, UTC)
    Mo1,
}

/// Error returned when a string is not one of Binance's interval names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseIntervalError {
    input: String,
}

impl ParseIntervalError {
    /// The string that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseIntervalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid kline interval '{}'; valid values are ",
            self.input
        )?;
        for (i, iv) in Interval::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(iv.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseIntervalError {}

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 16] = [
        Interval::S1,
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::D3,
        Interval::W1,
        Interval::Mo1,
    ];

    /// Binance's name of the interval as used in REST and WebSocket APIs (`"1s"`, …, `"1M"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::S1 => "1s",
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::D3 => "3d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    /// The name used in `data.binance.vision` archive paths and file names: the same as
    /// [`as_str`](Self::as_str) except that one month is `"1mo"` there.
    pub const fn archive_str(self) -> &'static str {
        match self {
            Interval::Mo1 => "1mo",
            other => other.as_str(),
        }
    }

    /// The length in milliseconds for intervals of fixed length (everything but `1M`).
    pub const fn fixed_ms(self) -> Option<i64> {
        Some(match self {
            Interval::S1 => SECOND,
            Interval::M1 => MINUTE,
            Interval::M3 => 3 * MINUTE,
            Interval::M5 => 5 * MINUTE,
            Interval::M15 => 15 * MINUTE,
            Interval::M30 => 30 * MINUTE,
            Interval::H1 => HOUR,
            Interval::H2 => 2 * HOUR,
            Interval::H4 => 4 * HOUR,
            Interval::H6 => 6 * HOUR,
            Interval::H8 => 8 * HOUR,
            Interval::H12 => 12 * HOUR,
            Interval::D1 => DAY,
            Interval::D3 => 3 * DAY,
            Interval::W1 => WEEK,
            Interval::Mo1 => return None,
        })
    }

    /// The nominal length in milliseconds (30 days for `1M`); exact for every other interval.
    pub const fn nominal_ms(self) -> i64 {
        match self.fixed_ms() {
            Some(ms) => ms,
            None => 30 * DAY,
        }
    }

    /// The open time of the candle that contains `t` (the largest open time `<= t`).
    pub fn align_down(self, t: i64) -> i64 {
        match self {
            Interval::Mo1 => {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY));
                days_from_civil(y, m, 1) * DAY
            }
            Interval::W1 => (t - WEEK_OFFSET).div_euclid(WEEK) * WEEK + WEEK_OFFSET,
            fixed => {
                let len = fixed.nominal_ms();
                t.div_euclid(len) * len
            }
        }
    }

    /// The smallest open time `>= t` (`t` itself when it is an open time).
    pub fn align_up(self, t: i64) -> i64 {
        let down = self.align_down(t);
        if down == t {
            t
        } else {
            self.next_open(t)
        }
    }

    /// Whether `t` is the open time of a candle of this interval.
    pub fn is_open_time(self, t: i64) -> bool {
        self.align_down(t) == t
    }

    /// The smallest open time strictly greater than `t`; for an open time, the next candle's.
    pub fn next_open(self, t: i64) -> i64 {
        let down = self.align_down(t);
        match self {
            Interval::Mo1 => {
                let (y, m, _) = civil_from_days(down.div_euclid(DAY));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(ny, nm, 1) * DAY
            }
            fixed => down + fixed.nominal_ms(),
        }
    }

    /// The largest open time strictly smaller than `t`; for an open time, the previous candle's.
    pub fn prev_open(self, t: i64) -> i64 {
        self.align_down(t - 1)
    }

    /// The close time of the candle opened at `open`: the next open time minus 1 ms.
    pub fn close_time(self, open: i64) -> i64 {
        self.next_open(open) - 1
    }

    /// The length of the candle opened at `open` in milliseconds.
    pub fn len_at(self, open: i64) -> i64 {
        self.next_open(open) - self.align_down(open)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = ParseIntervalError;

    /// Parses Binance's interval names, case-sensitively (`"1m"` is a minute, `"1M"` a month).
    /// The archive spelling `"1mo"` is accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "1mo" {
            return Ok(Interval::Mo1);
        }
        Interval::ALL
            .iter()
            .copied()
            .find(|iv| iv.as_str() == s)
            .ok_or_else(|| ParseIntervalError {
                input: s.to_string(),
            })
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T_2017_08_17: i64 = 1_502_928_000_000;

    #[test]
    fn parse_and_display_round_trip() {
        for iv in Interval::ALL {
            assert_eq!(iv.as_str().parse::<Interval>().unwrap(), iv);
            assert_eq!(iv.to_string(), iv.as_str());
        }
        assert_eq!("1mo".parse::<Interval>().unwrap(), Interval::Mo1);
        assert_eq!(Interval::Mo1.archive_str(), "1mo");
        let err = "2w".parse::<Interval>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'2w'"), "{msg}");
        assert!(msg.contains("1s, 1m, 3m"), "{msg}");
        assert!(msg.ends_with("1w, 1M"), "{msg}");
        assert!("1H".parse::<Interval>().is_err());
    }

    #[test]
    fn calendar_round_trip() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(T_2017_08_17 / DAY), (2017, 8, 17));
    }

    #[test]
    fn fixed_intervals_align_to_epoch() {
        let t = T_2017_08_17 + 12 * HOUR + 34 * MINUTE + 56_789;
        assert_eq!(
            Interval::M1.align_down(t),
            T_2017_08_17 + 12 * HOUR + 34 * MINUTE
        );
        assert_eq!(
            Interval::M15.align_down(t),
            T_2017_08_17 + 12 * HOUR + 30 * MINUTE
        );
        assert_eq!(Interval::H4.align_down(t), T_2017_08_17 + 12 * HOUR);
        assert_eq!(Interval::D1.align_down(t), T_2017_08_17);
        assert_eq!(Interval::D3.align_down(t) % (3 * DAY), 0);
        assert_eq!(
            Interval::M1.align_up(t),
            T_2017_08_17 + 12 * HOUR + 35 * MINUTE
        );
        assert_eq!(Interval::M1.align_up(T_2017_08_17), T_2017_08_17);
        assert_eq!(
            Interval::M1.close_time(T_2017_08_17),
            T_2017_08_17 + MINUTE - 1
        );
        assert_eq!(Interval::S1.prev_open(T_2017_08_17), T_2017_08_17 - 1000);
        assert_eq!(Interval::M1.align_down(-1), -MINUTE);
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2017-08-17 was a Thursday; its week opened Monday 2017-08-14.
        let monday = 1_502_668_800_000;
        assert_eq!(Interval::W1.align_down(T_2017_08_17), monday);
        assert_eq!(Interval::W1.align_up(T_2017_08_17), monday + WEEK);
        assert_eq!(Interval::W1.next_open(monday), monday + WEEK);
        assert_eq!(Interval::W1.close_time(monday), monday + WEEK - 1);
        assert!(Interval::W1.is_open_time(monday));
        for k in -10..10 {
            let open = monday + k * WEEK;
            let (_, _, _) = civil_from_days(open / DAY);
            // 1970-01-05 (day 4) was a Monday: (days - 4) % 7 == 0 for every Monday.
            assert_eq!((open.div_euclid(DAY) - 4).rem_euclid(7), 0);
        }
    }

    #[test]
    fn months_follow_the_calendar() {
        let aug = days_from_civil(2017, 8, 1) * DAY;
        let sep = days_from_civil(2017, 9, 1) * DAY;
        assert_eq!(Interval::Mo1.align_down(T_2017_08_17), aug);
        assert_eq!(Interval::Mo1.align_up(T_2017_08_17), sep);
        assert_eq!(Interval::Mo1.next_open(aug), sep);
        assert_eq!(Interval::Mo1.close_time(aug), sep - 1);
        assert_eq!(Interval::Mo1.len_at(aug), 31 * DAY);
        let dec = days_from_civil(2023, 12, 1) * DAY;
        let jan = days_from_civil(2024, 1, 1) * DAY;
        let feb = days_from_civil(2024, 2, 1) * DAY;
        let mar = days_from_civil(2024, 3, 1) * DAY;
        assert_eq!(Interval::Mo1.next_open(dec), jan);
        assert_eq!(Interval::Mo1.prev_open(jan), dec);
        assert_eq!(Interval::Mo1.len_at(feb), 29 * DAY);
        assert_eq!(Interval::Mo1.next_open(feb + 5), mar);
        assert_eq!(jan, 1_704_067_200_000);
    }

    #[test]
    fn serde_uses_binance_names() {
        let json = serde_json::to_string(&Interval::Mo1).unwrap();
        assert_eq!(json, "\"1M\"");
        let back: Interval = serde_json::from_str("\"15m\"").unwrap();
        assert_eq!(back, Interval::M15);
        assert!(serde_json::from_str::<Interval>("\"7m\"").is_err());
    }
}
