//! Raw trades (`api_raw_trades`): every individual trade whose time lies in the range, exactly
//! once, from the archive's `trades` files and the REST `historicalTrades` endpoint (spot: weight
//! 25 for 1,000; futures: 20 for 500; paged by id only). The same records as the live `ws_trades` type.
//!
//! `historicalTrades` cannot search by time: an aggregate trade at or after a time tells the
//! first raw trade id at or after it (aggregate trades cover contiguous raw ids of one time).
//! What both trade types share is in [`trade_ids`](super::trade_ids).

use std::future::Future;

use super::trade_ids::TradeType;
use crate::archive::fields;
use crate::error::{LoaderError, Result};
use crate::market::Market;
use crate::record::{RawTrade, RecordBatch};
use crate::registry::RecordKind;
use crate::venue::binance::api::{AggTradeRef, Page, Trades};
use crate::venue::binance::{Endpoint, Exchange};
use crate::venue::history::Cursor;

impl TradeType for Trades {
    const KIND: RecordKind = RecordKind::Trades;
    const ARCHIVE_NAME: &'static str = "trades";

    fn id(row: &RawTrade<'_>) -> u64 {
        row.id
    }

    fn time(row: &RawTrade<'_>) -> i64 {
        row.time
    }

    fn push(row: &RawTrade<'_>, batch: &mut RecordBatch) -> Result<()> {
        batch.push_trade(row)
    }

    const ENDPOINT: Endpoint = Endpoint::HistoricalTrades;

    fn id_after(agg: AggTradeRef) -> u64 {
        agg.last_trade_id + 1
    }

    fn id_at(agg: AggTradeRef) -> u64 {
        agg.first_trade_id
    }

    /// Futures serve 500 raw trades a page, spot 1,000.
    fn max_page(market: Market) -> u32 {
        market.max_trades_page()
    }

    fn fetch<'a>(
        exchange: &'a Exchange,
        symbol: &'a str,
        from: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Self>>> + Send + 'a {
        exchange.historical_trades(symbol, from, limit)
    }

    /// `id, price, qty, quoteQty (COIN-M: baseQty), time, isBuyerMaker[, isBestMatch]` (futures
    /// files have no best-match column).
    fn push_csv_row(
        row: &csv::StringRecord,
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
            is_best_match: fields::optional_boolean(row, 6, "is best match").map_err(bad)?,
        };
        batch.push_trade(&t)
    }
}
