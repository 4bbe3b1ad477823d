//! `TIME_RANGE` parsing: the half-open UTC interval `[start, end)` a job loads.
//!
//! Accepted on either side of the `:` separator: `YYYY-MM-DD` (UTC midnight), an RFC 3339
//! date-time, or epoch milliseconds. Two equal dates mean that whole day, because that is how the
//! platform's own examples ask for "one day".

use chrono::{DateTime, NaiveDate, Utc};

pub const DAY_MS: i64 = 86_400_000;

/// A half-open interval of epoch milliseconds, `start <= t < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

const FORMAT_HELP: &str = "expected START:END where each side is YYYY-MM-DD (UTC), an RFC 3339 \
date-time such as 2024-01-01T00:00:00Z, or epoch milliseconds; for example 2024-01-01:2024-01-08";

#[derive(Clone, Copy, PartialEq)]
enum Bound {
    Date(i64),
    Instant(i64),
}

impl Bound {
    fn ms(self) -> i64 {
        match self {
            Bound::Date(ms) | Bound::Instant(ms) => ms,
        }
    }
}

fn parse_bound(s: &str) -> Option<Bound> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        // Ten digits or fewer would be epoch seconds: refuse rather than silently load 1970.
        return if s.len() >= 11 {
            s.parse().ok().map(Bound::Instant)
        } else {
            None
        };
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Bound::Date(
            d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis(),
        ));
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| Bound::Instant(t.with_timezone(&Utc).timestamp_millis()))
}

impl TimeRange {
    /// Parses a `TIME_RANGE` value; errors name the variable and the accepted format.
    pub fn parse(value: &str) -> Result<TimeRange, String> {
        let value = value.trim();
        // RFC 3339 times contain colons too, so try every colon as the separator.
        let mut found = None;
        for (i, _) in value.match_indices(':') {
            if let (Some(a), Some(b)) = (parse_bound(&value[..i]), parse_bound(&value[i + 1..])) {
                found = Some((a, b));
                break;
            }
        }
        let Some((a, b)) = found else {
            return Err(format!(
                "TIME_RANGE {value:?} is not a time range: {FORMAT_HELP}"
            ));
        };
        let start_ms = a.ms();
        let end_ms = match (a, b) {
            (Bound::Date(x), Bound::Date(y)) if x == y => y + DAY_MS,
            _ => b.ms(),
        };
        if end_ms < start_ms {
            return Err(format!(
                "TIME_RANGE {value:?} ends before it starts: the end must be after the start ({FORMAT_HELP})"
            ));
        }
        if end_ms == start_ms {
            return Err(format!(
                "TIME_RANGE {value:?} is empty: the range is half-open [start, end), so the end must be \
                 after the start (two equal dates mean that whole day)"
            ));
        }
        Ok(TimeRange { start_ms, end_ms })
    }

    pub fn len_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    pub fn contains(&self, t: i64) -> bool {
        t >= self.start_ms && t < self.end_ms
    }
}

/// Formats epoch milliseconds as an RFC 3339 UTC string for messages.
pub fn fmt_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

impl std::fmt::Display for TimeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {})", fmt_ms(self.start_ms), fmt_ms(self.end_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN1: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

    #[test]
    fn dates_are_half_open_utc() {
        let r = TimeRange::parse("2024-01-01:2024-01-03").unwrap();
        assert_eq!(
            r,
            TimeRange {
                start_ms: JAN1,
                end_ms: JAN1 + 2 * DAY_MS
            }
        );
    }

    #[test]
    fn equal_dates_mean_that_day() {
        let r = TimeRange::parse("2024-01-01:2024-01-01").unwrap();
        assert_eq!(
            r,
            TimeRange {
                start_ms: JAN1,
                end_ms: JAN1 + DAY_MS
            }
        );
    }

    #[test]
    fn rfc3339_and_epoch_ms_mix() {
        let r = TimeRange::parse("2024-01-01T00:00:00Z:1704070800000").unwrap();
        assert_eq!(
            r,
            TimeRange {
                start_ms: JAN1,
                end_ms: JAN1 + 3_600_000
            }
        );
        let r = TimeRange::parse("2024-01-01T01:00:00+01:00:2024-01-01T00:30:00Z").unwrap();
        assert_eq!(
            r,
            TimeRange {
                start_ms: JAN1,
                end_ms: JAN1 + 1_800_000
            }
        );
    }

    #[test]
    fn bad_ranges_name_the_variable() {
        for bad in [
            "",
            "garbage",
            "2024-01-01",
            "2024-13-01:2024-01-02",
            "1704067200:1704070800",
        ] {
            let e = TimeRange::parse(bad).unwrap_err();
            assert!(e.contains("TIME_RANGE") && e.contains("YYYY-MM-DD"), "{e}");
        }
        let e = TimeRange::parse("2024-01-03:2024-01-01").unwrap_err();
        assert!(e.contains("ends before it starts"), "{e}");
        let e = TimeRange::parse("1704067200000:1704067200000").unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
