//! Candles (`api_candles_<interval>`): every closed candle whose open time lies in the range,
//! exactly once, from the archive's `klines` files and the REST `klines` endpoint.
//!
//! Over REST the range is cut into windows of one page (`limit` candles) each, fetched
//! concurrently with `buffered`, which yields them in window order, so records still reach Kafka
//! in time order. Each request is bounded by `endTime` so no page overshoots the range, and the
//! next request in a window starts one millisecond after the last open time seen, so page
//! boundaries never repeat. [`pages`] is the one implementation of that paging; live candles
//! use it for their backfills too.

use futures::future::BoxFuture;
use futures::{stream, Stream, StreamExt};

use super::{Cursor, Emitter, History, HistoryContext, Probe};
use crate::archive::{fields, ArchiveLayout};
use crate::binance::api::{Klines, Page};
use crate::binance::{Exchange, Interval};
use crate::error::{LoaderError, Result};
use crate::record::{RawKline, RecordBatch};
use crate::registry::{Origin, RecordKind};
use crate::time_range::TimeRange;

/// How long after its close a candle counts as settled (the same margin as trades).
pub const SETTLE_MS: i64 = 1_000;

pub struct KlineHistory {
    pub interval: Interval,
}

/// The pages of candles with open time in `[from, to)`, in order: windows of `limit` candles
/// fetched `concurrency` at a time.
pub fn pages<'a>(
    exchange: &'a Exchange,
    symbol: &'a str,
    interval: Interval,
    from: i64,
    to: i64,
    limit: u32,
    concurrency: usize,
) -> impl Stream<Item = Result<Vec<Page<Klines>>>> + Send + 'a {
    stream::iter(windows(interval, interval.align_up(from), to, limit as i64))
        .map(move |(ws, we)| window(exchange, symbol, interval, ws, we, limit))
        .buffered(concurrency.max(1))
}

/// All candles with open time in `[ws, we)`: usually one request.
async fn window(
    exchange: &Exchange,
    symbol: &str,
    iv: Interval,
    ws: i64,
    we: i64,
    limit: u32,
) -> Result<Vec<Page<Klines>>> {
    let mut out = Vec::with_capacity(1);
    let mut cursor = ws;
    while cursor < we {
        let page = exchange.klines(symbol, iv, cursor, we - 1, limit).await?;
        let rows = page.rows()?;
        let last_open = rows.iter().map(|r| r.0).filter(|&t| t < we).max();
        let n = rows.len();
        drop(rows);
        out.push(page);
        // A short page, or a full one that reached the window's last candle, is the end:
        // asking again would only cost weight for an empty answer.
        match last_open {
            Some(last) if n >= limit as usize && iv.next_open(last) < we && last >= cursor => {
                cursor = last + 1
            }
            _ => break,
        }
    }
    Ok(out)
}

/// `[start, end)` windows of `per_window` candles each, covering `[first, end)`.
fn windows(iv: Interval, first: i64, end: i64, per_window: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut w = first;
    while w < end {
        let mut we = w;
        for _ in 0..per_window {
            we = iv.next_open(we);
            if we >= end {
                break;
            }
        }
        let we = we.min(end);
        out.push((w, we));
        w = we;
    }
    out
}

impl History for KlineHistory {
    fn kind(&self) -> RecordKind {
        RecordKind::Candles(self.interval)
    }

    fn settled_end(&self, now: i64) -> i64 {
        // Candles opened before this have closed at least SETTLE_MS ago.
        self.interval.align_down(now - SETTLE_MS)
    }

    fn archive_layout(&self, symbol: &str) -> Option<ArchiveLayout> {
        let iv = self.interval.archive_str();
        Some(ArchiveLayout {
            market: "data/spot",
            dir: format!("klines/{symbol}/{iv}"),
            stem: format!("{symbol}-{iv}"),
            // Daily kline files exist up to 1d; 3d, 1w and 1mo only monthly.
            daily: self.interval.fixed_ms().is_some_and(|ms| ms <= 86_400_000),
        })
    }

    fn push_csv_row(
        &self,
        row: &csv::ByteRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        let bad = LoaderError::Exchange;
        let open = fields::time_ms(row, 0, "open time").map_err(bad)?;
        if !cursor.admit(open, open) {
            return Ok(());
        }
        let t = |i, what| fields::text(row, i, what).map_err(LoaderError::Exchange);
        let k = RawKline(
            open,
            t(1, "open")?,
            t(2, "high")?,
            t(3, "low")?,
            t(4, "close")?,
            t(5, "volume")?,
            fields::time_ms(row, 6, "close time").map_err(bad)?,
            t(7, "quote volume")?,
            fields::uint(row, 8, "trades").map_err(bad)?,
            t(9, "taker buy base volume")?,
            t(10, "taker buy quote volume")?,
            serde::de::IgnoredAny,
        );
        batch.push_kline(self.interval.as_str(), &k)
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let exchange = ctx.rest()?;
            let iv = self.interval;
            let from = match cursor.last {
                Some(last) => iv.next_open(last).max(span.start_ms),
                None => span.start_ms,
            };
            let mut pages = std::pin::pin!(pages(
                exchange,
                &ctx.symbol,
                iv,
                from,
                span.end_ms,
                ctx.page_limit,
                ctx.concurrency
            ));
            while let Some(window) = pages.next().await {
                let window = window?;
                let mut batch = RecordBatch::new(ctx.symbol.clone(), ctx.page_limit as usize);
                for page in &window {
                    for row in page.rows()? {
                        // Guard the range and page boundaries even if the server overshoots.
                        if row.0 < span.end_ms && cursor.admit(row.0, row.0) {
                            batch.push_kline(iv.as_str(), &row)?;
                        }
                    }
                }
                out.send(batch, Origin::Rest).await?;
            }
            Ok(())
        })
    }

    fn exists<'a>(
        &'a self,
        exchange: &'a Exchange,
        symbol: &'a str,
        probe: Probe,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let (from, to_inclusive) = match probe {
                Probe::Ordinals(a, b) => (a, b),
                Probe::Time(r) => (self.interval.align_up(r.start_ms), r.end_ms - 1),
            };
            if to_inclusive < from {
                return Ok(false);
            }
            let page = exchange
                .klines(symbol, self.interval, from, to_inclusive, 1)
                .await?;
            Ok(!page.rows()?.is_empty())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_range() {
        let iv: Interval = "1m".parse().unwrap();
        let w = windows(iv, 0, 2_500 * 60_000, 1000);
        assert_eq!(
            w,
            vec![
                (0, 60_000_000),
                (60_000_000, 120_000_000),
                (120_000_000, 150_000_000)
            ]
        );
        let month: Interval = "1M".parse().unwrap();
        let start = 1_704_067_200_000; // 2024-01-01
        let w = windows(month, start, start + 400 * 86_400_000, 1000);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn the_newest_candle_waits_the_same_settling_margin_as_trades() {
        let kh = KlineHistory {
            interval: Interval::M1,
        };
        let ten = 1_704_103_200_000; // 2024-01-01T10:00:00Z
                                     // At 10:00:00.500 the 09:59 candle closed half a second ago: not settled yet.
        assert_eq!(kh.settled_end(ten + 500), ten - 60_000);
        assert_eq!(kh.settled_end(ten + SETTLE_MS), ten);
        let trades =
            crate::source::trade_ids::TradeHistory::<crate::binance::api::AggTrades>::new();
        assert_eq!(trades.settled_end(ten + 500), ten + 500 - SETTLE_MS);
    }

    #[test]
    fn csv_rows_become_the_same_records_as_rest_rows() {
        let kh = KlineHistory {
            interval: Interval::M1,
        };
        let range = TimeRange {
            start_ms: 0,
            end_ms: i64::MAX,
        };
        let rest = br#"[[1735689600000,"1.00000000","2.00000000","0.50000000","1.50000000","10.00000000",1735689659999,"15.00000000",7,"5.00000000","7.50000000","0"]]"#;
        let rows: Vec<RawKline> = serde_json::from_slice(rest).unwrap();
        let mut from_rest = RecordBatch::new("BTCUSDT".into(), 1);
        from_rest.push_kline("1m", &rows[0]).unwrap();
        // The same candle in a 2025 archive file: microsecond times.
        let csv_row = csv::ByteRecord::from(vec![
            "1735689600000000",
            "1.00000000",
            "2.00000000",
            "0.50000000",
            "1.50000000",
            "10.00000000",
            "1735689659999999",
            "15.00000000",
            "7",
            "5.00000000",
            "7.50000000",
            "0",
        ]);
        let mut from_csv = RecordBatch::new("BTCUSDT".into(), 1);
        kh.push_csv_row(&csv_row, &mut Cursor::new(kh.kind(), range), &mut from_csv)
            .unwrap();
        assert_eq!(from_rest.iter().next(), from_csv.iter().next());
    }
}
