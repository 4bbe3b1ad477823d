//! Bybit's open interest (`GET /v5/market/open-interest`): REST only, one row per period. A
//! range is cut into windows of at most a page of periods; each window is one request with both
//! bounds, which answers all of its rows (newest first, so no cursor is needed), fetched
//! `FETCH_CONCURRENCY` at a time and published in time order.

use std::sync::Arc;

use futures::future::BoxFuture;
use kline_interval::Interval;
use serde::Deserialize;

use super::{load_windows, rules, timed_rows, BybitSession};
use crate::error::Result;
use crate::registry::{FuturesSeries, RecordKind};
use crate::time_range::TimeRange;
use crate::venue::history::grid_windows;
use crate::venue::history::{Cursor, Emitter, History, HistoryContext, Probe};

pub struct BybitOpenInterest {
    pub period: Interval,
    pub session: Arc<BybitSession>,
}

#[derive(Deserialize)]
struct OpenInterestPage {
    #[serde(default)]
    list: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    #[serde(rename = "openInterest")]
    open_interest: String,
    timestamp: String,
}

impl BybitOpenInterest {
    /// The rows with time in `[from, to_inclusive]` (at most `limit`), oldest first.
    async fn fetch(
        &self,
        symbol: &str,
        from: i64,
        to_inclusive: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>> {
        let period = rules::open_interest_period(self.period)
            .expect("only periods Bybit has get a BybitOpenInterest");
        let params = [
            ("intervalTime", period.to_string()),
            ("startTime", from.to_string()),
            ("endTime", to_inclusive.to_string()),
            ("limit", limit.to_string()),
        ];
        let page: OpenInterestPage = self
            .session
            .market_data(rules::OPEN_INTEREST, symbol, &params)
            .await?;
        let rows = page
            .list
            .into_iter()
            .map(|r| (r.timestamp, r.open_interest));
        timed_rows(rows, "open-interest timestamp")
    }
}

impl History for BybitOpenInterest {
    fn kind(&self) -> RecordKind {
        RecordKind::FuturesData(FuturesSeries::OpenInterest, self.period)
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
            let p = self.period;
            let windows = grid_windows(p, cursor, span, rules::MAX_OPEN_INTEREST_PAGE);
            let period = p.as_str();
            let fetch = |from, to, limit| self.fetch(&ctx.symbol, from, to, limit);
            load_windows(&self.session, ctx, windows, fetch, out, |batch, (t, oi)| {
                if *t < span.end_ms && cursor.admit(*t, *t) {
                    batch.push_open_interest(period, *t, oi, None)?;
                }
                Ok(())
            })
            .await
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some((from, to_inclusive)) = probe.time_bounds(Some(self.period)) else {
                return Ok(false);
            };
            Ok(!self.fetch(symbol, from, to_inclusive, 1).await?.is_empty())
        })
    }
}
