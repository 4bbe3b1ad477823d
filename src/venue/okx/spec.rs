//! OKX as the generic layers know it before connecting ([`OKX`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{rules, OkxSession};
use crate::archive::ArchiveClient;
use crate::error::LoaderError;
use crate::market::{Market, Venue};
use crate::registry::{DataType, HistoryType};
use crate::source_mode::SourceMode;
use crate::venue::history::History;
use crate::venue::{Session, UrlVar, VenueSettings, VenueSpec};

pub struct OkxSpec;

/// OKX's entry in `crate::venues`.
pub static OKX: OkxSpec = OkxSpec;

impl VenueSpec for OkxSpec {
    fn venue(&self) -> Venue {
        Venue::Okx
    }

    fn serves(&self, data_type: DataType, market: Market) -> Result<(), String> {
        super::serves(data_type, market)
    }

    fn serves_from(&self, data_type: DataType, source: SourceMode) -> Result<(), String> {
        super::serves_from(data_type, source)
    }

    fn kline_pages(&self, _market: Market) -> (u32, u32) {
        (rules::MAX_CANDLE_PAGE, rules::MAX_CANDLE_PAGE)
    }

    fn rest_url(&self, _market: Market) -> UrlVar {
        UrlVar {
            var: "OKX_API_URL",
            default: rules::DEFAULT_API_URL,
        }
    }

    fn ws_url(&self, _market: Market) -> Option<UrlVar> {
        Some(UrlVar {
            var: "OKX_WS_URL",
            default: rules::DEFAULT_WS_URL,
        })
    }

    fn stream_base(&self, url: &str) -> String {
        // The host, however the URL was written (with a service's `/ws/v5/...` or not).
        let url = url.trim().trim_end_matches('/');
        match url.find("/ws/v5") {
            Some(at) => url[..at].to_string(),
            None => url.to_string(),
        }
    }

    fn archive_url(&self) -> Option<UrlVar> {
        Some(UrlVar {
            var: "OKX_ARCHIVE_URL",
            default: rules::DEFAULT_ARCHIVE_URL,
        })
    }

    fn candle_delay_ms(&self) -> i64 {
        rules::CONFIRM_MARGIN_MS
    }

    fn demo_symbols(&self, market: Market) -> &'static str {
        match market {
            Market::Spot => "BTC-USDT,ETH-USDT",
            Market::UsdM => "BTC-USDT-SWAP,BTC-USD-SWAP",
            // The quarterlies live now and for days yet: a fixed date would stop being an
            // instrument once delivered.
            Market::CoinM => {
                static FUTURES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                FUTURES.get_or_init(|| {
                    let now = chrono::Utc::now().timestamp_millis();
                    let date = rules::quarterly_delivery(now, 3 * 86_400_000);
                    format!("BTC-USD-{date},ETH-USD-{date}")
                })
            }
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
            let session = OkxSession::connect(settings, symbols, stop).await?;
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
