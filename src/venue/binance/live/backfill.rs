//! What the stream did not deliver, fetched over REST with the same pagers as history: trades by
//! id, candles by time, order-book snapshots. Stream records received before a gap are handed to
//! the sink first, and the backfill publishes page by page as it goes, so records stay in order
//! and memory does not grow with the length of a gap. Every request is cancelled by a stop.

use super::book::snapshot_limit;
use super::BinanceFeed;
use crate::error::Result;
use crate::market::Venue;
use crate::record::RecordBatch;
use crate::registry::{LiveType, Origin};
use crate::time_range::TimeRange;
use crate::venue::binance::api::{AggTrades, Trades};
use crate::venue::binance::history::trade_ids::{self, IdSpan};
use crate::venue::binance::Interval;
use crate::venue::live::SymbolState;

impl BinanceFeed {
    /// The first trade id (aggregate or raw, by type) at or after `t`, if any trade exists yet.
    pub(super) async fn first_trade_id_at_or_after(
        &self,
        symbol: &str,
        t: i64,
    ) -> Result<Option<u64>> {
        let first = self.exchange.first_agg_trade_at_or_after(symbol, t).await?;
        Ok(first.map(|a| match self.scope.live_type {
            LiveType::Trades => a.first_trade_id,
            _ => a.id,
        }))
    }

    /// Trades with ids from `from` up to `to` (exclusive; unbounded without it) and time before
    /// `end_time`, over REST.
    pub(super) async fn fill_trades(
        &self,
        st: &mut SymbolState,
        from: u64,
        to: Option<u64>,
        end_time: i64,
    ) -> Result<()> {
        st.flush().await?;
        tracing::info!(symbol = %st.symbol, from, to, "fetching trades the stream did not deliver");
        let span = IdSpan {
            from,
            end_id: to,
            end_time,
        };
        let (ex, symbol) = (&*self.exchange, &*st.symbol);
        let paging = (self.scope.page_limit, self.scope.concurrency);
        let fetched = match self.scope.live_type {
            LiveType::Trades => {
                trade_ids::load::<Trades>(ex, symbol, span, paging, &mut st.cursor, &mut st.out)
                    .await?
            }
            _ => {
                trade_ids::load::<AggTrades>(ex, symbol, span, paging, &mut st.cursor, &mut st.out)
                    .await?
            }
        };
        st.out.summary.backfilled += fetched;
        Ok(())
    }

    /// Closed candles with open time in `[from, to)`, over REST.
    pub(super) async fn fill_candles(
        &self,
        st: &mut SymbolState,
        iv: Interval,
        from: i64,
        to: i64,
    ) -> Result<()> {
        use futures::StreamExt;
        st.flush().await?;
        tracing::info!(symbol = %st.symbol, from, to, "fetching candles the stream did not deliver");
        let now = self.exchange.server_now_ms();
        let mut pages = std::pin::pin!(crate::venue::binance::history::klines::pages(
            &self.exchange,
            None,
            &st.symbol,
            iv,
            from,
            to,
            self.scope.kline_page_limit,
            self.scope.concurrency
        ));
        while let Some(window) = pages.next().await {
            let mut batch = RecordBatch::new(
                Venue::Binance,
                self.exchange.market(),
                st.symbol.clone(),
                self.scope.kline_page_limit as usize,
            );
            for page in window?.iter() {
                for row in page.rows()? {
                    // Closed candles only: the one still open is published when it closes.
                    if row.0 < to && row.6 < now && st.cursor.admit(row.0, row.0) {
                        batch.push_kline(iv.as_str(), &row)?;
                    }
                }
            }
            st.out.summary.backfilled += batch.len() as u64;
            st.out.send(batch, Origin::Rest).await?;
        }
        Ok(())
    }

    /// At the range end: fetches what the stream had not delivered, so the range is complete
    /// however quiet the market was or however long the stream was away. Trades are closed from
    /// the last one published (or the first at or after the start) up to the first at or after
    /// the end; candles from the last one published up to the end.
    pub(super) async fn fill_to_end(&self, st: &mut SymbolState, range: TimeRange) -> Result<()> {
        match self.scope.live_type {
            LiveType::AggTrades | LiveType::Trades => {
                let from = match st.cursor.next_id() {
                    Some(next) => next,
                    None => match self
                        .exchange
                        .first_agg_trade_at_or_after(&st.symbol, range.start_ms)
                        .await?
                    {
                        Some(first) if first.time < range.end_ms => match self.scope.live_type {
                            LiveType::Trades => first.first_trade_id,
                            _ => first.id,
                        },
                        _ => return Ok(()), // no trade in the whole range
                    },
                };
                let end_id = self
                    .first_trade_id_at_or_after(&st.symbol, range.end_ms)
                    .await?;
                self.fill_trades(st, from, end_id, range.end_ms).await
            }
            LiveType::Candles(iv) => {
                let from = match st.cursor.last {
                    Some(last) => iv.next_open(last),
                    None => iv.align_up(range.start_ms),
                };
                if from < range.end_ms {
                    self.fill_candles(st, iv, from, range.end_ms).await?;
                }
                Ok(())
            }
            // Binance keeps no history of depth, books, tickers, mark prices (beyond the
            // 1-minute mark-price candles, a different record) or liquidations.
            LiveType::Depth
            | LiveType::OrderBook
            | LiveType::BookTicker
            | LiveType::MarkPrice
            | LiveType::Liquidations => Ok(()),
        }
    }

    /// A new order-book snapshot, deep enough for every level published.
    pub(super) async fn load_snapshot(&self, st: &mut SymbolState) -> Result<()> {
        if st.book.resyncs > 0 {
            tracing::warn!(symbol = %st.symbol, resyncs = st.book.resyncs, "order book diff sequence broke: resyncing from a new snapshot");
        }
        let snap = self
            .exchange
            .depth(
                &st.symbol,
                snapshot_limit(self.exchange.market(), self.scope.cfg.book_depth),
            )
            .await?;
        tracing::info!(symbol = %st.symbol, last_update_id = snap.last_update_id, "order book snapshot loaded");
        st.book.load_snapshot(
            snap.last_update_id,
            snap.bids.iter().map(|[p, q]| [p.as_str(), q.as_str()]),
            snap.asks.iter().map(|[p, q]| [p.as_str(), q.as_str()]),
        );
        Ok(())
    }
}
