//! OKX's candles (`GET /api/v5/market/history-candles`): REST only. A range is cut into
//! windows of at most a page of candles; each window is one request bounded on both sides
//! (`before` the window's first open − 1, `after` its last open + 1: OKX's bounds are
//! exclusive), which answers all of its candles newest first; windows are fetched
//! `FETCH_CONCURRENCY` at a time and published in time order.

use std::sync::Arc;

use futures::future::BoxFuture;
use kline_interval::Interval;

use super::{request_error, rules, OkxSession};
use crate::error::{LoaderError, Result};
use crate::record::{Candle, RecordBatch};
use crate::registry::RecordKind;
use crate::time_range::TimeRange;
use crate::venue::history::{
    grid_windows, load_windows, Cursor, Emitter, History, HistoryContext, Probe,
};

pub struct OkxKlines {
    pub interval: Interval,
    pub session: Arc<OkxSession>,
}

/// A row: `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`, strings.
type Row = [String; 9];

impl OkxKlines {
    /// The candles opened in `[from, to_inclusive]` (at most `limit`), oldest first.
    async fn fetch(
        &self,
        inst_id: &str,
        from: i64,
        to_inclusive: i64,
        limit: u32,
    ) -> Result<Vec<Row>> {
        let bar = rules::bar(self.interval).expect("only bars OKX has get an OkxKlines");
        let params = [
            ("instId", inst_id.to_string()),
            ("bar", bar.to_string()),
            ("before", (from - 1).to_string()),
            ("after", (to_inclusive + 1).to_string()),
            ("limit", limit.to_string()),
        ];
        let mut rows: Vec<Row> = self
            .session
            .client
            .get(rules::CANDLES, &params)
            .await
            .map_err(|e| request_error(e, self.session.market, Some(inst_id)))?;
        if rows.len() > limit as usize {
            return Err(LoaderError::Exchange(format!(
                "OKX answered {} candles of {inst_id} where {limit} were asked",
                rows.len()
            )));
        }
        rows.reverse();
        Ok(rows)
    }

    fn push(&self, batch: &mut RecordBatch, row: &Row, open: i64) -> Result<()> {
        // Spot: vol in the base coin, volCcyQuote in the quote coin; contracts: vol in
        // contracts, volCcyQuote in the quote coin ("Get candlesticks history").
        let candle = Candle {
            open_time: open,
            close_time: self.interval.close_time(open),
            open: &row[1],
            high: &row[2],
            low: &row[3],
            close: &row[4],
            volume: &row[5],
            quote_volume: &row[7],
        };
        batch.push_candle(self.interval.as_str(), &candle)
    }

    /// A row's open time, on the interval's grid and closed.
    fn open_time(&self, row: &Row) -> Result<i64> {
        let open: i64 = row[0].parse().map_err(|_| {
            LoaderError::Exchange(format!(
                "OKX sent a candle whose ts is not a number: {:?}",
                row[0]
            ))
        })?;
        if !self.interval.is_open_time(open) {
            return Err(LoaderError::Exchange(format!(
                "OKX sent a {} candle opened at {open}, off the UTC grid of {} candles: its bar \
                 {} is not aligned as the loader expects",
                self.interval.as_str(),
                self.interval.as_str(),
                rules::bar(self.interval).unwrap_or("?")
            )));
        }
        if row[8] != "1" {
            return Err(LoaderError::Exchange(format!(
                "OKX sent the candle opened at {open} as not closed yet (confirm {:?}) inside a \
                 range that had settled",
                row[8]
            )));
        }
        Ok(open)
    }
}

impl History for OkxKlines {
    fn kind(&self) -> RecordKind {
        RecordKind::Candles(self.interval)
    }

    fn has_rest(&self) -> bool {
        true
    }

    fn settled_end(&self, now: i64) -> i64 {
        self.interval
            .align_down(now - crate::venue::history::SETTLE_MS - rules::CONFIRM_MARGIN_MS)
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let limit = self.session.kline_page_limit.min(rules::MAX_CANDLE_PAGE);
            let windows = grid_windows(self.interval, cursor, span, limit);
            let fetch = |from, to, limit| self.fetch(&ctx.symbol, from, to, limit);
            load_windows(
                &self.session.pages,
                ctx,
                windows,
                fetch,
                out,
                |batch, row| {
                    let open = self.open_time(row)?;
                    // Guard the range and the window even if the server overshoots.
                    if open < span.end_ms && cursor.admit(open, open) {
                        self.push(batch, row, open)?;
                    }
                    Ok(())
                },
            )
            .await
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some((from, to_inclusive)) = probe.time_bounds(Some(self.interval)) else {
                return Ok(false);
            };
            Ok(!self.fetch(symbol, from, to_inclusive, 1).await?.is_empty())
        })
    }
}
