//! Binance as the generic layers know it before connecting ([`BINANCE`]): which of its
//! markets serve each type, its URL variables, page bounds and the checks a job's settings get.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::Exchange;
use crate::archive::ArchiveClient;
use crate::error::LoaderError;
use crate::market::{Market, Venue};
use crate::registry::{DataType, HistoryType};
use crate::source_mode::SourceMode;
use crate::venue::history::History;
use crate::venue::{JobChoice, Session, UrlVar, VenueSettings, VenueSpec};

/// `ARCHIVE_URL`'s default: Binance's public archive.
pub const DEFAULT_ARCHIVE_URL: &str = "https://data.binance.vision";

pub struct BinanceSpec;

/// Binance's entry in `crate::venues`.
pub static BINANCE: BinanceSpec = BinanceSpec;

impl VenueSpec for BinanceSpec {
    fn venue(&self) -> Venue {
        Venue::Binance
    }

    fn serves(&self, data_type: DataType, market: Market) -> Result<(), String> {
        if data_type.markets().contains(&market) {
            return Ok(());
        }
        let on = data_type
            .markets()
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>();
        Err(match on.is_empty() {
            true => format!(
                "TYPE {}: 1s candles exist on MARKET=spot only",
                data_type.name()
            ),
            false => format!(
                "TYPE {} is not offered on MARKET={market}; it exists on MARKET={}",
                data_type.name(),
                on.join(" or ")
            ),
        })
    }

    fn check_job(&self, job: &JobChoice<'_>) -> Result<(), String> {
        if let (Market::CoinM, DataType::History(HistoryType::FuturesData(series, _))) =
            (job.market, job.data_type)
        {
            if let Some(e) = job
                .symbols
                .iter()
                .find_map(|s| super::endpoint::coinm_series_symbol_error(series, s))
            {
                return Err(e);
            }
        }
        if job.data_type == DataType::History(HistoryType::Trades)
            && job.source != SourceMode::Archive
            && !job.api_key_set
            && super::Endpoint::HistoricalTrades.needs_api_key(job.market)
        {
            return Err(format!(
                "TYPE {} on MARKET={} reads Binance's historicalTrades, which needs an API key on \
                 futures: set BINANCE_API_KEY (a key without any permission will do; it is sent \
                 only to {}), or SOURCE=archive to load from the archive's files alone",
                job.data_type.name(),
                job.market,
                job.market.rest_url_var().0
            ));
        }
        Ok(())
    }

    fn kline_pages(&self, market: Market) -> (u32, u32) {
        (market.default_kline_page(), market.max_kline_page())
    }

    fn rest_url(&self, market: Market) -> UrlVar {
        let (var, default) = market.rest_url_var();
        UrlVar { var, default }
    }

    fn ws_url(&self, market: Market) -> Option<UrlVar> {
        let (var, default) = market.ws_url_var();
        Some(UrlVar { var, default })
    }

    fn stream_base(&self, url: &str) -> String {
        super::live::stream_base(url)
    }

    fn archive_url(&self) -> Option<UrlVar> {
        Some(UrlVar {
            var: "ARCHIVE_URL",
            default: DEFAULT_ARCHIVE_URL,
        })
    }

    fn demo_symbols(&self, market: Market) -> &'static str {
        match market {
            Market::CoinM => "BTCUSD_PERP,ETHUSD_PERP",
            Market::Spot | Market::UsdM => "BTCUSDT,ETHUSDT",
        }
    }

    fn connect<'a>(
        &'a self,
        settings: &'a VenueSettings,
        symbols: &'a [String],
        stop: CancellationToken,
        _archive: Option<Arc<ArchiveClient>>,
    ) -> BoxFuture<'a, Result<Arc<dyn Session>, LoaderError>> {
        // Binance's history takes the archive from the job's context, not from its session.
        Box::pin(async move {
            let exchange = Exchange::connect(settings, symbols, stop).await?;
            Ok(Arc::new(exchange) as Arc<dyn Session>)
        })
    }

    fn archive_history(
        &self,
        t: HistoryType,
        _market: Market,
        _archive: Option<Arc<ArchiveClient>>,
    ) -> Option<Arc<dyn History>> {
        Some(super::history::history(t, None))
    }
}
