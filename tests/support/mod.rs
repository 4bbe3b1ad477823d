#![allow(dead_code)]

pub mod broker;
pub mod loader;

/// An exchange simulator with `cfg` on a free loopback port: what every suite starts.
pub async fn sim(cfg: exchange_sim::SimConfig) -> exchange_sim::SimServer {
    exchange_sim::SimServer::start(cfg, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the exchange simulator starts on a loopback port")
}
