//! Bybit's trades of a range (`api_raw_trades`): from its archive (`BYBIT_ARCHIVE_URL`) alone,
//! one gzip CSV per day ([`rules::trade_file`]), because its REST API answers the latest trades
//! only ([`rules::RECENT_TRADES_ONLY`]). A derivatives trade's id is a UUID, which orders
//! nothing, so every trade is keyed by its time and its place among that millisecond's trades
//! in the file ([`time_rank`]): a resumed load skips exactly what it published, and `verify`
//! compares a topic with the archive's own list of the range.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::rules;
use crate::archive::{
    fields, ArchiveClient, ArchiveLayout, FileFormat, Integrity, Period, RowOrder,
};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::{RankedTrade, RecordBatch, TradeId};
use crate::registry::{time_rank, RecordKind};
use crate::time_range::TimeRange;
use crate::venue::history::{Cursor, Emitter, History, HistoryContext, Probe, RestFrom};

pub struct BybitTrades {
    pub market: Market,
    /// The archive, for `verify`'s list of a range (a load takes it from its context).
    pub archive: Option<Arc<ArchiveClient>>,
}

/// One row of a trade file.
struct TradeRow<'a> {
    time: i64,
    id: TradeId<'a>,
    price: &'a str,
    quantity: &'a str,
    is_buyer_maker: bool,
}

/// Reads a row of `market`'s trade file (see [`rules::trade_file`] for the columns).
fn parse_row(market: Market, row: &csv::StringRecord) -> std::result::Result<TradeRow<'_>, String> {
    // The taker's side: a taker that sells hits a buyer who made the market.
    let buyer_maker = |i: usize| -> std::result::Result<bool, String> {
        let side = fields::text(row, i, "side")?;
        if side.eq_ignore_ascii_case("sell") {
            Ok(true)
        } else if side.eq_ignore_ascii_case("buy") {
            Ok(false)
        } else {
            Err(format!(
                "column {} (side) is not Buy or Sell: {side:?}",
                i + 1
            ))
        }
    };
    Ok(match market {
        Market::Spot => TradeRow {
            id: TradeId::Number(fields::uint(row, 0, "id")?),
            time: fields::int(row, 1, "timestamp")?,
            price: fields::text(row, 2, "price")?,
            quantity: fields::text(row, 3, "volume")?,
            is_buyer_maker: buyer_maker(4)?,
        },
        Market::UsdM | Market::CoinM => TradeRow {
            time: fields::seconds_ms(row, 0, "timestamp")?,
            is_buyer_maker: buyer_maker(2)?,
            quantity: fields::text(row, 3, "size")?,
            price: fields::text(row, 4, "price")?,
            id: TradeId::Text(fields::text(row, 6, "trdMatchID")?),
        },
    })
}

/// Offers one row to `cursor`: its rank is counted whether or not it is admitted. Returns the
/// row and its ordinal when admitted.
fn admit<'r>(
    market: Market,
    row: &'r csv::StringRecord,
    cursor: &mut Cursor,
) -> Result<Option<(TradeRow<'r>, i64)>> {
    let r = parse_row(market, row).map_err(LoaderError::Exchange)?;
    let rank = cursor.rank(r.time);
    let ordinal = time_rank::ordinal(r.time, rank).ok_or_else(|| {
        LoaderError::Exchange(format!(
            "more than {} trades at one millisecond ({}): they cannot be keyed apart",
            time_rank::PER_MS,
            crate::time_range::fmt_ms(r.time)
        ))
    })?;
    Ok(cursor.admit(r.time, ordinal).then_some((r, ordinal)))
}

impl BybitTrades {
    fn layout(&self, symbol: &str) -> ArchiveLayout {
        ArchiveLayout {
            daily: Some(rules::trade_file(self.market, symbol)),
            monthly: None,
            format: FileFormat::GzippedCsv,
            integrity: Integrity::HeadAndGzip,
            order: RowOrder::EitherByTime {
                column: rules::trade_time_column(self.market),
            },
            schedule: rules::ARCHIVE_SCHEDULE,
        }
    }

    /// The ordinals of every trade of `range` in the archive's files, oldest first.
    async fn list(&self, symbol: &str, range: TimeRange) -> Result<Vec<i64>> {
        let archive = self.archive.as_ref().ok_or_else(|| {
            LoaderError::Other(
                "Bybit's trades are listed from its archive, which is not set".into(),
            )
        })?;
        let layout = self.layout(symbol);
        let mut ordinals = Vec::new();
        let mut day = Period::day_of(range.start_ms);
        while day.span().start_ms < range.end_ms {
            let file = layout.file(day);
            let unusable = |e: &dyn std::fmt::Display| {
                LoaderError::Archive(format!(
                    "{}: the archive at {} {} cannot list its trades: {e}",
                    file.name,
                    archive.url_var(),
                    archive.base_url()
                ))
            };
            let expected = archive
                .expected(&file)
                .await
                .map_err(|e| unusable(&e))?
                .ok_or_else(|| unusable(&"the file is not there (HTTP 404)"))?;
            let slot = archive.file_slot().await.map_err(|e| unusable(&e))?;
            let verified = archive
                .download(slot, &file, &expected)
                .await
                .map_err(|e| unusable(&e))?;
            let market = self.market;
            let mut found = std::mem::take(&mut ordinals);
            let read = tokio::task::spawn_blocking(move || {
                let mut cursor = Cursor::for_sequence(crate::registry::Sequence::Ranked, range);
                let rows = verified.read_rows(|row| {
                    if fields::is_header(row) {
                        return Ok(true);
                    }
                    if let Some((_, ordinal)) = admit(market, row, &mut cursor)? {
                        found.push(ordinal);
                    }
                    Ok(true)
                });
                (found, rows)
            })
            .await
            .map_err(|e| LoaderError::Other(format!("the archive reader thread failed: {e}")))?;
            ordinals = read.0;
            read.1.map_err(|e| unusable(&e))?;
            day = Period::day_of(day.span().end_ms);
        }
        Ok(ordinals)
    }
}

impl History for BybitTrades {
    fn kind(&self) -> RecordKind {
        RecordKind::Trades
    }

    fn has_rest(&self) -> bool {
        false
    }

    fn archive_layout(&self, _market: Market, symbol: &str) -> Option<ArchiveLayout> {
        Some(self.layout(symbol))
    }

    fn push_csv_row(
        &self,
        row: &csv::StringRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        if let Some((r, ordinal)) = admit(self.market, row, cursor)? {
            batch.push_ranked_trade(&RankedTrade {
                ordinal,
                id: r.id,
                price: r.price,
                quantity: r.quantity,
                time: r.time,
                is_buyer_maker: r.is_buyer_maker,
            })?;
        }
        Ok(())
    }

    /// Nothing is older than what REST serves, because it serves no history: every span
    /// comes from the archive, or the load fails saying which file is missing.
    fn rest_from(&self, ctx: &HistoryContext) -> Option<RestFrom> {
        Some(RestFrom::none(format!(
            "{}'s REST serves no {} trade history ({})",
            Venue::Bybit.title(),
            Venue::Bybit.market_name(ctx.market),
            rules::RECENT_TRADES_ONLY
        )))
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        _cursor: &'a mut Cursor,
        _out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            Err(self
                .rest_from(ctx)
                .expect("always")
                .error(span, "the archive did not serve it"))
        })
    }

    fn listed<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>>> {
        Box::pin(async move { self.list(symbol, range).await.map(Some) })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let (range, within) = match probe {
                Probe::Time(r) => (r, (i64::MIN, i64::MAX)),
                Probe::Ordinals(a, b) => (
                    TimeRange {
                        start_ms: time_rank::time(a),
                        end_ms: time_rank::time(b) + 1,
                    },
                    (a, b),
                ),
            };
            if range.end_ms <= range.start_ms {
                return Ok(false);
            }
            let listed = self.list(symbol, range).await?;
            Ok(listed.iter().any(|o| (within.0..=within.1).contains(o)))
        })
    }
}
