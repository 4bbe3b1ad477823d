//! Trades by id, written once for aggregate trades (`aggTrades?fromId`) and raw trades
//! (`historicalTrades?fromId`): the REST pager for history ranges and live backfills alike, and
//! the [`History`] of both types, whose own modules say only what differs.
//!
//! Ids are contiguous per symbol, so once the first id and the first id past the end are known,
//! the pages (`fromId`, `limit`) are known in advance and fetched concurrently, then published
//! in order, page by page, as they arrive: memory holds a few pages whatever the span's length.
//! A missing id is a gap in the exchange's data: it is noted, never skipped silently.

use std::future::Future;
use std::marker::PhantomData;

use futures::future::BoxFuture;
use futures::{stream, StreamExt};

use super::Rest;
use crate::archive::ArchiveLayout;
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::RecordBatch;
use crate::registry::{Origin, RecordKind};
use crate::time_range::TimeRange;
use crate::venue::binance::api::{AggTradeRef, Page, RowKind};
use crate::venue::binance::endpoint::{Endpoint, MAX_PAGE_LIMIT};
use crate::venue::binance::Exchange;
use crate::venue::history::{
    Cursor, Edge, Emitter, History, HistoryContext, Horizon, IdEnds, Probe,
};

/// A kind of trade loaded by id: aggregate trades and raw trades each implement it in their
/// own module (endpoint, archive name, CSV columns); everything else is written once, here and
/// in [`TradeHistory`].
pub trait TradeType: RowKind + Sized + Send + Sync + 'static {
    const KIND: RecordKind;
    /// The archive's name of the type: `aggTrades`, `trades`.
    const ARCHIVE_NAME: &'static str;

    fn id(row: &Self::Row<'_>) -> u64;
    fn time(row: &Self::Row<'_>) -> i64;
    fn push(row: &Self::Row<'_>, batch: &mut RecordBatch) -> Result<()>;

    /// The id of this type that an aggregate trade marks (its own id, or its first raw trade's):
    /// how a time becomes an id, since only aggTrades can be asked by time.
    fn id_at(agg: AggTradeRef) -> u64;

    /// The first id of this type after those an aggregate trade covers.
    fn id_after(agg: AggTradeRef) -> u64;

    /// The endpoint [`fetch`](Self::fetch) calls.
    const ENDPOINT: Endpoint;

    /// The largest page `market` serves of this type.
    fn max_page(market: Market) -> u32 {
        let _ = market;
        MAX_PAGE_LIMIT
    }

    /// A page of trades with id `>= from`.
    fn fetch<'a>(
        exchange: &'a Exchange,
        symbol: &'a str,
        from: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Self>>> + Send + 'a;

    /// Parses one archive CSV row and pushes it into `batch` when `cursor` admits it.
    fn push_csv_row(
        row: &csv::StringRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()>;
}

/// The history of a [`TradeType`].
pub struct TradeHistory<T> {
    rest: Rest,
    _type: PhantomData<fn() -> T>,
}

impl<T> TradeHistory<T> {
    pub fn new(rest: Rest) -> Self {
        TradeHistory {
            rest,
            _type: PhantomData,
        }
    }
}

impl<T: TradeType> History for TradeHistory<T> {
    fn kind(&self) -> RecordKind {
        T::KIND
    }

    fn has_rest(&self) -> bool {
        self.rest.is_some()
    }

    fn archive_layout(&self, market: Market, symbol: &str) -> Option<ArchiveLayout> {
        Some(super::archive_layout(
            market,
            &format!("{}/{symbol}", T::ARCHIVE_NAME),
            &format!("{symbol}-{}", T::ARCHIVE_NAME),
            true,
            true,
        ))
    }

    fn push_csv_row(
        &self,
        row: &csv::StringRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        T::push_csv_row(row, cursor, batch)
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(load_span::<T>(&self.rest, ctx, span, cursor, out))
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { exists::<T>(self.rest.get(symbol)?, symbol, probe).await })
    }

    /// By time, trades are found through aggTrades; by id, through this type's own endpoint.
    fn horizon(&self, market: Market, by_time: bool) -> Option<Horizon> {
        let endpoint = if by_time {
            Endpoint::AggTrades
        } else {
            T::ENDPOINT
        };
        endpoint.horizon(market)
    }

    fn id_edges<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
        ends: IdEnds,
    ) -> BoxFuture<'a, Option<(Result<Edge>, Result<Edge>)>> {
        Box::pin(async move {
            let exchange = match self.rest.get(symbol) {
                Ok(ex) => ex,
                Err(e) => {
                    let why = e.to_string();
                    return Some((
                        Err(LoaderError::Other(why.clone())),
                        Err(LoaderError::Other(why)),
                    ));
                }
            };
            let head = head::<T>(exchange, symbol, range, ends.first.0).await;
            let tail = tail::<T>(exchange, symbol, range, ends.last).await;
            Some((head, tail))
        })
    }
}

/// Why the exchange cannot be asked through `endpoint` about a time before `t`, if it cannot.
fn beyond_horizon(exchange: &Exchange, endpoint: Endpoint, t: i64) -> Option<String> {
    let market = exchange.market();
    endpoint
        .horizon(market)
        .filter(|h| t < h.oldest(exchange.server_now_ms()))
        .map(|h| h.reason(market))
}

/// The ids of `range` before `first` (the first id present) that the exchange has: from the
/// first trade at or after the range's start, found as the loader finds it.
async fn head<F: TradeType>(
    exchange: &Exchange,
    symbol: &str,
    range: TimeRange,
    first: i64,
) -> Result<Edge> {
    if let Some(why) = beyond_horizon(exchange, Endpoint::AggTrades, range.start_ms) {
        return Ok(Edge::Unchecked(why));
    }
    Ok(
        match exchange
            .first_agg_trade_at_or_after(symbol, range.start_ms)
            .await?
        {
            Some(agg) if agg.time < range.end_ms && (F::id_at(agg) as i64) < first => {
                Edge::Missing(F::id_at(agg) as i64, first - 1)
            }
            _ => Edge::Complete,
        },
    )
}

/// The ids of `range` after `last` (the last (id, time) present) that the exchange has: the
/// trade after it, if it is before the range's end, up to the first trade at or after the end
/// (or the newest).
async fn tail<F: TradeType>(
    exchange: &Exchange,
    symbol: &str,
    range: TimeRange,
    (last, last_time): (i64, i64),
) -> Result<Edge> {
    let why = beyond_horizon(exchange, F::ENDPOINT, last_time)
        .or_else(|| beyond_horizon(exchange, Endpoint::AggTrades, range.end_ms));
    if let Some(why) = why {
        return Ok(Edge::Unchecked(why));
    }
    let page = F::fetch(exchange, symbol, (last + 1).max(0) as u64, 1).await?;
    let next = page.rows()?.first().map(|r| (F::id(r), F::time(r)));
    let Some((next, time)) = next else {
        return Ok(Edge::Complete);
    };
    if time >= range.end_ms {
        return Ok(Edge::Complete);
    }
    let end = match exchange
        .first_agg_trade_at_or_after(symbol, range.end_ms)
        .await?
    {
        Some(agg) => F::id_at(agg),
        None => exchange
            .newest_agg_trade(symbol)
            .await?
            .map_or(next + 1, F::id_after),
    };
    Ok(Edge::Missing(next as i64, end.max(next + 1) as i64 - 1))
}

/// Which ids to load.
#[derive(Debug, Clone, Copy)]
pub struct IdSpan {
    /// The first id.
    pub from: u64,
    /// The first id not to load (the first trade at or after the end), when known; without it
    /// pages go on until a trade at or after `end_time` or the newest trade.
    pub end_id: Option<u64>,
    /// Trades at or after this time end the span.
    pub end_time: i64,
}

/// Loads the trades of `span` over REST, `concurrency` pages of `page_limit` in flight,
/// published page by page in order through `cursor` (which drops what was published already and
/// notes gaps) into `out`. Returns the trades published.
pub async fn load<F: TradeType>(
    exchange: &Exchange,
    symbol: &str,
    span: IdSpan,
    (page_limit, concurrency): (u32, usize),
    cursor: &mut Cursor,
    out: &mut Emitter,
) -> Result<u64> {
    if span.end_id.is_some_and(|e| e <= span.from) {
        return Ok(0);
    }
    // Ids below `from` are before the span; a missing `from` itself is a gap.
    if cursor.last.is_none() && span.from > 0 {
        cursor.last = Some(span.from as i64 - 1);
    }
    let limit = u64::from(page_limit.min(F::max_page(exchange.market())));
    let bounds = move |f: u64| (f, span.end_id.map_or(f + limit, |e| (f + limit).min(e)));
    let starts: Box<dyn Iterator<Item = u64> + Send> = match span.end_id {
        Some(e) => Box::new((span.from..e).step_by(limit as usize)),
        None => Box::new((span.from..).step_by(limit as usize)),
    };
    let mut pages = stream::iter(starts.map(bounds))
        .map(|(from, to)| {
            exchange.paged(async move {
                let page = F::fetch(exchange, symbol, from, (to - from) as u32).await?;
                Ok((from, to, page))
            })
        })
        .buffered(concurrency.max(1));
    let mut published = 0u64;
    while let Some(page) = pages.next().await {
        // The slot stays held until this page's batch is sent.
        let paged = page?;
        let (from, to, ref page) = paged.value;
        let rows = page.rows()?;
        // A short page means there is nothing newer.
        let mut reached_end = (rows.len() as u64) < to - from;
        let mut batch =
            RecordBatch::new(Venue::Binance, exchange.market(), symbol.into(), rows.len());
        for r in rows.iter().filter(|r| F::id(r) >= from) {
            let (id, time) = (F::id(r), F::time(r));
            // A trade at or after the end ends the span, even one past this page (ids missing
            // up to it): the pages after it would only return the same trades again.
            if time >= span.end_time {
                reached_end = true;
                break;
            }
            if id >= to {
                break; // the next page's
            }
            if cursor.admit(time, id as i64) {
                F::push(r, &mut batch)?;
            }
        }
        published += batch.len() as u64;
        out.send(batch, Origin::Rest).await?;
        if reached_end {
            break;
        }
    }
    if let (Some(end), Some(next)) = (span.end_id, cursor.next_id()) {
        if next < end {
            cursor.note_gap(next, end - 1);
        }
    }
    Ok(published)
}

/// Loads the trades with time in `span` over REST: from the last one `cursor` admitted (a seam
/// after an archive file), or from the first at or after the span's start, up to the first at or
/// after its end.
async fn load_span<F: TradeType>(
    rest: &Rest,
    ctx: &HistoryContext,
    span: TimeRange,
    cursor: &mut Cursor,
    out: &mut Emitter,
) -> Result<()> {
    let ex = rest.get(&ctx.symbol)?;
    let from = match cursor.next_id() {
        Some(id) => id,
        None => match ex
            .first_agg_trade_at_or_after(&ctx.symbol, span.start_ms)
            .await?
        {
            Some(first) if first.time < span.end_ms => F::id_at(first),
            _ => {
                tracing::info!(symbol = %ctx.symbol, span = %span, "no {} in this span", F::WHAT);
                return Ok(());
            }
        },
    };
    let end_id = ex
        .first_agg_trade_at_or_after(&ctx.symbol, span.end_ms)
        .await?
        .map(F::id_at);
    let ids = IdSpan {
        from,
        end_id,
        end_time: span.end_ms,
    };
    load::<F>(
        ex,
        &ctx.symbol,
        ids,
        (ctx.page_limit, ctx.concurrency),
        cursor,
        out,
    )
    .await?;
    Ok(())
}

/// Whether the exchange has any trade of this feed in `probe`.
async fn exists<F: TradeType>(exchange: &Exchange, symbol: &str, probe: Probe) -> Result<bool> {
    Ok(match probe {
        Probe::Ordinals(a, b) => {
            let page = F::fetch(exchange, symbol, a.max(0) as u64, 1).await?;
            let first = page.rows()?.first().map(|r| F::id(r) as i64);
            first.is_some_and(|id| id <= b)
        }
        Probe::Time(r) => exchange
            .first_agg_trade_at_or_after(symbol, r.start_ms)
            .await?
            .is_some_and(|t| t.time < r.end_ms),
    })
}
