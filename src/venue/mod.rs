//! Venues: everything an exchange does its own way lives in its tree (`binance`): endpoints,
//! weights and limits, stream grammar, archive layout, and the mapping from its rows to the
//! loader's records. The seam the generic layers see is this module: a connected venue
//! ([`Session`]), the [`History`](history::History) of a type it serves ([`history`]) and what
//! its REST client spends ([`requests`]). The history driver, `verify`, the job's status and
//! metrics take a venue through these and never name its constants.

pub mod binance;
pub mod bybit;
pub mod history;
pub mod requests;

use std::sync::Arc;

use crate::registry::HistoryType;
use history::{History, VenueClock};
use requests::{RequestBudget, RestStats};

/// A venue connected for a job (its clock synchronised, its limits learnt, the symbols checked):
/// what the job, its status and `verify` take from it.
pub trait Session: Send + Sync + 'static {
    /// The venue's present.
    fn clock(&self) -> VenueClock;

    /// What its REST client spent so far.
    fn rest_stats(&self) -> Arc<RestStats>;

    /// The budget its REST client paces itself by.
    fn budget(&self) -> Arc<dyn RequestBudget>;

    /// The history of `t` at this venue, asking this session over REST; `None` where the
    /// venue does not serve the type.
    fn history(self: Arc<Self>, t: HistoryType) -> Option<Arc<dyn History>>;
}
