//! Aggregate trades (`api_trades`): every aggregate trade whose time lies in the range, exactly
//! once, from the archive's `aggTrades` files and the REST `aggTrades` endpoint, with gaps in the
//! exchange's id sequence reported rather than skipped silently.
//!
//! Over REST, time is used only to find the first id at or after the span's start and end
//! ([`Exchange::first_agg_trade_at_or_after`]); between them ids are contiguous, so pages are
//! fetched by id ([`trade_ids`](super::trade_ids), which also holds the parts both trade types
//! share). After an archive file the span continues from the last id published, so a seam can
//! neither repeat nor skip a trade.

use std::future::Future;

use super::trade_ids::TradeType;
use crate::archive::fields;
use crate::error::{LoaderError, Result};
use crate::record::{RawAggTrade, RecordBatch};
use crate::registry::RecordKind;
use crate::venue::binance::api::{AggTradeRef, AggTrades, Page};
use crate::venue::binance::{Endpoint, Exchange};
use crate::venue::history::Cursor;

impl TradeType for AggTrades {
    const KIND: RecordKind = RecordKind::AggTrades;
    const ARCHIVE_NAME: &'static str = "aggTrades";

    fn id(row: &RawAggTrade<'_>) -> u64 {
        row.a
    }

    fn time(row: &RawAggTrade<'_>) -> i64 {
        row.time
    }

    fn push(row: &RawAggTrade<'_>, batch: &mut RecordBatch) -> Result<()> {
        batch.push_agg_trade(row)
    }

    const ENDPOINT: Endpoint = Endpoint::AggTrades;

    fn id_after(agg: AggTradeRef) -> u64 {
        agg.id + 1
    }

    fn id_at(agg: AggTradeRef) -> u64 {
        agg.id
    }

    fn fetch<'a>(
        exchange: &'a Exchange,
        symbol: &'a str,
        from: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Self>>> + Send + 'a {
        exchange.agg_trades_from_id(symbol, from, limit)
    }

    /// `aggId, price, qty, firstId, lastId, time, isBuyerMaker[, isBestMatch]`.
    fn push_csv_row(
        row: &csv::StringRecord,
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
            best_match: fields::optional_boolean(row, 7, "is best match").map_err(bad)?,
        };
        batch.push_agg_trade(&t)
    }
}
