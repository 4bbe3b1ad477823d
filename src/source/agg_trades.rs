//! `AggTradeSource`: every aggregate trade whose time lies in the range, exactly once, with gaps in
//! the exchange's id sequence reported rather than skipped silently.
//!
//! Binance only allows `startTime`/`endTime` windows shorter than an hour, so time is used only to
//! find the first id at or after the range start and the first id at or after its end (one small
//! request per hour scanned). Between them ids are contiguous, so the pages (`fromId`, `limit`) are
//! known in advance and fetched concurrently, in order.

use futures::{stream, StreamExt};
use tokio::sync::mpsc;

use super::{SourceContext, SourceSummary};
use crate::binance::exchange_error;
use crate::error::{LoaderError, Result};
use crate::record::{RawAggTrade, RecordBatch};
use crate::time_range::fmt_ms;

const HOUR_MS: i64 = 3_600_000;
const WEIGHT: u32 = 4;

pub struct AggTradeSource {
    pub ctx: SourceContext,
}

/// One fetched page: its records plus the ids it saw, for gap detection.
struct Page {
    batch: RecordBatch,
    first_id: Option<u64>,
    last_id: Option<u64>,
    /// Gaps inside the page.
    gaps: Vec<(u64, u64)>,
    /// The page reached a trade at or after the range end, or the newest trade.
    reached_end: bool,
}

impl AggTradeSource {
    pub async fn run(self, tx: mpsc::Sender<RecordBatch>) -> Result<SourceSummary> {
        let ctx = &self.ctx;
        let range = ctx.required_range()?;
        let mut summary = SourceSummary {
            symbol: ctx.symbol.to_string(),
            ..Default::default()
        };
        let now = ctx.exchange.server_now_ms();
        // Trades of the last second may still be arriving; stop before them.
        let end = if range.end_ms > now - 1000 {
            let until = now - 1000;
            tracing::info!(symbol = %ctx.symbol, requested_end = %fmt_ms(range.end_ms), loading_until = %fmt_ms(until),
                "TIME_RANGE reaches past the present: loading the trades that exist");
            summary.clamped_end = Some(until);
            until
        } else {
            range.end_ms
        };
        if end <= range.start_ms {
            return Ok(summary);
        }
        let Some(first_id) = self.first_id_at_or_after(range.start_ms, end).await? else {
            tracing::info!(symbol = %ctx.symbol, "no aggregate trades in the range");
            return Ok(summary);
        };
        // The first id at or after the end bounds the pages exactly; without one, read to the newest.
        let end_id = self.first_id_at_or_after(end, now + 1).await?;
        let limit = ctx.page_limit as u64;
        let page_starts: Box<dyn Iterator<Item = (u64, u64)> + Send> = match end_id {
            Some(e) => Box::new(
                (first_id..e)
                    .step_by(limit as usize)
                    .map(move |f| (f, (f + limit).min(e))),
            ),
            None => Box::new(
                (first_id..)
                    .step_by(limit as usize)
                    .map(move |f| (f, f + limit)),
            ),
        };
        let mut pages = stream::iter(page_starts)
            .map(|(from, to)| self.fetch_page(from, to, end))
            .buffered(ctx.concurrency);
        let mut expected = first_id;
        while let Some(page) = pages.next().await {
            let page = page?;
            if let Some(first) = page.first_id {
                if first > expected {
                    summary.gaps.push((expected, first - 1));
                }
            }
            summary.gaps.extend(page.gaps.iter().copied());
            if let Some(last) = page.last_id {
                expected = last + 1;
            }
            let reached_end = page.reached_end;
            if !page.batch.is_empty() {
                summary.note(&page.batch);
                if tx.send(page.batch).await.is_err() {
                    break;
                }
            }
            if reached_end {
                break;
            }
        }
        if let Some(e) = end_id {
            if expected < e {
                summary.gaps.push((expected, e - 1));
            }
        }
        summary.gaps.sort_unstable();
        for (a, b) in &summary.gaps {
            tracing::warn!(symbol = %ctx.symbol, first_missing = a, last_missing = b, count = b - a + 1,
                "Binance has no aggregate trades with these ids: a gap in the exchange's data");
        }
        Ok(summary)
    }

    /// The first aggregate trade id with time >= `t`, scanning hour windows up to `until`.
    async fn first_id_at_or_after(&self, t: i64, until: i64) -> Result<Option<u64>> {
        let ctx = &self.ctx;
        let mut from = t;
        while from < until {
            let to = (from + HOUR_MS - 1).min(until - 1);
            let query = [
                ("symbol", ctx.symbol.to_string()),
                ("startTime", from.to_string()),
                ("endTime", to.to_string()),
                ("limit", "1".to_string()),
            ];
            let body = ctx
                .exchange
                .client
                .get("/api/v3/aggTrades", &query, WEIGHT)
                .await
                .map_err(|e| exchange_error(e, Some(&ctx.symbol)))?;
            let rows: Vec<RawAggTrade> = parse(&body, &ctx.symbol)?;
            if let Some(r) = rows.first() {
                return Ok(Some(r.a));
            }
            from = to + 1;
        }
        Ok(None)
    }

    /// Trades with ids in `[from, to)` and time before `end`.
    async fn fetch_page(&self, from: u64, to: u64, end: i64) -> Result<Page> {
        let ctx = &self.ctx;
        let query = [
            ("symbol", ctx.symbol.to_string()),
            ("fromId", from.to_string()),
            ("limit", (to - from).to_string()),
        ];
        let body = ctx
            .exchange
            .client
            .get("/api/v3/aggTrades", &query, WEIGHT)
            .await
            .map_err(|e| exchange_error(e, Some(&ctx.symbol)))?;
        let rows: Vec<RawAggTrade> = parse(&body, &ctx.symbol)?;
        let mut page = Page {
            batch: RecordBatch::new(ctx.symbol.clone(), rows.len()),
            first_id: None,
            last_id: None,
            gaps: Vec::new(),
            // A short page means there is nothing newer.
            reached_end: (rows.len() as u64) < to - from,
        };
        for r in &rows {
            if r.a < from || r.a >= to {
                continue; // ids past a gap belong to the next page
            }
            if r.time >= end {
                page.reached_end = true;
                break;
            }
            if let Some(last) = page.last_id {
                if r.a <= last {
                    continue;
                }
                if r.a > last + 1 {
                    page.gaps.push((last + 1, r.a - 1));
                }
            }
            page.first_id.get_or_insert(r.a);
            page.last_id = Some(r.a);
            page.batch.push_agg_trade(r);
        }
        Ok(page)
    }
}

fn parse<'a>(body: &'a [u8], symbol: &str) -> Result<Vec<RawAggTrade<'a>>> {
    serde_json::from_slice(body).map_err(|e| {
        LoaderError::Exchange(format!(
            "Binance sent aggregate trades that do not parse ({e}) for {symbol}"
        ))
    })
}
