//! The venues this loader reads: the one list of them. `EXCHANGE` finds its venue here, and
//! everything above the seam (config, job, `verify`, the demo) takes it through
//! [`VenueSpec`]. A new venue is one tree under `src/venue/` and one line here.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::archive::{ArchiveClient, ArchiveConfig};
use crate::error::LoaderError;
use crate::market::Venue;
use crate::venue::binance::spec::BINANCE;
use crate::venue::bybit::spec::BYBIT;
use crate::venue::okx::spec::OKX;
use crate::venue::{Session, VenueSettings, VenueSpec};

/// Every venue, in `Venue::ALL`'s order.
pub static REGISTERED: [&dyn VenueSpec; 3] = [&BINANCE, &BYBIT, &OKX];

/// The spec of `venue`.
pub fn spec(venue: Venue) -> &'static dyn VenueSpec {
    REGISTERED
        .iter()
        .copied()
        .find(|s| s.venue() == venue)
        .expect("every venue is registered (tests::every_venue_is_registered_once)")
}

/// Connects to `venue` with `settings`, reading its archive at `archive` where the venue lists
/// a type from there (`verify`). Nothing of it is cancelled but by the process ending.
pub async fn connect(
    venue: Venue,
    settings: &VenueSettings,
    symbols: &[String],
    archive: Option<ArchiveConfig>,
) -> Result<Arc<dyn Session>, LoaderError> {
    let stop = CancellationToken::new();
    let archive = archive
        .map(|cfg| ArchiveClient::new(cfg, stop.clone()).map(Arc::new))
        .transpose()
        .map_err(LoaderError::config)?;
    spec(venue).connect(settings, symbols, stop, archive).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_venue_is_registered_once() {
        let listed: Vec<Venue> = REGISTERED.iter().map(|s| s.venue()).collect();
        assert_eq!(listed, Venue::ALL);
    }
}
