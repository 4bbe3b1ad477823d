//! Validation: raw settings into a [`JobConfig`], the first problem found reported as a
//! configuration error (exit 2) that names its variable and what was expected.

use std::path::PathBuf;
use std::time::Duration;

use super::cli::{JobArgs, KafkaArgs, VerifyArgs};
use super::{
    DataType, JobConfig, KafkaConfig, KafkaSecurity, LiveConfig, Market, MessageKey, Secret, Shard,
    Venue, VenueSettings,
};
use crate::archive::ArchiveConfig;
use crate::error::{LoaderError, Result};
use crate::source_mode::SourceMode;
use crate::time_range::TimeRange;

/// `value` without a trailing slash, if it is an https URL, or plain http to a loopback host (a
/// simulator, a local proxy) or with ALLOW_INSECURE_URLS; else an error naming `var`.
fn http_url(var: &str, value: &str, example: &str, allow_plain: bool) -> Result<String> {
    service_url(var, value, example, ("https", "http"), allow_plain)
}

/// [`http_url`] for WebSocket URLs: wss, or ws where plain text is allowed.
fn ws_url(var: &str, value: &str, example: &str, allow_plain: bool) -> Result<String> {
    service_url(var, value, example, ("wss", "ws"), allow_plain)
}

fn service_url(
    var: &str,
    value: &str,
    example: &str,
    (secure, plain): (&str, &str),
    allow_plain: bool,
) -> Result<String> {
    let url = value.trim().trim_end_matches('/').to_string();
    let parsed = reqwest::Url::parse(&url).ok().filter(|u| u.has_host());
    let Some(parsed) = parsed.filter(|u| [secure, plain].contains(&u.scheme())) else {
        return Err(LoaderError::config(format!(
            "{var} {url:?} is not a {plain}(s) URL, e.g. {example}"
        )));
    };
    if parsed.scheme() == plain && !allow_plain && !is_loopback(&parsed) {
        return Err(LoaderError::config(format!(
            "{var} {url:?} is plain {plain}:// to a host that is not loopback: what the loader fetches \
             (and BINANCE_API_KEY, when set) would cross the network unencrypted and unauthenticated. \
             Use {secure}://, e.g. {example}, or set ALLOW_INSECURE_URLS=true (flag --allow-insecure-urls) \
             for a network you trust"
        )));
    }
    Ok(url)
}

/// Whether `url`'s host is this machine: `localhost` or a loopback address.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn first_of(primary: &Option<String>, alias: &Option<String>) -> Option<String> {
    non_empty(primary).or(non_empty(alias)).map(str::to_string)
}

/// A name whose default sends records or events somewhere else: set but empty (a template that
/// did not resolve) is a configuration error, not "use the default", or the job would publish
/// where the platform's consumers never look. `names` are the variable and its aliases.
fn named(names: &[(&str, &Option<String>)], default: &str) -> Result<Option<String>> {
    for (var, v) in names {
        if let Some(raw) = v {
            if raw.trim().is_empty() {
                return Err(LoaderError::config(format!(
                    "{var} is set but empty: expected a name, or leave {var} unset to use {default}"
                )));
            }
        }
    }
    Ok(names
        .iter()
        .find_map(|(_, v)| v.as_deref().map(|s| s.trim().to_string())))
}

/// A duration setting within its bounds: below `lo` a timer would spin (or round to zero and
/// panic), above `hi` nothing sensible waits that long (and `Instant` arithmetic stays far from
/// overflow).
fn seconds(var: &str, v: f64, lo: f64, hi: f64) -> Result<Duration> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(LoaderError::config(format!(
            "{var} must be a positive number of seconds from {lo} to {hi}, got {v}"
        )))
    }
}

/// Parses `SYMBOL`: upper-cased, comma-separated, each 1-20 of A-Z 0-9 - _ . like Binance's rule.
pub fn parse_symbols(value: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in value.split(',') {
        let s = part.trim().to_ascii_uppercase();
        if s.is_empty() {
            continue;
        }
        let legal = s.len() <= 20
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !legal {
            return Err(format!(
                "SYMBOL {part:?} is not a Binance symbol: expected 1-20 letters or digits such as BTCUSDT, \
                 several separated by commas"
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(
            "SYMBOL is empty: expected a symbol such as BTCUSDT, or several separated by commas"
                .into(),
        );
    }
    Ok(out)
}

impl KafkaArgs {
    pub fn resolve(&self) -> Result<KafkaConfig> {
        let bootstrap = non_empty(&self.kafka_bootstrap_servers)
            .ok_or_else(|| {
                LoaderError::config(
                    "KAFKA_BOOTSTRAP_SERVERS is not set: expected host:port[,host:port] of the Kafka cluster \
                     (flag --kafka-bootstrap-servers)",
                )
            })?
            .to_string();
        let user = first_of(&self.kafka_user_producer, &self.kafka_user_alias);
        let password = first_of(&self.kafka_password_producer, &self.kafka_password_alias);
        let ca_path = self
            .ca_path
            .clone()
            .or_else(|| self.kafka_ca_path_alias.clone());
        let security = match (user, password) {
            (Some(user), Some(password)) => {
                let ca_path = match ca_path {
                    Some(p) => Some(p),
                    None => {
                        let default = PathBuf::from("/usr/local/share/ca-certificates/ca.crt");
                        default.exists().then_some(default)
                    }
                };
                if let Some(p) = &ca_path {
                    check_ca_file(p)?;
                }
                Some(KafkaSecurity { user, password: Secret::new(password), ca_path })
            }
            (Some(_), None) => {
                return Err(LoaderError::config(
                    "KAFKA_USER_PRODUCER is set but KAFKA_PASSWORD_PRODUCER is not: SCRAM-SHA-512 needs both \
                     (aliases KAFKA_USER / KAFKA_PASSWORD)",
                ))
            }
            (None, Some(_)) => {
                return Err(LoaderError::config(
                    "KAFKA_PASSWORD_PRODUCER is set but KAFKA_USER_PRODUCER is not: SCRAM-SHA-512 needs both \
                     (aliases KAFKA_USER / KAFKA_PASSWORD)",
                ))
            }
            (None, None) => {
                if let Some(p) = &ca_path {
                    check_ca_file(p)?;
                }
                None
            }
        };
        let allow = self.kafka_allow_unsafe_config;
        let mut allowed = Vec::new();
        let overrides = checked_overrides(
            "KAFKA_PRODUCER_CONFIG",
            non_empty(&self.kafka_producer_config),
            allow,
            &mut allowed,
        )?;
        let consumer_overrides = checked_overrides(
            "KAFKA_CONSUMER_CONFIG",
            non_empty(&self.kafka_consumer_config),
            allow,
            &mut allowed,
        )?;
        if !allowed.is_empty() {
            // The job resolves these settings again to report an early error: one warning.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    keys = %allowed.join("; "),
                    "KAFKA_ALLOW_UNSAFE_CONFIG=true: overrides of properties the exactly-once guarantees rest on \
                     are applied; those guarantees are now the configuration's to keep"
                )
            });
        }
        if !(1..=10_000).contains(&self.kafka_topic_partitions) {
            return Err(LoaderError::config(format!(
                "KAFKA_TOPIC_PARTITIONS must be between 1 and 10000, got {}",
                self.kafka_topic_partitions
            )));
        }
        Ok(KafkaConfig {
            bootstrap,
            security,
            overrides,
            consumer_overrides,
            connect_timeout: seconds(
                "KAFKA_CONNECT_TIMEOUT",
                self.kafka_connect_timeout,
                0.1,
                3600.0,
            )?,
            topic_partitions: self.kafka_topic_partitions,
        })
    }
}

fn check_ca_file(p: &std::path::Path) -> Result<()> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(LoaderError::config(format!("CA_PATH {} is not a file: expected a PEM CA certificate", p.display()))),
        Err(e) => Err(LoaderError::config(format!(
            "CA_PATH {} cannot be read ({e}): expected the PEM file of the CA that signed the Kafka brokers' certificates",
            p.display()
        ))),
    }
}

/// Parses `KAFKA_PRODUCER_CONFIG` or `KAFKA_CONSUMER_CONFIG` (`var`): `key=value,key=value`,
/// each item a property librdkafka accepts. An error names `var` and the item's position, never
/// its text: a value (a password with a comma, say) may be a secret.
pub fn parse_properties(raw: &str, var: &str) -> Result<Vec<(String, Secret)>, String> {
    let items = parse_items(raw, var)?;
    for (n, key, value) in &items {
        check_librdkafka_accepts(var, *n, key, value)?;
    }
    Ok(items.into_iter().map(|(_, k, v)| (k, v)).collect())
}

/// The items of `raw` with their 1-based positions (counting empty ones, so a position is the
/// number of commas before the item plus one).
fn parse_items(raw: &str, var: &str) -> Result<Vec<(usize, String, Secret)>, String> {
    let mut out = Vec::new();
    for (i, item) in raw.split(',').enumerate() {
        let n = i + 1;
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "{var} item {n} has no '=': expected key=value[,key=value], e.g. linger.ms=50 \
                 (a comma always separates items, so no value can contain one)"
            ));
        };
        let k = k.trim();
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return Err(format!(
                "{var} item {n}: what comes before '=' is not a librdkafka property name \
                 (letters, digits, '.', '_' and '-'): expected key=value[,key=value], e.g. linger.ms=50"
            ));
        }
        out.push((n, k.to_string(), Secret::new(v.trim())));
    }
    Ok(out)
}

/// Tries the property on a scratch librdkafka configuration, so a property it rejects is
/// reported here, by position, instead of by librdkafka's own message at client creation, which
/// repeats the name and value. The name is shown only when librdkafka knows it (then the value
/// was wrong); an unknown name may be a fragment of a secret.
fn check_librdkafka_accepts(var: &str, n: usize, key: &str, value: &Secret) -> Result<(), String> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    match rdkafka::ClientConfig::new()
        .set(key, value.expose())
        .create_native_config()
    {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_INVALID, ..)) => Err(format!(
            "{var} item {n}: librdkafka does not accept this property (unknown name or invalid value): \
             {key} is a librdkafka property, so its value is not valid (the value is not shown)"
        )),
        Err(_) => Err(format!(
            "{var} item {n}: librdkafka does not accept this property (unknown name or invalid value); \
             the item is not shown, in case it holds part of a secret"
        )),
    }
}

/// The items of `raw` (KAFKA_PRODUCER_CONFIG or KAFKA_CONSUMER_CONFIG, named by `var`), each
/// checked in order: a guarded property (`kafka::GUARDED_PROPERTIES`) is refused unless
/// `allow_unsafe`, when it is added to `allowed`; then librdkafka must accept it.
fn checked_overrides(
    var: &str,
    raw: Option<&str>,
    allow_unsafe: bool,
    allowed: &mut Vec<String>,
) -> Result<Vec<(String, Secret)>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let items = parse_items(raw, var).map_err(LoaderError::config)?;
    let mut out = Vec::with_capacity(items.len());
    for (n, key, value) in items {
        if let Some(group) = crate::kafka::guarded_group(&key) {
            if !allow_unsafe {
                return Err(LoaderError::config(format!(
                    "{var} item {n} sets {key}, one of the properties the exactly-once guarantees rest on \
                     ({}: {}); remove it, or set KAFKA_ALLOW_UNSAFE_CONFIG=true (flag --kafka-allow-unsafe-config) \
                     to allow it and keep the guarantees yourself",
                    group.name, group.why
                )));
            }
            allowed.push(format!("{var}: {key}"));
        }
        check_librdkafka_accepts(var, n, &key, &value).map_err(LoaderError::config)?;
        out.push((key, value));
    }
    Ok(out)
}

impl VerifyArgs {
    /// What the topic should hold, from TIME_RANGE, SYMBOL and TYPE.
    pub fn expectation(&self) -> Result<crate::verify::Expectation> {
        let range = match non_empty(&self.time_range) {
            Some(r) => Some(TimeRange::parse(r).map_err(LoaderError::config)?),
            None => None,
        };
        let symbols = match non_empty(&self.symbol) {
            Some(s) => parse_symbols(s).map_err(LoaderError::config)?,
            None => Vec::new(),
        };
        let data_type = match non_empty(&self.data_type) {
            Some(t) => {
                Some(DataType::parse(t, self.interval.as_deref()).map_err(LoaderError::config)?)
            }
            None => None,
        };
        let venue = self.venue()?;
        let market = self.market(venue.unwrap_or_default())?;
        let home_market = market
            .or_else(|| data_type.and_then(|t| t.markets().first().copied()))
            .unwrap_or_default();
        Ok(crate::verify::Expectation {
            range,
            symbols,
            kind: data_type.map(|t| t.record_kind()),
            venue,
            market,
            home_venue: venue.unwrap_or_default(),
            home_market,
            now_ms: None,
        })
    }

    /// The venue named by EXCHANGE, if set.
    pub fn venue(&self) -> Result<Option<Venue>> {
        non_empty(&self.exchange)
            .map(|v| v.parse::<Venue>().map_err(LoaderError::config))
            .transpose()
    }

    /// The market named by MARKET at `venue`, if set.
    pub fn market(&self, venue: Venue) -> Result<Option<Market>> {
        non_empty(&self.market)
            .map(|m| venue.parse_market(m).map_err(LoaderError::config))
            .transpose()
    }

    /// How verify asks `venue` about gaps in `market`'s records: a small share of its budget,
    /// few retries.
    pub fn venue_settings(&self, venue: Venue, market: Market) -> Result<VenueSettings> {
        let spec = crate::venues::spec(venue);
        let url = spec.rest_url(market);
        let api_url = http_url(
            url.var,
            self.url_setting(url.var).unwrap_or(url.default),
            url.default,
            self.access.allow_insecure_urls,
        )?;
        Ok(VenueSettings {
            market,
            api_url,
            ws_url: String::new(),
            api_key: non_empty(&self.access.binance_api_key).map(Secret::new),
            rate_limit_share: 0.2,
            concurrency: 4,
            page_limit: 1000,
            kline_page_limit: spec.kline_pages(market).0,
            max_retries: 2,
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        })
    }

    /// Where verify reads `venue`'s archive, for the types whose list it takes from there
    /// (downloads in the system's temporary directory, two at a time, each deleted once
    /// listed); `None` for a venue whose archive the loader does not read.
    pub fn archive_config(&self, venue: Venue) -> Result<Option<ArchiveConfig>> {
        let Some(url) = crate::venues::spec(venue).archive_url() else {
            return Ok(None);
        };
        Ok(Some(ArchiveConfig {
            url: http_url(
                url.var,
                self.url_setting(url.var).unwrap_or(url.default),
                url.default,
                self.access.allow_insecure_urls,
            )?,
            url_var: url.var,
            dir: std::env::temp_dir(),
            timeout: Duration::from_secs(30),
            max_retries: 2,
            attempts: 2,
            concurrency: 2,
        }))
    }
}

impl JobArgs {
    /// Validates everything; the first problem found is reported, naming its variable.
    pub fn resolve(&self) -> Result<JobConfig> {
        let symbols = parse_symbols(non_empty(&self.symbol).ok_or_else(|| {
            LoaderError::config(
                "SYMBOL is not set: expected a symbol such as BTCUSDT (flag --symbol)",
            )
        })?)
        .map_err(LoaderError::config)?;
        let type_value = non_empty(&self.data_type).ok_or_else(|| {
            LoaderError::config(format!(
                "TYPE is not set (flag --type); valid forms: {}",
                crate::registry::valid_types()
            ))
        })?;
        let data_type =
            DataType::parse(type_value, self.interval.as_deref()).map_err(LoaderError::config)?;
        let range = match non_empty(&self.time_range) {
            Some(r) => Some(TimeRange::parse(r).map_err(LoaderError::config)?),
            None if data_type.is_live() => None,
            None => {
                return Err(LoaderError::config(
                    "TIME_RANGE is not set: expected START:END, e.g. 2024-01-01:2024-02-01 (flag --time-range)",
                ))
            }
        };
        // The default names carry the range, so two loads of one symbol and type into default
        // topics never share one.
        let queue_id = named(&[("QUEUE_ID", &self.queue_id)], "the default id")?
            .unwrap_or_else(|| default_queue_id(&symbols, &data_type.name(), range));
        let topic = named(&[("KAFKA_TOPIC", &self.kafka_topic)], "QUEUE_ID")?
            .unwrap_or_else(|| queue_id.clone());
        check_topic_name("KAFKA_TOPIC", &topic)?;
        let producer_id = non_empty(&self.telemetry_producer_id)
            .map(str::to_string)
            .unwrap_or_else(|| format!("loader-producer__{queue_id}"));
        let control_topic = named(
            &[
                ("QUEUE_CONTROL_TOPIC", &self.queue_control_topic),
                ("CONTROL_TOPIC", &self.control_topic_alias),
            ],
            "queue-control",
        )?
        .unwrap_or_else(|| "queue-control".into());
        let events_topic = self.events_topic()?;
        check_topic_name("QUEUE_CONTROL_TOPIC", &control_topic)?;
        check_topic_name("QUEUE_EVENTS_TOPIC", &events_topic)?;

        let share = self.rate_limit_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(LoaderError::config(format!(
                "RATE_LIMIT_SHARE must be greater than 0 and at most 1 (1 = Binance's whole weight budget), got {share}"
            )));
        }
        if self.fetch_concurrency == 0 || self.fetch_concurrency > 64 {
            return Err(LoaderError::config(format!(
                "FETCH_CONCURRENCY must be between 1 and 64, got {}",
                self.fetch_concurrency
            )));
        }
        if self.max_retries > 100 {
            return Err(LoaderError::config(format!(
                "MAX_RETRIES must be between 0 and 100 (retries of one request, with backoff up to 10 s each), got {}",
                self.max_retries
            )));
        }
        // Binance's bans run from 2 minutes to 3 days for repeat offenders (spot REST docs, "LIMITS").
        if !(1..=259_200).contains(&self.max_retry_after) {
            return Err(LoaderError::config(format!(
                "MAX_RETRY_AFTER must be between 1 and 259200 seconds (3 days, Binance's longest ban), got {}",
                self.max_retry_after
            )));
        }
        if self.shard_count > 1000 {
            return Err(LoaderError::config(format!(
                "SHARD_COUNT must be between 1 and 1000, got {}",
                self.shard_count
            )));
        }
        let venue: Venue = self.exchange.parse().map_err(LoaderError::config)?;
        let market = venue
            .parse_market(&self.market)
            .map_err(LoaderError::config)?;
        let spec = crate::venues::spec(venue);
        let given_page = self.page_limit.or(self.limit_alias);
        let (default_kline_page, max_page) = spec.kline_pages(market);
        if let Some(p) = given_page.filter(|p| !(1..=max_page).contains(p)) {
            return Err(LoaderError::config(format!(
                "PAGE_LIMIT (alias LIMIT) must be between 1 and {max_page} ({}'s largest {} page), got {p}",
                venue.title(),
                venue.market_name(market)
            )));
        }
        let page_limit = given_page.unwrap_or(1000).min(1000);
        let kline_page_limit = given_page.unwrap_or(default_kline_page);
        let message_key = match self.kafka_message_key.trim().to_ascii_lowercase().as_str() {
            "symbol" => MessageKey::Symbol,
            "record" | "_key" => MessageKey::Record,
            "none" => MessageKey::None,
            other => {
                return Err(LoaderError::config(format!(
                    "KAFKA_MESSAGE_KEY {other:?} is not valid: expected symbol, record or none"
                )))
            }
        };
        if self.resume && message_key != MessageKey::Symbol {
            return Err(LoaderError::config(format!(
                "RESUME=true needs KAFKA_MESSAGE_KEY=symbol (every record of a symbol in one partition, in order, \
                 is how an earlier attempt's last record is found); set RESUME=false to load the whole range again with \
                 KAFKA_MESSAGE_KEY={}",
                self.kafka_message_key.trim()
            )));
        }
        let shard = Shard {
            index: shard_index(self.job_completion_index, self.shard_count)?,
            count: self.shard_count,
        };
        let all_symbols = symbols;
        let symbols = shard.symbols(&all_symbols);
        // Pods of one Job share the egress IP, so they share its rate budget too.
        let share = share / f64::from(shard.count);
        let rest_url = spec.rest_url(market);
        let api_url = http_url(
            rest_url.var,
            self.url_setting(rest_url.var).unwrap_or(rest_url.default),
            rest_url.default,
            self.access.allow_insecure_urls,
        )?;
        // The stream base of the venue's market, where it has streams (live types).
        let ws_url = match spec.ws_url(market) {
            Some(ws) => ws_url(
                ws.var,
                &spec.stream_base(self.url_setting(ws.var).unwrap_or(ws.default)),
                ws.default,
                self.access.allow_insecure_urls,
            )?,
            None => String::new(),
        };
        spec.serves(data_type, market)
            .map_err(LoaderError::config)?;
        let source: SourceMode = self.source.parse().map_err(LoaderError::config)?;
        spec.serves_from(data_type, source)
            .map_err(LoaderError::config)?;
        let api_key = non_empty(&self.access.binance_api_key).map(Secret::new);
        spec.check_job(&crate::venue::JobChoice {
            data_type,
            market,
            source,
            symbols: &all_symbols,
            api_key_set: api_key.is_some(),
        })
        .map_err(LoaderError::config)?;
        // A venue whose archive the loader does not read has none (nor a variable for it).
        let (archive_url, archive_url_var) = match spec.archive_url() {
            Some(url) => (
                http_url(
                    url.var,
                    self.url_setting(url.var).unwrap_or(url.default),
                    url.default,
                    self.access.allow_insecure_urls,
                )?,
                url.var,
            ),
            None => (String::new(), ""),
        };
        if !(1..=64).contains(&self.archive_concurrency) {
            return Err(LoaderError::config(format!(
                "ARCHIVE_CONCURRENCY must be between 1 and 64, got {}",
                self.archive_concurrency
            )));
        }
        let archive_dir = self.archive_dir.clone().unwrap_or_else(std::env::temp_dir);
        if !archive_dir.is_dir() {
            return Err(LoaderError::config(format!(
                "ARCHIVE_DIR {} is not a directory: downloads are kept there until published",
                archive_dir.display()
            )));
        }
        let kafka = self.kafka.resolve()?;
        let transactions: crate::sink::TransactionsSetting = self
            .kafka_transactions
            .parse()
            .map_err(LoaderError::config)?;
        let job_uid = non_empty(&self.job_uid);
        let job_id = crate::identity::JobId::new(&crate::identity::JobIdentityParts {
            queue_id: &queue_id,
            exchange: venue.as_str(),
            market: venue.market_name(market),
            data_type: &data_type.name(),
            range: range.map(|r| (r.start_ms, r.end_ms)),
            job_uid,
            symbols: &all_symbols,
            shard_index: shard.index,
            shard_count: shard.count,
        });
        let control_kafka = match (
            non_empty(&self.kafka_user_consumer),
            non_empty(&self.kafka_password_consumer),
        ) {
            (Some(user), Some(password)) => {
                let mut c = kafka.clone();
                let ca_path = c.security.as_ref().and_then(|s| s.ca_path.clone());
                c.security = Some(KafkaSecurity {
                    user: user.to_string(),
                    password: Secret::new(password),
                    ca_path,
                });
                c
            }
            (None, None) => kafka.clone(),
            _ => return Err(LoaderError::config(
                "KAFKA_USER_CONSUMER and KAFKA_PASSWORD_CONSUMER go together: set both or neither",
            )),
        };
        Ok(JobConfig {
            queue_id,
            symbols,
            data_type,
            range,
            topic,
            source,
            archive: ArchiveConfig {
                url: archive_url,
                url_var: archive_url_var,
                dir: archive_dir,
                timeout: seconds("REQUEST_TIMEOUT", self.request_timeout, 0.1, 3600.0)?.max(std::time::Duration::from_secs(30)),
                max_retries: self.max_retries,
                attempts: 3,
                concurrency: self.archive_concurrency,
            },
            producer_id,
            control_topic,
            events_topic,
            telemetry_interval: seconds("TELEMETRY_INTERVAL", self.telemetry_interval, 0.1, 3600.0)?,
            message_key,
            metrics_port: self.metrics_port,
            resume: self.resume,
            shard,
            job_id,
            transactions,
            stall_timeout: seconds("KAFKA_STALL_TIMEOUT", self.kafka_stall_timeout, 1.0, 86_400.0)?,
            lease_topic: match non_empty(&self.kafka_lease_topic) {
                Some(t) => {
                    check_topic_name("KAFKA_LEASE_TOPIC", t)?;
                    Some(t.to_string())
                }
                None => None,
            },
            shutdown_timeout: seconds("SHUTDOWN_TIMEOUT", self.shutdown_timeout, 0.1, 3600.0)?,
            resumable: range.is_some() || job_uid.is_some(),
            venue,
            market,
            page_limit,
            kline_page_limit,
            fetch_concurrency: self.fetch_concurrency,
            rest: VenueSettings {
                market,
                api_url,
                ws_url,
                api_key,
                rate_limit_share: share,
                concurrency: self.fetch_concurrency,
                page_limit,
                kline_page_limit,
                max_retries: self.max_retries,
                max_retry_after: Duration::from_secs(self.max_retry_after),
                request_timeout: seconds("REQUEST_TIMEOUT", self.request_timeout, 0.1, 3600.0)?,
            },
            live: LiveConfig {
                all_kline_updates: self.ws_all_kline_updates,
                book_snapshot_interval: seconds("ORDERBOOK_SNAPSHOT_INTERVAL", self.orderbook_snapshot_interval, 0.1, 86_400.0)?,
                book_depth: match self.orderbook_depth {
                    n if n >= 1 && n <= market.max_depth_limit() as usize => n,
                    n => return Err(LoaderError::config(format!(
                        "ORDERBOOK_DEPTH must be between 1 and {} on MARKET={market} (Binance's deepest snapshot), got {n}",
                        market.max_depth_limit()
                    ))),
                },
                idle_timeout: seconds("WS_IDLE_TIMEOUT", self.ws_idle_timeout, 1.0, 3600.0)?,
                rotate_after: seconds("WS_ROTATE_AFTER", self.ws_rotate_after, 1.0, 86_400.0)?,
                streams_per_connection: match self.ws_streams_per_connection {
                    None => market.max_streams_per_connection(),
                    Some(n) if n >= 1 && n <= market.max_streams_per_connection() => n,
                    Some(n) => {
                        return Err(LoaderError::config(format!(
                            "WS_STREAMS_PER_CONNECTION must be between 1 and {} (Binance's limit on MARKET={market}), got {n}",
                            market.max_streams_per_connection()
                        )))
                    }
                },
            },
            kafka,
            control_kafka,
        })
    }

    /// Where an `error` event can go when the configuration as a whole is not valid: the Kafka
    /// settings and events topic, if those parts resolve.
    pub fn events_target(&self) -> Option<(KafkaConfig, String)> {
        let kafka = self.kafka.resolve().ok()?;
        // An empty events topic is itself the configuration error: no place to report it.
        let topic = self.events_topic().ok()?;
        check_topic_name("QUEUE_EVENTS_TOPIC", &topic).ok()?;
        Some((kafka, topic))
    }

    /// `QUEUE_EVENTS_TOPIC` (alias `TELEMETRY_TOPIC`), `queue-events` when unset.
    fn events_topic(&self) -> Result<String> {
        Ok(named(
            &[
                ("QUEUE_EVENTS_TOPIC", &self.queue_events_topic),
                ("TELEMETRY_TOPIC", &self.telemetry_topic_alias),
            ],
            "queue-events",
        )?
        .unwrap_or_else(|| "queue-events".into()))
    }
}

/// This pod's shard from JOB_COMPLETION_INDEX and SHARD_COUNT. Only a single shard may go
/// without the index: a pod of a sharded Job that does not know its index would load shard 0
/// again and report success.
fn shard_index(index: Option<u32>, count: u32) -> Result<u32> {
    match (index, count) {
        (_, 0) => Err(LoaderError::config(
            "SHARD_COUNT must be at least 1, got 0",
        )),
        (None, 1) => Ok(0),
        (None, count) => Err(LoaderError::config(format!(
            "SHARD_COUNT={count} but JOB_COMPLETION_INDEX is not set: each of the {count} pods must know its shard. \
             Kubernetes sets JOB_COMPLETION_INDEX in Indexed Jobs (completionMode: Indexed); set it \
             (flag --job-completion-index), or SHARD_COUNT=1"
        ))),
        (Some(index), count) if index >= count => Err(LoaderError::config(format!(
            "JOB_COMPLETION_INDEX must be below SHARD_COUNT, got index {index} of {count}"
        ))),
        (Some(index), _) => Ok(index),
    }
}

impl JobConfig {
    /// The range as telemetry and logs show it (`live` without one).
    pub fn range_text(&self) -> String {
        match self.range {
            Some(r) => format!(
                "{}:{}",
                crate::time_range::fmt_ms(r.start_ms),
                crate::time_range::fmt_ms(r.end_ms)
            ),
            None => "live".into(),
        }
    }
}

/// `loader-<symbols>-<type>[-<start>-<end>]`: days as `YYYY-MM-DD` when the range is on whole
/// days, epoch milliseconds otherwise; a name past Kafka's 249 characters keeps its start and a
/// hash of the rest.
fn default_queue_id(symbols: &[String], type_name: &str, range: Option<TimeRange>) -> String {
    let edge = |ms: i64| {
        if ms.rem_euclid(86_400_000) == 0 {
            crate::time_range::fmt_ms(ms)[..10].to_string()
        } else {
            ms.to_string()
        }
    };
    let mut name = format!(
        "loader-{}-{type_name}",
        symbols.join("-").to_ascii_lowercase()
    );
    if let Some(r) = range {
        name += &format!("-{}-{}", edge(r.start_ms), edge(r.end_ms));
    }
    if name.len() > 249 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        name = format!("{}-{hash}", &name[..200]);
    }
    name
}

/// Kafka's own rule for topic names.
pub fn check_topic_name(var: &str, topic: &str) -> Result<()> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LoaderError::config(format!(
            "{var} {topic:?} is not a valid Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_normalised() {
        assert_eq!(parse_symbols("btcusdt").unwrap(), vec!["BTCUSDT"]);
        assert_eq!(
            parse_symbols(" btcusdt, ETHusdt ,btcusdt").unwrap(),
            vec!["BTCUSDT", "ETHUSDT"]
        );
        assert!(parse_symbols(" , ").unwrap_err().contains("SYMBOL"));
        assert!(parse_symbols("BTC/USDT").unwrap_err().contains("SYMBOL"));
    }

    #[test]
    fn properties_parse() {
        let p = parse_properties(
            "linger.ms=50, compression.type=gzip",
            "KAFKA_PRODUCER_CONFIG",
        )
        .unwrap();
        assert_eq!(p[0].0, "linger.ms");
        assert_eq!(p[1].1.expose(), "gzip");
        assert!(parse_properties("linger.ms", "KAFKA_PRODUCER_CONFIG")
            .unwrap_err()
            .contains("KAFKA_PRODUCER_CONFIG"));
    }

    fn kafka_args(producer: Option<&str>, consumer: Option<&str>, allow: bool) -> KafkaArgs {
        KafkaArgs {
            kafka_bootstrap_servers: Some("127.0.0.1:1".into()),
            kafka_user_producer: None,
            kafka_user_alias: None,
            kafka_password_producer: None,
            kafka_password_alias: None,
            ca_path: None,
            kafka_ca_path_alias: None,
            kafka_producer_config: producer.map(str::to_string),
            kafka_consumer_config: consumer.map(str::to_string),
            kafka_allow_unsafe_config: allow,
            kafka_connect_timeout: 1.0,
            kafka_topic_partitions: 1,
        }
    }

    fn config_error(result: Result<KafkaConfig>) -> String {
        match result {
            Err(e @ LoaderError::Config(_)) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn guarded_overrides_are_refused_by_variable_and_key() {
        for (producer, consumer, var, key) in [
            (
                Some("linger.ms=5,enable.idempotence=false"),
                None,
                "KAFKA_PRODUCER_CONFIG",
                "enable.idempotence",
            ),
            (Some(" ACKS = 1 "), None, "KAFKA_PRODUCER_CONFIG", "ACKS"),
            (
                Some("partitioner=random"),
                None,
                "KAFKA_PRODUCER_CONFIG",
                "partitioner",
            ),
            (
                Some("sasl.password=s3cret-pw"),
                None,
                "KAFKA_PRODUCER_CONFIG",
                "sasl.password",
            ),
            (
                Some("enable.ssl.certificate.verification=false"),
                None,
                "KAFKA_PRODUCER_CONFIG",
                "enable.ssl.certificate.verification",
            ),
            (
                None,
                Some("isolation.level=read_uncommitted"),
                "KAFKA_CONSUMER_CONFIG",
                "isolation.level",
            ),
            (
                Some("linger.ms=5"),
                Some("security.protocol=plaintext"),
                "KAFKA_CONSUMER_CONFIG",
                "security.protocol",
            ),
        ] {
            let m = config_error(kafka_args(producer, consumer, false).resolve());
            assert!(
                m.contains(var) && m.contains(key) && m.contains("KAFKA_ALLOW_UNSAFE_CONFIG=true"),
                "{m}"
            );
            assert!(
                !m.contains("s3cret") && !m.contains("read_uncommitted") && !m.contains("random"),
                "{m}"
            );
        }
    }

    #[test]
    fn the_opt_in_allows_guarded_overrides() {
        let k = kafka_args(
            Some("acks=1,linger.ms=5"),
            Some("isolation.level=read_uncommitted"),
            true,
        )
        .resolve()
        .unwrap();
        assert_eq!(k.overrides.len(), 2);
        assert_eq!(k.overrides[0].0, "acks");
        assert_eq!(k.consumer_overrides[0].1.expose(), "read_uncommitted");
        // Other properties never needed it.
        let k = kafka_args(
            Some("linger.ms=50,compression.type=gzip,batch.size=100000,client.id=x,ssl.key.location=/k.pem"),
            Some("fetch.max.bytes=1048576"),
            false,
        )
        .resolve()
        .unwrap();
        assert_eq!(k.overrides.len(), 5);
    }

    #[test]
    fn malformed_items_are_named_by_position_never_by_text() {
        for (raw, position) in [
            // A password with a comma: the second item is a fragment of it.
            ("linger.ms=5,sasl.password=pw-s3cret,tail-s3cret", "item 3"),
            ("linger.ms=5,,tail-s3cret", "item 3"),
            ("pass s3cret=x", "item 1"),
            ("=s3cret", "item 1"),
        ] {
            for allow in [false, true] {
                let m = config_error(kafka_args(Some(raw), None, allow).resolve());
                assert!(
                    m.contains("KAFKA_PRODUCER_CONFIG") && m.contains(position),
                    "{m}"
                );
                assert!(m.contains("key=value"), "{m}");
                assert!(!m.contains("s3cret") && !m.contains("pw-"), "{raw}: {m}");
            }
        }
        let m = config_error(kafka_args(None, Some("a=1,b"), false).resolve());
        assert!(m.contains("KAFKA_CONSUMER_CONFIG item 2"), "{m}");
    }

    #[test]
    fn properties_librdkafka_rejects_are_named_only_when_it_knows_them() {
        // An unknown name may be a fragment of a secret: neither it nor the value is shown.
        let m = config_error(
            kafka_args(Some("linger.ms=5,no.such.s3cret=v4lue-s3cret"), None, false).resolve(),
        );
        assert!(
            m.contains("KAFKA_PRODUCER_CONFIG item 2: librdkafka does not accept this property"),
            "{m}"
        );
        assert!(!m.contains("s3cret") && !m.contains("no.such"), "{m}");
        // A known name with a value it refuses: the name is shown, the value is not.
        let m = config_error(kafka_args(Some("linger.ms=s3cret-nan"), None, false).resolve());
        assert!(
            m.contains("item 1: librdkafka does not accept this property")
                && m.contains("linger.ms"),
            "{m}"
        );
        assert!(!m.contains("s3cret"), "{m}");
        // The opt-in does not let librdkafka's refusals through.
        let m = config_error(
            kafka_args(None, Some("sasl.mechanisms=PLAIN,acks=s3cret"), true).resolve(),
        );
        assert!(
            m.contains("KAFKA_CONSUMER_CONFIG item 2") && m.contains("acks"),
            "{m}"
        );
        assert!(!m.contains("s3cret"), "{m}");
    }

    #[test]
    fn a_sharded_pod_must_know_its_index() {
        assert_eq!(shard_index(None, 1).unwrap(), 0);
        assert_eq!(shard_index(Some(0), 1).unwrap(), 0);
        assert_eq!(shard_index(Some(1), 2).unwrap(), 1);
        let m = shard_index(None, 2).unwrap_err();
        assert_eq!(m.exit_code(), 2);
        let m = m.to_string();
        assert!(
            m.contains("SHARD_COUNT=2")
                && m.contains("JOB_COMPLETION_INDEX")
                && m.contains("completionMode: Indexed"),
            "{m}"
        );
        assert!(shard_index(Some(2), 2)
            .unwrap_err()
            .to_string()
            .contains("below SHARD_COUNT"));
        assert!(shard_index(Some(0), 0)
            .unwrap_err()
            .to_string()
            .contains("SHARD_COUNT must be at least 1"));
    }

    /// A job's settings as the command line gives them.
    fn job(args: &[&str]) -> Result<JobConfig> {
        use clap::Parser;
        let mut all = vec![
            "loader-producer",
            "--kafka-bootstrap-servers",
            "127.0.0.1:1",
        ];
        all.extend_from_slice(args);
        super::super::Cli::try_parse_from(all)
            .expect("valid flags")
            .job
            .resolve()
    }

    #[test]
    fn plain_text_urls_only_to_loopback_or_with_the_opt_in() {
        let base = [
            "--symbol=BTCUSDT",
            "--type=api_candles_1m",
            "--time-range=2024-02-01:2024-03-01",
        ];
        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            job(&all)
        };
        for local in [
            "http://127.0.0.1:9000",
            "http://127.8.0.1:9000/",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            let cfg = with(&["--binance-api-url", local, "--archive-url", local]).unwrap();
            assert_eq!(cfg.rest.api_url, local.trim_end_matches('/'));
        }
        let remote = ["--binance-api-url", "http://10.0.0.5:9000"];
        let err = with(&remote).unwrap_err().to_string();
        assert!(
            err.contains("BINANCE_API_URL") && err.contains("ALLOW_INSECURE_URLS"),
            "{err}"
        );
        // A host that only looks local is not.
        let err = with(&["--archive-url", "http://localhost.example.com"]).unwrap_err();
        assert!(err.to_string().contains("ARCHIVE_URL"), "{err}");
        let err = with(&["--binance-ws-url", "ws://10.0.0.5:9443"]).unwrap_err();
        assert!(err.to_string().contains("BINANCE_WS_URL"), "{err}");
        let allowed = with(&[
            "--binance-api-url",
            "http://10.0.0.5:9000",
            "--binance-ws-url",
            "ws://10.0.0.5:9443/ws",
            "--allow-insecure-urls",
        ])
        .unwrap();
        assert_eq!(allowed.rest.api_url, "http://10.0.0.5:9000");
        assert_eq!(allowed.rest.ws_url, "ws://10.0.0.5:9443");
    }

    #[test]
    fn a_job_is_identified_by_what_it_publishes() {
        let feb = job(&[
            "--symbol=BTCUSDT",
            "--type=api_candles_1m",
            "--time-range=2024-02-01:2024-03-01",
        ])
        .unwrap();
        assert!(feb.resumable);
        assert_eq!(
            feb.queue_id,
            "loader-btcusdt-api_candles_1m-2024-02-01-2024-03-01"
        );
        let jan_feb = job(&[
            "--symbol=BTCUSDT",
            "--type=api_candles_1m",
            "--time-range=2024-01-01:2024-03-01",
            "--kafka-topic",
            &feb.topic,
        ])
        .unwrap();
        assert_eq!(jan_feb.topic, feb.topic);
        assert_ne!(jan_feb.job_id, feb.job_id, "another range is another job");
        let tuned = job(&[
            "--symbol=BTCUSDT",
            "--type=api_candles_1m",
            "--time-range=2024-02-01:2024-03-01",
            "--source=rest",
            "--fetch-concurrency=2",
        ])
        .unwrap();
        assert_eq!(tuned.job_id, feb.job_id, "how it fetches is not what it is");
        // A live job without a range resumes only within its own Kubernetes Job.
        let live = job(&["--symbol=BTCUSDT", "--type=ws_trades"]).unwrap();
        assert!(!live.resumable);
        let today = job(&["--symbol=BTCUSDT", "--type=ws_trades", "--job-uid=a"]).unwrap();
        let tomorrow = job(&["--symbol=BTCUSDT", "--type=ws_trades", "--job-uid=b"]).unwrap();
        assert!(today.resumable);
        assert_ne!(today.job_id, tomorrow.job_id);
        assert!(job(&[
            "--symbol=BTCUSDT",
            "--type=ws_trades",
            "--kafka-transactions=maybe"
        ])
        .unwrap_err()
        .to_string()
        .contains("KAFKA_TRANSACTIONS"));
    }

    #[test]
    fn default_names_carry_the_range() {
        let s = vec!["BTCUSDT".to_string(), "ETHUSDT".to_string()];
        let feb = TimeRange::parse("2024-02-01:2024-03-01").unwrap();
        assert_eq!(
            default_queue_id(&s, "api_candles_1m", Some(feb)),
            "loader-btcusdt-ethusdt-api_candles_1m-2024-02-01-2024-03-01"
        );
        let hour = TimeRange::parse("1704067200000:1704070800000").unwrap();
        assert_eq!(
            default_queue_id(&s[..1], "api_trades", Some(hour)),
            "loader-btcusdt-api_trades-2024-01-01-1704070800000"
        );
        assert_eq!(
            default_queue_id(&s[..1], "ws_trades", None),
            "loader-btcusdt-ws_trades"
        );
        let many: Vec<String> = (0..100).map(|i| format!("SYMBOL{i}USDT")).collect();
        let long = default_queue_id(&many, "api_candles_1m", Some(feb));
        assert!(check_topic_name("KAFKA_TOPIC", &long).is_ok(), "{long}");
        assert_ne!(
            long,
            default_queue_id(&many[1..], "api_candles_1m", Some(feb))
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
