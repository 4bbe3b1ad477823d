//! The process's one TLS client configuration (the system trust store), shared by the REST
//! client, the archive client and every WebSocket connection.
//!
//! Building a connector makes OpenSSL 3 parse the whole CA bundle, twice (the default verify
//! paths, then native-tls's probed bundle): about 500 million instructions, where the rest of a
//! day of archive candles takes some 2,000 million. Built once, cloned after (a clone shares the
//! same OpenSSL context).

use std::sync::OnceLock;

use native_tls::TlsConnector;

/// The shared connector, built on first use; why it cannot be built, if it cannot.
pub fn connector() -> Result<TlsConnector, String> {
    static CONNECTOR: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            TlsConnector::new()
                .map_err(|e| format!("cannot set up TLS with the system's certificates: {e}"))
        })
        .clone()
}
