//! Venues: everything an exchange does its own way lives in its tree (`binance`): endpoints,
//! weights and limits, stream grammar, archive layout, and the mapping from its rows to the
//! loader's records. The seam the generic layers see is [`history`]: the history driver,
//! `verify` and the job take a venue's [`History`](history::History) of a type through it and
//! never name the venue's constants.

pub mod binance;
pub mod history;
