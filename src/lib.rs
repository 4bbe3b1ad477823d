//! loader-producer: the StreamForge bulk loader. Loads Binance market data for a symbol set and a
//! time range into Kafka, one JSON record per message, exactly once per record.
//!
//! Layout: `config` (environment and flags) → `job` wires a `source` per symbol (REST fetching
//! through `binance`) to the `sink` (Kafka) through a bounded channel; `verify` reads a topic
//! back; `demo` runs a job offline.

pub mod archive;
pub mod backoff;
pub mod binance;
pub mod bounds;
pub mod config;
pub mod control;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod identity;
pub mod job;
pub mod kafka;
pub mod lease;
pub mod lifecycle;
pub mod market;
pub mod metrics;
pub mod record;
pub mod registry;
pub mod resume;
pub mod sink;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod time_range;
pub mod verify;
