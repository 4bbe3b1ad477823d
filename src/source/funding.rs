//! Funding rates (`api_funding_rate`, futures perpetuals): every settlement whose funding time
//! lies in the range, exactly once, from the REST `fundingRate` endpoint.
//!
//! Settlements are sparse (every 8 hours on most symbols, a year is about 1,100 rows), so pages
//! of 1,000 are fetched one after another from the last funding time seen: a year costs two
//! requests of the endpoint's own limit (500 per 5 minutes), and paging never assumes a grid,
//! since Binance's funding times carry a few milliseconds and a symbol's interval can change.
//! The archive's monthly `fundingRate` files lack the mark price REST gives, so REST is the
//! one source and records are the same whatever SOURCE says.

use futures::future::BoxFuture;

use super::klines::SETTLE_MS;
use super::{Cursor, Emitter, History, HistoryContext, Probe};
use crate::archive::ArchiveLayout;
use crate::binance::api::RawFundingRate;
use crate::binance::endpoint::MAX_PAGE_LIMIT;
use crate::binance::Exchange;
use crate::error::{LoaderError, Result};
use crate::market::Market;
use crate::record::{FundingRateRecord, RecordBatch};
use crate::registry::{Origin, RecordKind};
use crate::time_range::TimeRange;

pub struct FundingHistory;

fn push(batch: &mut RecordBatch, r: &RawFundingRate<'_>) -> Result<()> {
    let key = batch.key("funding", r.funding_time);
    let symbol = batch.symbol.clone();
    let rec = FundingRateRecord {
        _key: &key,
        market: batch.market.as_str(),
        symbol: &symbol,
        timestamp: r.funding_time,
        funding_time: r.funding_time,
        funding_rate: r.funding_rate,
        mark_price: r.mark_price,
    };
    let result = batch.push_record(r.funding_time, &key, &rec);
    batch.reuse_key(key);
    result
}

impl History for FundingHistory {
    fn kind(&self) -> RecordKind {
        RecordKind::FundingRate
    }

    fn settled_end(&self, now: i64) -> i64 {
        now - SETTLE_MS
    }

    fn archive_layout(&self, _market: Market, _symbol: &str) -> Option<ArchiveLayout> {
        None
    }

    fn push_csv_row(
        &self,
        _row: &csv::ByteRecord,
        _cursor: &mut Cursor,
        _batch: &mut RecordBatch,
    ) -> Result<()> {
        Err(LoaderError::Other(
            "funding rates are loaded over REST only".into(),
        ))
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
            let mut from = match cursor.last {
                Some(last) => (last + 1).max(span.start_ms),
                None => span.start_ms,
            };
            while from < span.end_ms {
                let page = exchange
                    .funding_rates(&ctx.symbol, from, span.end_ms - 1, MAX_PAGE_LIMIT)
                    .await?;
                let rows = page.rows()?;
                let mut batch = ctx.batch(rows.len());
                let mut newest = None;
                for r in &rows {
                    newest = newest.max(Some(r.funding_time));
                    if r.funding_time < span.end_ms && cursor.admit(r.funding_time, r.funding_time)
                    {
                        push(&mut batch, r)?;
                    }
                }
                let full = rows.len() >= MAX_PAGE_LIMIT as usize;
                drop(rows);
                out.send(batch, Origin::Rest).await?;
                match newest {
                    Some(t) if full && t >= from => from = t + 1,
                    _ => break,
                }
            }
            Ok(())
        })
    }

    fn listed<'a>(
        &'a self,
        exchange: &'a Exchange,
        symbol: &'a str,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>>> {
        Box::pin(async move {
            let mut times = Vec::new();
            let mut from = range.start_ms;
            while from < range.end_ms {
                let page = exchange
                    .funding_rates(symbol, from, range.end_ms - 1, MAX_PAGE_LIMIT)
                    .await?;
                let rows = page.rows()?;
                let before = times.len();
                times.extend(
                    rows.iter()
                        .map(|r| r.funding_time)
                        .filter(|&t| range.contains(t) && t >= from),
                );
                match times.get(before..).and_then(|new| new.iter().max()) {
                    Some(&t) if rows.len() >= MAX_PAGE_LIMIT as usize => from = t + 1,
                    _ => break,
                }
            }
            Ok(Some(times))
        })
    }

    fn exists<'a>(
        &'a self,
        exchange: &'a Exchange,
        symbol: &'a str,
        probe: Probe,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
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
