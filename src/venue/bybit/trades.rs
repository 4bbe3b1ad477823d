//! Bybit's trades of a range (`api_raw_trades`): from its archive (`BYBIT_ARCHIVE_URL`) alone,
//! one gzip CSV per day ([`rules::trade_file`]), because its REST API answers the latest trades
//! only ([`rules::RECENT_TRADES_ONLY`]). A derivatives trade's id is a UUID, which orders
//! nothing, so every trade is keyed by its time and its place among that millisecond's trades
//! in the file ([`time_rank`]): a resumed load skips exactly what it published, and `verify`
//! compares a topic with the archive's own list of the range.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::rules;
use crate::archive::{fields, ArchiveClient, ArchiveLayout, FileFormat, Integrity, RowOrder};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::{RankedTrade, RecordBatch, TradeId};
use crate::registry::{time_rank, RecordKind};
use crate::time_range::TimeRange;
use crate::venue::history::{
    list_archive, Cursor, Emitter, History, HistoryContext, Probe, RestFrom,
};

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
    let rank = cursor.rank(r.time).ok_or_else(|| {
        LoaderError::Exchange(format!(
            "a trade at {} follows a later one: the file's rows are in neither time order",
            crate::time_range::fmt_ms(r.time)
        ))
    })?;
    let ordinal = time_rank::ordinal(r.time, rank).ok_or_else(|| {
        LoaderError::Exchange(format!(
            "a trade at {} (ms) cannot be keyed: more than {} trades at one millisecond, or a \
             time no trade has",
            r.time,
            time_rank::PER_MS
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
            integrity: Integrity::HeadAndCrc,
            order: RowOrder::EitherByTime {
                column: rules::trade_time_column(self.market),
            },
            schedule: rules::ARCHIVE_SCHEDULE,
            utc_offset_ms: 0,
        }
    }

    /// The ordinals of every trade of `range` in the archive's files, oldest first.
    async fn list(&self, symbol: &str, range: TimeRange) -> Result<Vec<i64>> {
        let archive = self.archive.as_ref().ok_or_else(|| {
            LoaderError::Other(
                "Bybit's trades are listed from its archive, which is not set".into(),
            )
        })?;
        let market = self.market;
        list_archive(archive, &self.layout(symbol), range, move |row, cursor| {
            Ok(admit(market, row, cursor)?.map(|(_, ordinal)| ordinal))
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn push(market: Market, rows: &[&str]) -> Result<Vec<serde_json::Value>> {
        let t = BybitTrades {
            market,
            archive: None,
        };
        let range = TimeRange {
            start_ms: 0,
            end_ms: i64::MAX,
        };
        let mut cursor = Cursor::for_sequence(crate::registry::Sequence::Ranked, range);
        let mut batch = RecordBatch::new(Venue::Bybit, market, "BTCUSDT".into(), 8);
        for r in rows {
            let row = csv::StringRecord::from(r.split(',').collect::<Vec<_>>());
            t.push_csv_row(&row, &mut cursor, &mut batch)?;
        }
        Ok(batch
            .iter()
            .map(|(p, _)| serde_json::from_slice(p).unwrap())
            .collect())
    }

    #[test]
    fn derivatives_rows_are_keyed_by_millisecond_and_rank_with_their_uuid() {
        let rows = [
            "1755648000.1385,BTCUSDT,Buy,0.002,71250.10,PlusTick,7df520b4-f4a1-5eb9-86c2-3ac7ebac1832,1,0.002,142.5",
            "1755648000.1389,BTCUSDT,Sell,0.010,71250.00,MinusTick,0a6b1c2d-0000-4000-8000-000000000001,1,0.01,712.5",
            "1755648000.2,BTCUSDT,Sell,1,71249.9,MinusTick,0a6b1c2d-0000-4000-8000-000000000002,1,1,71249.9",
        ];
        let r = push(Market::UsdM, &rows).unwrap();
        assert_eq!(
            r[0]["_key"],
            "bybit_linear_BTCUSDT_trade_1755648000138000000"
        );
        assert_eq!(
            r[1]["_key"],
            "bybit_linear_BTCUSDT_trade_1755648000138000001"
        );
        assert_eq!(
            r[2]["_key"],
            "bybit_linear_BTCUSDT_trade_1755648000200000000"
        );
        assert_eq!(r[0]["trade_id"], "7df520b4-f4a1-5eb9-86c2-3ac7ebac1832");
        assert_eq!(
            (r[0]["timestamp"].as_i64(), r[0]["is_buyer_maker"].as_bool()),
            (Some(1_755_648_000_138), Some(false))
        );
        assert_eq!(
            (r[1]["quantity"].as_str(), r[1]["is_buyer_maker"].as_bool()),
            (Some("0.010"), Some(true))
        );
        assert_eq!(r[0]["exchange"], "bybit");
    }

    #[test]
    fn spot_rows_carry_numeric_ids_and_a_row_out_of_order_is_refused() {
        let r = push(Market::Spot, &["7,1700000000001,37000.5,0.1,buy"]).unwrap();
        assert_eq!(r[0]["trade_id"], 7);
        assert_eq!(r[0]["_key"], "bybit_spot_BTCUSDT_trade_1700000000001000000");
        let e = push(
            Market::Spot,
            &["1,1700000000005,1,1,buy", "2,1700000000003,1,1,sell"],
        )
        .unwrap_err();
        assert!(e.to_string().contains("neither time order"), "{e}");
        let e = push(Market::Spot, &["1,1700000000005,1,1,hold"]).unwrap_err();
        assert!(e.to_string().contains("Buy or Sell"), "{e}");
    }
}
