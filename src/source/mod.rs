//! Sources: each yields one symbol's records, in time order, as serialised batches on a bounded
//! channel. `history` drives a venue's [`History`](crate::venue::history::History) of a type
//! over the spans the plan picks (monthly and daily archive files, REST for the rest), without
//! naming the venue; `live` follows WebSocket streams. Which types exist is the registry's
//! business; how a venue serves each is its own (`venue::binance`).

pub mod history;
pub mod live;
pub mod plan;
