//! Bybit as the generic layers know it before connecting ([`BYBIT`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{rules, BybitSession};
use crate::archive::ArchiveClient;
use crate::error::LoaderError;
use crate::market::{Market, Venue};
use crate::registry::{DataType, HistoryType};
use crate::source_mode::SourceMode;
use crate::venue::history::History;
use crate::venue::{Session, UrlVar, VenueSettings, VenueSpec};

pub struct BybitSpec;

/// Bybit's entry in `crate::venues`.
pub static BYBIT: BybitSpec = BybitSpec;

impl VenueSpec for BybitSpec {
    fn venue(&self) -> Venue {
        Venue::Bybit
    }

    fn serves(&self, data_type: DataType, market: Market) -> Result<(), String> {
        super::serves(data_type, market)
    }

    fn serves_from(&self, data_type: DataType, source: SourceMode) -> Result<(), String> {
        super::serves_from(data_type, source)
    }

    fn archive_only(&self, data_type: DataType) -> bool {
        data_type == DataType::History(HistoryType::Trades)
    }

    fn kline_pages(&self, _market: Market) -> (u32, u32) {
        // Every request weighs the same: the largest page is the cheapest.
        (rules::MAX_KLINE_PAGE, rules::MAX_KLINE_PAGE)
    }

    fn rest_url(&self, _market: Market) -> UrlVar {
        UrlVar {
            var: "BYBIT_API_URL",
            default: rules::DEFAULT_API_URL,
        }
    }

    fn ws_url(&self, _market: Market) -> Option<UrlVar> {
        Some(UrlVar {
            var: "BYBIT_WS_URL",
            default: rules::DEFAULT_WS_URL,
        })
    }

    fn stream_base(&self, url: &str) -> String {
        // The host, however the URL was written (with a market's `/v5/public/...` or not).
        let url = url.trim().trim_end_matches('/');
        match url.find("/v5/") {
            Some(at) => url[..at].to_string(),
            None => url.to_string(),
        }
    }

    fn archive_url(&self) -> Option<UrlVar> {
        Some(UrlVar {
            var: "BYBIT_ARCHIVE_URL",
            default: rules::DEFAULT_ARCHIVE_URL,
        })
    }

    fn demo_symbols(&self, market: Market) -> &'static str {
        match market {
            Market::CoinM => "BTCUSD,ETHUSD",
            Market::Spot | Market::UsdM => "BTCUSDT,ETHUSDT",
        }
    }

    fn connect<'a>(
        &'a self,
        settings: &'a VenueSettings,
        symbols: &'a [String],
        stop: CancellationToken,
        archive: Option<Arc<ArchiveClient>>,
    ) -> BoxFuture<'a, Result<Arc<dyn Session>, LoaderError>> {
        Box::pin(async move {
            let session = BybitSession::connect(settings, symbols, stop).await?;
            Ok(Arc::new(session.with_archive(archive)) as Arc<dyn Session>)
        })
    }

    fn archive_history(
        &self,
        t: HistoryType,
        market: Market,
        archive: Option<Arc<ArchiveClient>>,
    ) -> Option<Arc<dyn History>> {
        super::archive_history(t, market, archive)
    }
}
