//! The wire format of every record kind as a JSON Schema (draft 2020-12), generated from the
//! record structs of `record` themselves (their field names, types and which fields may be
//! absent), so the documentation cannot drift from what the loader publishes. Beside what the
//! structs say: the `loader_job` field every record ends with (the sink appends it), the venues
//! an `exchange` field may name, and the market names `market` may hold.
//!
//! `loader-producer schema` prints them; `docs/schema/v<VERSION>/` holds them for consumers, and
//! a test keeps those files equal to what this module generates. [`VERSION`] changes whenever a
//! record kind changes in a way a consumer must know about (a field removed, renamed or
//! retyped); an added optional field does not.

use schemars::{generate::SchemaSettings, JsonSchema};
use serde_json::{json, Value};

use crate::market::{Market, Venue};
use crate::record::{
    AggTradeRecord, BookTickerRecord, DepthUpdateRecord, FundingRateRecord, KlineRecord,
    LiquidationRecord, LongShortRatioRecord, MarkPriceRecord, OpenInterestRecord, OrderBookRecord,
    PriceKlineRecord, TradeRecord,
};
use crate::registry::{FuturesSeries, RecordKind};

/// The version of the records' wire format.
pub const VERSION: u32 = 1;

/// One schema per family of record kinds: its file name (without `.json`), what it describes,
/// and the schema.
pub struct KindSchema {
    pub name: &'static str,
    pub title: &'static str,
    pub schema: Value,
}

/// The family a kind's records belong to (every interval of candles shares one schema).
pub fn family(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Candles(_) => "candles",
        RecordKind::AggTrades => "agg_trades",
        RecordKind::Trades => "trades",
        RecordKind::DepthUpdates => "depth",
        RecordKind::OrderBook => "order_book",
        RecordKind::BookTicker => "book_ticker",
        RecordKind::PriceCandles(..) => "price_candles",
        RecordKind::FundingRate => "funding_rate",
        RecordKind::FuturesData(FuturesSeries::OpenInterest, _) => "open_interest",
        RecordKind::FuturesData(..) => "long_short_ratio",
        RecordKind::MarkPrice => "mark_price",
        RecordKind::Liquidations => "liquidations",
    }
}

fn generate<T: JsonSchema>(name: &'static str, title: &'static str) -> KindSchema {
    let mut schema = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    let venues: Vec<&str> = Venue::ALL.iter().filter_map(|v| v.record_field()).collect();
    let mut markets: Vec<&str> = Venue::ALL
        .iter()
        .flat_map(|v| Market::ALL.iter().map(move |m| v.market_name(*m)))
        .collect();
    markets.sort_unstable();
    markets.dedup();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            json!(format!("loader-producer/schema/v{VERSION}/{name}.json")),
        );
        obj.insert("title".into(), json!(title));
        obj.insert("x-loader-producer-version".into(), json!(VERSION));
        if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "loader_job".into(),
                json!({
                    "description": "The job that published the record and its attempt \
                                    (`<job id>;p=<attempt>`): what resume trusts.",
                    "type": "string"
                }),
            );
            if let Some(p) = props.get_mut("exchange").and_then(Value::as_object_mut) {
                p.insert("enum".into(), json!(venues));
                p.insert(
                    "description".into(),
                    json!("The venue, for every venue but Binance (whose records have none)."),
                );
            }
            if let Some(p) = props.get_mut("market").and_then(Value::as_object_mut) {
                p.insert("enum".into(), json!(markets));
            }
        }
        if let Some(req) = obj.get_mut("required").and_then(Value::as_array_mut) {
            req.push(json!("loader_job"));
        }
    }
    KindSchema {
        name,
        title,
        schema,
    }
}

/// Every family's schema, in a fixed order.
pub fn all() -> Vec<KindSchema> {
    vec![
        generate::<KlineRecord>("candles", "Candles (api_candles_*, ws_candles_*)"),
        generate::<AggTradeRecord>("agg_trades", "Aggregate trades (api_trades, ws_aggtrades)"),
        generate::<TradeRecord>("trades", "Trades (api_raw_trades, ws_trades)"),
        generate::<DepthUpdateRecord>("depth", "Diff-depth events (ws_depth)"),
        generate::<OrderBookRecord>("order_book", "Order book snapshots (ws_orderbook)"),
        generate::<BookTickerRecord>("book_ticker", "Best bid and ask (ws_bookticker)"),
        generate::<PriceKlineRecord>(
            "price_candles",
            "Mark, index and premium-index candles (api_*_price_candles_*)",
        ),
        generate::<FundingRateRecord>("funding_rate", "Funding rates (api_funding_rate)"),
        generate::<OpenInterestRecord>(
            "open_interest",
            "Open interest (api_open_interest_<period>)",
        ),
        generate::<LongShortRatioRecord>(
            "long_short_ratio",
            "Long/short ratios (api_*long_short*_ratio_<period>)",
        ),
        generate::<MarkPriceRecord>("mark_price", "Mark price and funding (ws_mark_price)"),
        generate::<LiquidationRecord>("liquidations", "Liquidation orders (ws_liquidations)"),
    ]
}

/// The schema of `kind`'s records.
pub fn of(kind: RecordKind) -> Value {
    let name = family(kind);
    all()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.schema)
        .expect("every family has a schema")
}

/// Every schema as one document: `{"version": …, "kinds": {<name>: <schema>, …}}`.
pub fn document() -> Value {
    let kinds: serde_json::Map<String, Value> = all()
        .into_iter()
        .map(|s| (s.name.to_string(), s.schema))
        .collect();
    json!({ "version": VERSION, "kinds": kinds })
}

/// A schema as its file holds it: pretty JSON and a final newline.
pub fn file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/schema/v<VERSION>/` is what this module generates: regenerate it with
    /// `cargo run -- schema --out docs/schema` after changing a record.
    #[test]
    fn the_documented_schemas_are_the_generated_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/schema")
            .join(format!("v{VERSION}"));
        let all = all();
        for s in &all {
            let path = dir.join(format!("{}.json", s.name));
            let written = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                written,
                file_text(&s.schema),
                "{} is stale: run `cargo run -- schema --out docs/schema`",
                path.display()
            );
        }
        let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, all.len(), "one file per family in {}", dir.display());
    }

    #[test]
    fn every_kind_has_a_schema_that_names_its_fields() {
        let candles = of(RecordKind::Candles(kline_interval::Interval::M1));
        let props = candles["properties"].as_object().unwrap();
        for f in [
            "_key",
            "market",
            "symbol",
            "open_time",
            "loader_job",
            "exchange",
        ] {
            assert!(props.contains_key(f), "{f}");
        }
        let required: Vec<&str> = candles["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(required.contains(&"open_time") && required.contains(&"loader_job"));
        assert!(!required.contains(&"exchange") && !required.contains(&"number_of_trades"));
        assert_eq!(props["exchange"]["enum"], json!(["bybit", "okx"]));
        let trades = of(RecordKind::Trades);
        // A number (Binance's ids) or a string (Bybit's UUIDs).
        assert_eq!(trades["properties"]["trade_id"]["$ref"], "#/$defs/TradeId");
        let id = trades["$defs"]["TradeId"]["anyOf"].to_string();
        assert!(id.contains("integer") && id.contains("string"), "{id}");
    }
}
