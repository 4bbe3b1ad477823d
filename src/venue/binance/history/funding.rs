//! Funding rates (`api_funding_rate`, futures perpetuals): every settlement whose funding time
//! lies in the range, exactly once, from the REST `fundingRate` endpoint.
//!
//! Settlements are sparse (every 8 hours on most symbols, a year is about 1,100 rows), so on
//! USDⓈ-M pages of 1,000 are fetched one after another from the last funding time seen: a year
//! costs two requests of the endpoint's own limit (500 per 5 minutes), and paging never assumes
//! a grid, since Binance's funding times carry a few milliseconds and a symbol's interval can
//! change. COIN-M documents no order for a request holding more than a page, so it is asked in
//! windows that cannot hold one ([`funding_window_ms`]): nine requests a year.
//! The archive's monthly `fundingRate` files lack the mark price REST gives, so REST is the
//! one source and records are the same whatever SOURCE says.

use futures::future::BoxFuture;

use super::Rest;
use crate::venue::binance::api::RawFundingRate;
use crate::venue::binance::endpoint::{funding_window_ms, MAX_PAGE_LIMIT};
use crate::venue::history::{Cursor, Emitter, History, HistoryContext, Probe};

use crate::error::{LoaderError, Result};
use crate::market::Market;
use crate::record::RecordBatch;
use crate::registry::{Origin, RecordKind};
use crate::time_range::TimeRange;

pub struct FundingHistory {
    pub rest: Rest,
}

/// Which `fundingRate` requests cover `[from, end)`: pages after the last time seen, or fixed
/// windows (see [`funding_window_ms`]).
struct FundingPager {
    from: i64,
    end: i64,
    window: Option<i64>,
}

impl FundingPager {
    fn new(market: Market, from: i64, end: i64) -> Self {
        FundingPager {
            from,
            end,
            window: funding_window_ms(market),
        }
    }

    /// The next request's `[startTime, endTime]`, while any of the range is left.
    fn next_request(&self) -> Option<(i64, i64)> {
        (self.from < self.end).then(|| {
            let to = self
                .window
                .map_or(self.end, |w| (self.from + w).min(self.end));
            (self.from, to - 1)
        })
    }

    /// Moves past an answer of `rows` rows whose newest time is `newest`.
    fn advance(&mut self, rows: usize, newest: Option<i64>, symbol: &str) -> Result<()> {
        let full = rows >= MAX_PAGE_LIMIT as usize;
        match self.window {
            Some(w) if full => {
                return Err(LoaderError::Exchange(format!(
                    "Binance answered a full page of {rows} funding rates of {symbol} for {} hours: more \
                     settlements than hourly funding allows, so some of them may be missing from the answer",
                    w / 3_600_000
                )))
            }
            Some(w) => self.from = (self.from + w).min(self.end),
            None => match newest {
                Some(t) if full && t >= self.from => self.from = t + 1,
                _ => self.from = self.end,
            },
        }
        Ok(())
    }
}

fn push(batch: &mut RecordBatch, r: &RawFundingRate<'_>) -> Result<()> {
    batch.push_funding(r.funding_time, r.funding_rate, r.mark_price)
}

impl History for FundingHistory {
    fn kind(&self) -> RecordKind {
        RecordKind::FundingRate
    }

    fn has_rest(&self) -> bool {
        self.rest.is_some()
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
            let from = match cursor.last {
                Some(last) => (last + 1).max(span.start_ms),
                None => span.start_ms,
            };
            let mut pager = FundingPager::new(exchange.market(), from, span.end_ms);
            while let Some((start, end_inclusive)) = pager.next_request() {
                let page = exchange
                    .paged(exchange.funding_rates(
                        &ctx.symbol,
                        start,
                        end_inclusive,
                        MAX_PAGE_LIMIT,
                    ))
                    .await?;
                let mut rows = page.rows()?;
                rows.sort_unstable_by_key(|r| r.funding_time);
                let mut batch = ctx.batch(rows.len());
                for r in &rows {
                    if (start..=end_inclusive).contains(&r.funding_time)
                        && cursor.admit(r.funding_time, r.funding_time)
                    {
                        push(&mut batch, r)?;
                    }
                }
                let (n, newest) = (rows.len(), rows.last().map(|r| r.funding_time));
                drop(rows);
                out.send(batch, Origin::Rest).await?;
                pager.advance(n, newest, &ctx.symbol)?;
            }
            Ok(())
        })
    }

    fn listed<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>>> {
        Box::pin(async move {
            let exchange = self.rest.get(symbol)?;
            let mut times = Vec::new();
            let mut pager = FundingPager::new(exchange.market(), range.start_ms, range.end_ms);
            while let Some((start, end_inclusive)) = pager.next_request() {
                let page = exchange
                    .funding_rates(symbol, start, end_inclusive, MAX_PAGE_LIMIT)
                    .await?;
                let rows = page.rows()?;
                let mut new: Vec<i64> = rows
                    .iter()
                    .map(|r| r.funding_time)
                    .filter(|t| (start..=end_inclusive).contains(t))
                    .collect();
                new.sort_unstable();
                pager.advance(rows.len(), new.last().copied(), symbol)?;
                times.extend(new);
            }
            Ok(Some(times))
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let exchange = self.rest.get(symbol)?;
            let Some((from, to_inclusive)) = probe.time_bounds(None) else {
                return Ok(false);
            };
            let page = exchange
                .funding_rates(symbol, from, to_inclusive, 1)
                .await?;
            Ok(!page.rows()?.is_empty())
        })
    }
}
