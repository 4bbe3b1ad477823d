//! Bybit's candles (`GET /v5/market/kline`): REST only (Bybit publishes no candle archive).
//! A range is cut into windows of at most a page of candles; each window is one request with
//! both bounds (`start`, `end`, inclusive), which answers all of its candles newest first;
//! windows are fetched `FETCH_CONCURRENCY` at a time and published in time order.

use std::sync::Arc;

use futures::future::BoxFuture;
use kline_interval::Interval;
use serde::Deserialize;

use super::{load_windows, rules, BybitSession};
use crate::error::{LoaderError, Result};
use crate::record::{Candle, RecordBatch};
use crate::registry::RecordKind;
use crate::time_range::TimeRange;
use crate::venue::history::grid_windows;
use crate::venue::history::{Cursor, Emitter, History, HistoryContext, Probe};

pub struct BybitKlines {
    pub interval: Interval,
    pub session: Arc<BybitSession>,
}

/// `result` of a kline request: rows `[startTime, open, high, low, close, volume, turnover]`,
/// strings, newest first.
#[derive(Deserialize)]
struct KlinePage {
    #[serde(default)]
    list: Vec<[String; 7]>,
}

impl BybitKlines {
    /// The candles with open time in `[from, to_inclusive]` (at most `limit`), oldest first.
    async fn fetch(
        &self,
        symbol: &str,
        from: i64,
        to_inclusive: i64,
        limit: u32,
    ) -> Result<Vec<[String; 7]>> {
        let interval = rules::kline_interval(self.interval)
            .expect("only intervals Bybit has get a BybitKlines");
        let params = [
            ("interval", interval.to_string()),
            ("start", from.to_string()),
            ("end", to_inclusive.to_string()),
            ("limit", limit.to_string()),
        ];
        let page: KlinePage = self
            .session
            .market_data(rules::KLINE, symbol, &params)
            .await?;
        let mut rows = page.list;
        rows.reverse();
        Ok(rows)
    }

    fn push(&self, batch: &mut RecordBatch, row: &[String; 7], open: i64) -> Result<()> {
        let candle = Candle {
            open_time: open,
            close_time: self.interval.close_time(open),
            open: &row[1],
            high: &row[2],
            low: &row[3],
            close: &row[4],
            volume: &row[5],
            quote_volume: &row[6],
        };
        batch.push_candle(self.interval.as_str(), &candle)
    }
}

/// A row's open time.
fn open_time(row: &[String; 7]) -> Result<i64> {
    row[0].parse().map_err(|_| {
        LoaderError::Exchange(format!(
            "Bybit sent a candle whose startTime is not a number: {:?}",
            row[0]
        ))
    })
}

impl History for BybitKlines {
    fn kind(&self) -> RecordKind {
        RecordKind::Candles(self.interval)
    }

    fn has_rest(&self) -> bool {
        true
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let limit = self.session.kline_page_limit.min(rules::MAX_KLINE_PAGE);
            let windows = grid_windows(self.interval, cursor, span, limit);
            let fetch = |from, to, limit| self.fetch(&ctx.symbol, from, to, limit);
            load_windows(&self.session, ctx, windows, fetch, out, |batch, row| {
                let open = open_time(row)?;
                // Guard the range and the window even if the server overshoots.
                if open < span.end_ms && cursor.admit(open, open) {
                    self.push(batch, row, open)?;
                }
                Ok(())
            })
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
