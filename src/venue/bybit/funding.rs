//! Bybit's funding rates (`GET /v5/market/funding/history`): REST only. A range is cut into
//! windows that hold fewer settlements than a page ([`rules::FUNDING_WINDOW_MS`]); each window
//! is one request with both bounds, fetched `FETCH_CONCURRENCY` at a time and published in time
//! order. `verify` lists every settlement of its range the same way (funding has no grid: a
//! symbol's interval can change).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{rules, timed_rows, BybitSession};
use crate::error::Result;
use crate::registry::RecordKind;
use crate::time_range::TimeRange;
use crate::venue::history::{
    list_times, load_funding, Cursor, Emitter, History, HistoryContext, Probe,
};

pub struct BybitFunding {
    pub session: Arc<BybitSession>,
}

#[derive(Deserialize)]
struct FundingPage {
    #[serde(default)]
    list: Vec<Settlement>,
}

#[derive(Deserialize)]
struct Settlement {
    #[serde(rename = "fundingRate")]
    funding_rate: String,
    #[serde(rename = "fundingRateTimestamp")]
    time: String,
}

impl BybitFunding {
    /// The settlements with time in `[from, to_inclusive]` (at most `limit`), oldest first.
    async fn fetch(
        &self,
        symbol: &str,
        from: i64,
        to_inclusive: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>> {
        let params = [
            ("startTime", from.to_string()),
            ("endTime", to_inclusive.to_string()),
            ("limit", limit.to_string()),
        ];
        let page: FundingPage = self
            .session
            .market_data(rules::FUNDING, symbol, &params)
            .await?;
        let rows = page.list.into_iter().map(|s| (s.time, s.funding_rate));
        timed_rows(rows, "fundingRateTimestamp")
    }
}

impl History for BybitFunding {
    fn kind(&self) -> RecordKind {
        RecordKind::FundingRate
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
            let fetch = |from, to, limit| self.fetch(&ctx.symbol, from, to, limit);
            load_funding(
                &self.session.pages,
                ctx,
                span,
                cursor,
                out,
                rules::FUNDING_WINDOW_MS,
                rules::MAX_FUNDING_PAGE,
                fetch,
            )
            .await
        })
    }

    fn listed<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>>> {
        Box::pin(async move {
            let fetch = |from, to, limit| self.fetch(symbol, from, to, limit);
            list_times(
                range,
                rules::FUNDING_WINDOW_MS,
                rules::MAX_FUNDING_PAGE,
                fetch,
            )
            .await
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some((from, to_inclusive)) = probe.time_bounds(None) else {
                return Ok(false);
            };
            Ok(!self.fetch(symbol, from, to_inclusive, 1).await?.is_empty())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_range_and_each_holds_less_than_a_page_of_hourly_settlements() {
        let span = TimeRange {
            start_ms: 0,
            end_ms: 500 * 3_600_000,
        };
        let w: Vec<(i64, i64)> =
            crate::venue::history::time_windows(span, rules::FUNDING_WINDOW_MS).collect();
        assert_eq!(w.first().map(|w| w.0), Some(0));
        assert_eq!(w.last().map(|w| w.1), Some(span.end_ms));
        assert!(w.windows(2).all(|p| p[0].1 == p[1].0));
        // Hourly settlements from a window's first to its last millisecond: fewer than a page.
        let settlements = |(a, b): &(i64, i64)| (b - 1 - a) / 3_600_000 + 1;
        assert!(w.iter().map(settlements).all(|n| n < 200));
    }
}
