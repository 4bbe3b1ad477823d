#![allow(dead_code)]

pub mod broker;
pub mod loader;
