//! loader-producer: the StreamForge bulk loader. Loads Binance, Bybit or OKX market data for a
//! symbol set and a time range into Kafka, one JSON record per message, exactly once per record.
//!
//! Layers, bottom to top (`tests/layering.rs` keeps imports pointing down and free of cycles):
//! - model: `error`, `secret`, `bounds`, `backoff`, `time_range`, `market`, `record`, `registry`
//!   (the data types and what identifies their records), `schema` (the records' JSON Schemas),
//!   `identity`, `source_mode`;
//! - connectors: `archive` (an archive's files: downloads, checksums, CSV rows), `kafka`, `tls`
//!   (the one TLS connector);
//! - the seam: `venue` (`VenueSpec`: a venue before it is connected; `Session`: connected;
//!   `venue::history`: what a venue's history of a type does, and what the generic layers hand
//!   it), which names no venue;
//! - venues: `venue::binance` (REST and streams: its endpoint and stream names of each data type,
//!   and its history types, live there), `venue::bybit` (its REST API and its archive of trades),
//!   `venue::okx` (its REST API); `venues`, the one list of them, above;
//! - components: a `source` yields records, the `sink` publishes them; `resume`, `lease`,
//!   `verify`, `status`, `telemetry`, `control` and `metrics` around them;
//! - job: `config` (environment and flags), `job` (wires a source per symbol to the sink through a
//!   bounded channel), `lifecycle` (the Job protocol around it), `demo` (a job offline).
//!
//! Modules are public only where the binary, the tests or the benchmark use them, so the
//! compiler reports code that nothing uses.

mod archive;
mod backoff;
mod bounds;
pub mod config;
mod control;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
mod flat_json;
pub mod identity;
mod job;
pub mod kafka;
mod lease;
pub mod lifecycle;
pub mod market;
mod metrics;
pub mod record;
pub mod registry;
mod resume;
pub mod schema;
mod secret;
pub mod sink;
mod source;
mod source_mode;
mod status;
mod telemetry;
pub mod time_range;
mod tls;
pub mod venue;
pub mod venues;
pub mod verify;
