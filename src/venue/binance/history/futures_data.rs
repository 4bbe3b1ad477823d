//! Futures statistics per period (`api_open_interest_<period>`, `api_long_short_ratio_<period>`,
//! `api_top_long_short_account_ratio_<period>`, `api_top_long_short_position_ratio_<period>`):
//! one record per period-aligned time in the range, exactly once, from `/futures/data/…`.
//!
//! Binance keeps these series for the last 30 days only. Open interest before that comes from
//! the archive's daily `metrics` files (5-minute rows; a coarser period keeps the rows on its
//! grid, which are the same snapshots REST returns); the metrics files' ratios lack the long and
//! short shares these records carry, so for the ratios a range that starts earlier is refused
//! with the earliest start that works, before anything is published. Requests ask for windows of at most 500 periods each, so Binance's answer is the
//! same whether it counts from startTime or back from endTime.

use chrono::NaiveDateTime;
use futures::future::BoxFuture;

use super::Rest;
use crate::archive::{fields, ArchiveLayout};
use crate::error::{LoaderError, Result};
use crate::market::Market;
use crate::record::{LongShortRatioRecord, RecordBatch};
use crate::registry::FuturesSeries;
use crate::registry::{futures_series_tag, Origin, RecordKind};
use crate::source_mode::SourceMode;
use crate::time_range::{fmt_ms, TimeRange};
use crate::venue::binance::api::RawFuturesData;
use crate::venue::binance::endpoint::MAX_FUTURES_DATA_PAGE;
use crate::venue::binance::Interval;
use crate::venue::history::{Cursor, Emitter, History, HistoryContext, Probe, RestFrom};

/// How far back `/futures/data/` answers.
pub const REST_RETENTION_MS: i64 = 30 * 86_400_000;

/// Asking this much later than the oldest time Binance keeps leaves room for the time a load
/// takes to reach the request.
const RETENTION_MARGIN_MS: i64 = 10 * 60_000;

pub struct FuturesDataHistory {
    pub series: FuturesSeries,
    pub period: Interval,
    pub rest: Rest,
}

impl FuturesDataHistory {
    fn period_ms(&self) -> i64 {
        self.period
            .fixed_ms()
            .expect("statistics periods are fixed")
    }

    /// The oldest period time REST still serves at `now`.
    pub fn oldest_on_rest(&self, now: i64) -> i64 {
        self.period
            .align_up(now - REST_RETENTION_MS + RETENTION_MARGIN_MS)
    }

    fn push(&self, batch: &mut RecordBatch, t: i64, values: Values<'_>) -> Result<()> {
        let period = self.period.as_str();
        let missing = |what: &str| {
            LoaderError::Exchange(format!(
                "Binance sent a {} row without {what}",
                self.series.endpoint_name()
            ))
        };
        let ratio = match self.series {
            FuturesSeries::OpenInterest => {
                return batch.push_open_interest(
                    period,
                    t,
                    values.a.ok_or_else(|| missing("sumOpenInterest"))?,
                    Some(values.b.ok_or_else(|| missing("sumOpenInterestValue"))?),
                )
            }
            FuturesSeries::GlobalAccountRatio => "global_accounts",
            FuturesSeries::TopAccountRatio => "top_accounts",
            FuturesSeries::TopPositionRatio => "top_positions",
        };
        let key = batch.key_of(&[futures_series_tag(self.series), period], t);
        let symbol = batch.symbol.clone();
        let rec = LongShortRatioRecord {
            _key: &key,
            market: batch.venue.market_name(batch.market),
            symbol: &symbol,
            ratio,
            period,
            timestamp: t,
            long_short_ratio: values.a.ok_or_else(|| missing("longShortRatio"))?,
            long_share: values.b.ok_or_else(|| missing("the long share"))?,
            short_share: values.c.ok_or_else(|| missing("the short share"))?,
        };
        let result = batch.push_record(t, &key, &rec);
        batch.reuse_key(key);
        result
    }
}

/// A row's values: open interest and its value, or ratio, long share and short share.
struct Values<'a> {
    a: Option<&'a str>,
    b: Option<&'a str>,
    c: Option<&'a str>,
}

impl<'a> Values<'a> {
    fn of(series: FuturesSeries, r: &RawFuturesData<'a>) -> Self {
        match series {
            FuturesSeries::OpenInterest => Values {
                a: r.sum_open_interest,
                b: r.sum_open_interest_value,
                c: None,
            },
            _ => Values {
                a: r.long_short_ratio,
                b: r.long_account,
                c: r.short_account,
            },
        }
    }
}

/// `2024-01-01 00:05:00` (UTC) or epoch ms, as metrics files have written it.
fn metrics_time(row: &csv::StringRecord) -> std::result::Result<i64, String> {
    let t = fields::text(row, 0, "create time")?;
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .map(|d| d.and_utc().timestamp_millis())
        .map_err(|_| format!("column 1 (create time) is not a time: {t:?}"))
}

impl History for FuturesDataHistory {
    fn kind(&self) -> RecordKind {
        RecordKind::FuturesData(self.series, self.period)
    }

    fn has_rest(&self) -> bool {
        self.rest.is_some()
    }

    fn archive_layout(&self, market: Market, symbol: &str) -> Option<ArchiveLayout> {
        (self.series == FuturesSeries::OpenInterest).then(|| {
            super::archive_layout(
                market,
                &format!("metrics/{symbol}"),
                &format!("{symbol}-metrics"),
                true,
                false,
            )
        })
    }

    /// `create_time, symbol, sum_open_interest, sum_open_interest_value, …` every 5 minutes;
    /// rows off this period's grid are skipped.
    fn push_csv_row(
        &self,
        row: &csv::StringRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        let bad = LoaderError::Exchange;
        let t = metrics_time(row).map_err(bad)?;
        if t.rem_euclid(self.period_ms()) != 0 || !cursor.admit(t, t) {
            return Ok(());
        }
        let values = Values {
            a: Some(fields::text(row, 2, "sum open interest").map_err(bad)?),
            b: Some(fields::text(row, 3, "sum open interest value").map_err(bad)?),
            c: None,
        };
        self.push(batch, t, values)
    }

    /// Open interest older than REST keeps comes from the metrics files, the partial days at
    /// the range's edges filtered from theirs; the ratios have no such source (their refusal is
    /// in [`load_rest`](History::load_rest), which names what the files lack).
    fn rest_from(&self, ctx: &HistoryContext) -> Option<RestFrom> {
        (self.series == FuturesSeries::OpenInterest).then(|| RestFrom {
            ms: self.oldest_on_rest(ctx.now_ms()) + crate::time_range::DAY_MS,
            why: format!(
                "Binance keeps {} for the last 30 days only",
                self.series.endpoint_name()
            ),
        })
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let exchange = self.rest.get(&ctx.symbol)?;
            let period = self.period_ms();
            let mut from = match cursor.last {
                Some(last) => (last + 1).max(span.start_ms),
                None => span.start_ms,
            };
            from = self.period.align_up(from);
            let oldest = self.oldest_on_rest(exchange.server_now_ms());
            if from < oldest && from < span.end_ms {
                let older = match (self.series, ctx.mode) {
                    (FuturesSeries::OpenInterest, SourceMode::Rest) => {
                        "; older open interest is in the archive's metrics files: use SOURCE=auto"
                    }
                    (FuturesSeries::OpenInterest, _) => {
                        "; the archive's metrics file of that day is not available either"
                    }
                    // The metrics files hold older ratios, but not the long and short shares
                    // these records carry.
                    _ => " (the archive's metrics files have older ratios but not the long/short shares)",
                };
                return Err(LoaderError::config(format!(
                    "TIME_RANGE: Binance keeps {} for the last 30 days only{older}; {} for {} asks for {}, the earliest start that works now is {}",
                    self.series.endpoint_name(),
                    ctx.market,
                    ctx.symbol,
                    fmt_ms(from),
                    fmt_ms(oldest)
                )));
            }
            let per_window = i64::from(MAX_FUTURES_DATA_PAGE);
            while from < span.end_ms {
                let to = (from + per_window * period).min(span.end_ms);
                let n = ((to - from + period - 1) / period) as u32;
                let page = exchange
                    .paged(exchange.futures_data(
                        self.series,
                        &ctx.symbol,
                        self.period,
                        from,
                        to - 1,
                        n,
                    ))
                    .await?;
                let rows = page.rows()?;
                let mut batch = ctx.batch(rows.len());
                for r in &rows {
                    if r.timestamp < to && cursor.admit(r.timestamp, r.timestamp) {
                        self.push(&mut batch, r.timestamp, Values::of(self.series, r))?;
                    }
                }
                drop(rows);
                out.send(batch, Origin::Rest).await?;
                from = to;
            }
            Ok(())
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let exchange = self.rest.get(symbol)?;
            let Some((from, to_inclusive)) = probe.time_bounds(Some(self.period)) else {
                return Ok(false);
            };
            // Older than REST remembers: the exchange cannot say, so the gap counts as lost.
            if from < self.oldest_on_rest(exchange.server_now_ms()) {
                return Ok(true);
            }
            let to = to_inclusive.min(from + self.period_ms() * (MAX_FUTURES_DATA_PAGE as i64 - 1));
            let page = exchange
                .futures_data(self.series, symbol, self.period, from, to, 1)
                .await?;
            Ok(!page.rows()?.is_empty())
        })
    }
}
