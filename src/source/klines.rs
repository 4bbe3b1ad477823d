//! `KlineSource`: every closed candle whose open time lies in the range, exactly once.
//!
//! The range is cut into windows of one page (`limit` candles) each, fetched concurrently with
//! `buffered`, which yields them in window order, so records still reach Kafka in time order.
//! Each request is bounded by `endTime` so no page overshoots the range, and the next request in a
//! window starts one millisecond after the last open time seen, so page boundaries never repeat.

use futures::{stream, StreamExt};
use tokio::sync::mpsc;

use super::{SourceContext, SourceSummary};
use crate::binance::{exchange_error, Interval};
use crate::error::{LoaderError, Result};
use crate::record::{RawKline, RecordBatch};
use crate::time_range::fmt_ms;

pub struct KlineSource {
    pub ctx: SourceContext,
    pub interval: Interval,
}

impl KlineSource {
    pub async fn run(self, tx: mpsc::Sender<RecordBatch>) -> Result<SourceSummary> {
        let ctx = &self.ctx;
        let range = ctx.required_range()?;
        let iv = self.interval;
        let mut summary = SourceSummary {
            symbol: ctx.symbol.to_string(),
            ..Default::default()
        };
        // Only closed candles: the one open now is still changing.
        let current_open = iv.align_down(ctx.exchange.server_now_ms());
        let end = if range.end_ms > current_open {
            tracing::info!(
                symbol = %ctx.symbol,
                requested_end = %fmt_ms(range.end_ms),
                loading_until = %fmt_ms(current_open),
                "TIME_RANGE reaches past the present: loading the closed candles that exist"
            );
            summary.clamped_end = Some(current_open);
            current_open
        } else {
            range.end_ms
        };
        let first = iv.align_up(range.start_ms);
        let limit = ctx.page_limit as i64;
        let windows = window_starts(iv, first, end, limit);
        let iv_name = iv.to_string();
        let mut pages = stream::iter(windows)
            .map(|(ws, we)| self.fetch_window(ws, we, &iv_name))
            .buffered(ctx.concurrency);
        while let Some(batch) = pages.next().await {
            let batch = batch?;
            if batch.is_empty() {
                continue;
            }
            summary.note(&batch);
            if tx.send(batch).await.is_err() {
                break; // the sink stopped; it reports why
            }
        }
        Ok(summary)
    }

    /// All candles with open time in `[ws, we)`, in order, one request per page.
    async fn fetch_window(&self, ws: i64, we: i64, iv_name: &str) -> Result<RecordBatch> {
        let ctx = &self.ctx;
        let mut batch = RecordBatch::new(ctx.symbol.clone(), ctx.page_limit as usize);
        let mut cursor = ws;
        let mut last_open = i64::MIN;
        while cursor < we {
            let query = [
                ("symbol", ctx.symbol.to_string()),
                ("interval", iv_name.to_string()),
                ("startTime", cursor.to_string()),
                ("endTime", (we - 1).to_string()),
                ("limit", ctx.page_limit.to_string()),
            ];
            let body = ctx
                .exchange
                .client
                .get("/api/v3/klines", &query, 2)
                .await
                .map_err(|e| exchange_error(e, Some(&ctx.symbol)))?;
            let rows: Vec<RawKline> = serde_json::from_slice(&body).map_err(|e| {
                LoaderError::Exchange(format!(
                    "Binance sent klines that do not parse ({e}) for {}",
                    ctx.symbol
                ))
            })?;
            let n = rows.len();
            for row in &rows {
                // Guard the range and page boundaries even if the server overshoots.
                if row.0 < ws || row.0 >= we || row.0 <= last_open {
                    tracing::debug!(symbol = %ctx.symbol, open_time = row.0, "dropping a candle outside the requested window");
                    continue;
                }
                batch.push_kline(iv_name, row);
                last_open = row.0;
            }
            // A short page, or a full one that reached the window's last candle, is the end:
            // asking again would only cost weight for an empty answer.
            if n < ctx.page_limit as usize
                || last_open == i64::MIN
                || self.interval.next_open(last_open) >= we
            {
                break;
            }
            cursor = last_open + 1;
        }
        Ok(batch)
    }
}

/// `[start, end)` windows of `per_window` candles each, covering `[first, end)`.
fn window_starts(iv: Interval, first: i64, end: i64, per_window: i64) -> Vec<(i64, i64)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_range() {
        let iv: Interval = "1m".parse().unwrap();
        let w = window_starts(iv, 0, 2_500 * 60_000, 1000);
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
        let w = window_starts(month, start, start + 400 * 86_400_000, 1000);
        assert_eq!(w.len(), 1);
    }
}
