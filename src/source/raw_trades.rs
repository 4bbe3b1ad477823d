//! Raw trades (`api_raw_trades`): every individual trade whose time lies in the range, exactly
//! once, from the archive's `trades` files and the REST `historicalTrades` endpoint (weight 25,
//! paged by id only). The same records as the live `ws_trades` type.
//!
//! `historicalTrades` cannot search by time: an aggregate trade at or after a time tells the
//! first raw trade id at or after it (aggregate trades cover contiguous raw ids of one time).

use futures::future::BoxFuture;

use super::trade_ids;
use super::{Cursor, Emitter, History, HistoryContext, Probe};
use crate::archive::{fields, ArchiveLayout};
use crate::binance::api::Trades;
use crate::binance::Exchange;
use crate::error::{LoaderError, Result};
use crate::record::{RawTrade, RecordBatch};
use crate::registry::RecordKind;
use crate::source::klines::SETTLE_MS;
use crate::time_range::TimeRange;

pub struct TradeHistory;

impl History for TradeHistory {
    fn kind(&self) -> RecordKind {
        RecordKind::Trades
    }

    fn settled_end(&self, now: i64) -> i64 {
        now - SETTLE_MS
    }

    fn archive_layout(&self, symbol: &str) -> Option<ArchiveLayout> {
        Some(ArchiveLayout {
            market: "data/spot",
            dir: format!("trades/{symbol}"),
            stem: format!("{symbol}-trades"),
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
        let id = fields::uint(row, 0, "trade id").map_err(bad)?;
        let time = fields::time_ms(row, 4, "time").map_err(bad)?;
        if !cursor.admit(time, id as i64) {
            return Ok(());
        }
        let t = RawTrade {
            id,
            price: fields::text(row, 1, "price").map_err(bad)?,
            qty: fields::text(row, 2, "quantity").map_err(bad)?,
            time,
            is_buyer_maker: fields::boolean(row, 5, "is buyer maker").map_err(bad)?,
            is_best_match: match row.get(6) {
                Some(_) => fields::boolean(row, 6, "is best match").map_err(bad)?,
                None => true,
            },
        };
        batch.push_trade(&t)
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(trade_ids::load_span::<Trades>(ctx, span, cursor, out))
    }

    fn exists<'a>(
        &'a self,
        exchange: &'a Exchange,
        symbol: &'a str,
        probe: Probe,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(trade_ids::exists::<Trades>(exchange, symbol, probe))
    }
}
