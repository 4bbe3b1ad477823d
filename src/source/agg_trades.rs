//! Aggregate trades (`api_trades`): every aggregate trade whose time lies in the range, exactly
//! once, from the archive's `aggTrades` files and the REST `aggTrades` endpoint, with gaps in the
//! exchange's id sequence reported rather than skipped silently.
//!
//! Over REST, time is used only to find the first id at or after the span's start and end
//! ([`Exchange::first_agg_trade_at_or_after`]); between them ids are contiguous, so pages are
//! fetched by id ([`trade_ids`](super::trade_ids)). After an archive file the span continues from
//! the last id published, so a seam can neither repeat nor skip a trade.

use futures::future::BoxFuture;

use super::trade_ids;
use super::{Cursor, Emitter, History, HistoryContext, Probe};
use crate::archive::{fields, ArchiveLayout};
use crate::binance::api::AggTrades;
use crate::binance::Exchange;
use crate::error::{LoaderError, Result};
use crate::record::{RawAggTrade, RecordBatch};
use crate::registry::RecordKind;
use crate::source::klines::SETTLE_MS;
use crate::time_range::TimeRange;

pub struct AggTradeHistory;

impl History for AggTradeHistory {
    fn kind(&self) -> RecordKind {
        RecordKind::AggTrades
    }

    fn settled_end(&self, now: i64) -> i64 {
        now - SETTLE_MS
    }

    fn archive_layout(&self, symbol: &str) -> Option<ArchiveLayout> {
        Some(ArchiveLayout {
            market: "data/spot",
            dir: format!("aggTrades/{symbol}"),
            stem: format!("{symbol}-aggTrades"),
            daily: true,
        })
    }

    fn push_csv_row(
        &self,
        row: &csv::ByteRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        let bad = LoaderError::Exchange;
        let id = fields::uint(row, 0, "aggregate trade id").map_err(bad)?;
        let time = fields::time_ms(row, 5, "time").map_err(bad)?;
        if !cursor.admit(time, id as i64) {
            return Ok(());
        }
        let t = RawAggTrade {
            a: id,
            p: fields::text(row, 1, "price").map_err(bad)?,
            q: fields::text(row, 2, "quantity").map_err(bad)?,
            f: fields::uint(row, 3, "first trade id").map_err(bad)?,
            l: fields::uint(row, 4, "last trade id").map_err(bad)?,
            time,
            m: fields::boolean(row, 6, "is buyer maker").map_err(bad)?,
            // Futures files have no best-match column; every futures trade is one.
            best_match: match row.get(7) {
                Some(_) => fields::boolean(row, 7, "is best match").map_err(bad)?,
                None => true,
            },
        };
        batch.push_agg_trade(&t)
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(trade_ids::load_span::<AggTrades>(ctx, span, cursor, out))
    }

    fn exists<'a>(
        &'a self,
        exchange: &'a Exchange,
        symbol: &'a str,
        probe: Probe,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(trade_ids::exists::<AggTrades>(exchange, symbol, probe))
    }
}
