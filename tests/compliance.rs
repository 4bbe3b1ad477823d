//! One compliance test over the registries: every registered data type, on every registered
//! venue (`loader_producer::venues::REGISTERED`) and market that serves it (what the venue's
//! `VenueSpec::serves` accepts), loads a short range from the exchange simulator (its REST API, its archive, its
//! streams) into the broker with the default `SOURCE=auto`, and `verify`, asking the market's
//! own endpoints, passes on the topic, and every record is what the JSON Schema of its kind
//! (`loader_producer::schema`, published in `docs/schema/`) says. The list comes from `loader_producer::registry::TYPES`:
//! a type added there, or served by a venue, is in this test without a line here, and one that
//! cannot pass it cannot land.
//!
//! History ranges end days ago and cross a day boundary (a whole day from the archive, the rest
//! over REST); live ranges start seconds ahead, all live jobs running at once.

mod support;

use exchange_sim::bybit::BybitCategory;
use exchange_sim::{data, SimConfig, SimMarket, SimServer, WsFaults};
use loader_producer::market::{Market, Venue};
use loader_producer::registry::{DataType, IntervalRule, TYPES};
use support::loader::{fresh_topic, job_env, now_ms, run_loader_async, verify_topic, Run};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// The symbol a market's jobs load: the first the venue's demo loads.
fn symbol(v: Venue, m: Market) -> &'static str {
    let symbols = loader_producer::venues::spec(v).demo_symbols(m);
    symbols.split(',').next().unwrap_or(symbols)
}

fn sim_market(m: Market) -> SimMarket {
    match m {
        Market::Spot => SimMarket::Spot,
        Market::UsdM => SimMarket::UsdM,
        Market::CoinM => SimMarket::CoinM,
    }
}

/// One `TYPE` value per registry entry: entries that take an interval get one that every market
/// offers (`1s` exists on spot only, and the live candle range must close a candle soon).
fn type_value(name: &str, takes_interval: bool, rule: IntervalRule, live: bool) -> String {
    match (takes_interval, rule, live) {
        (false, _, _) => name.to_string(),
        (true, IntervalRule::Candles, true) => format!("{name}_1m"),
        (true, _, _) => format!("{name}_1h"),
    }
}

/// A job of one type on one market, with its range.
struct Case {
    venue: Venue,
    market: Market,
    ty: String,
    range: (i64, i64),
    topic: String,
}

impl Case {
    fn label(&self) -> String {
        format!(
            "{} {} {}",
            self.venue,
            self.venue.market_name(self.market),
            self.ty
        )
    }

    /// The job's variables: the market's REST, stream and archive URLs on the simulator, and
    /// an API key (futures `historicalTrades` needs one; the others ignore it).
    fn env(&self, sim: &SimServer) -> Vec<(&'static str, String)> {
        let range = format!("{}:{}", self.range.0, self.range.1);
        let mut env = job_env(
            &sim.base_url(),
            &self.topic,
            symbol(self.venue, self.market),
            &self.ty,
            &range,
        );
        env.extend(market_vars(sim, self.venue, self.market));
        env.push(("WS_IDLE_TIMEOUT", "3".into()));
        env
    }

    fn verify(&self, sim: &SimServer) -> Run {
        let mut extra = market_vars(sim, self.venue, self.market);
        extra.push(("SYMBOL", symbol(self.venue, self.market).into()));
        extra.push(("TYPE", self.ty.clone()));
        verify_topic(
            &self.topic,
            &format!("{}:{}", self.range.0, self.range.1),
            &extra,
            &[],
        )
    }
}

fn market_vars(sim: &SimServer, v: Venue, m: Market) -> Vec<(&'static str, String)> {
    match v {
        Venue::Binance => {}
        Venue::Bybit => {
            return vec![
                ("EXCHANGE", "bybit".into()),
                ("MARKET", v.market_name(m).into()),
                ("BYBIT_API_URL", sim.bybit_url()),
                ("BYBIT_ARCHIVE_URL", sim.bybit_archive_url()),
                ("BYBIT_WS_URL", sim.bybit_ws_url()),
            ]
        }
        Venue::Okx => {
            return vec![
                ("EXCHANGE", "okx".into()),
                ("MARKET", v.market_name(m).into()),
                ("OKX_API_URL", sim.okx_url()),
                ("OKX_ARCHIVE_URL", sim.okx_archive_url()),
                ("OKX_WS_URL", sim.okx_ws_url()),
            ]
        }
    }
    let mut vars = vec![
        ("MARKET", m.as_str().to_string()),
        ("ARCHIVE_URL", sim.base_url()),
        ("BINANCE_API_KEY", "sim-key".to_string()),
    ];
    vars.extend(match m {
        Market::Spot => [
            ("BINANCE_API_URL", sim.base_url()),
            ("BINANCE_WS_URL", sim.ws_url()),
        ],
        Market::UsdM => [
            ("BINANCE_FAPI_URL", sim.fapi_url()),
            ("BINANCE_FWS_URL", sim.fws_url()),
        ],
        Market::CoinM => [
            ("BINANCE_DAPI_URL", sim.dapi_url()),
            ("BINANCE_DWS_URL", sim.dws_url()),
        ],
    });
    vars
}

/// A history range: trades over two hours across midnight (REST), everything else from noon
/// three days ago to midnight yesterday (a whole day from the archive, half a day over REST).
fn history_range(ty: &str) -> (i64, i64) {
    let midnight = now_ms().div_euclid(DAY) * DAY - DAY;
    if ty.contains("trades") {
        (midnight - DAY - HOUR, midnight - DAY + HOUR)
    } else {
        (midnight - 2 * DAY - 12 * HOUR, midnight)
    }
}

/// A live range starting `lead` ms ahead: a few seconds; for candles the minute that holds it
/// (so one candle closes in it); for liquidations the first stretch of the simulator's own
/// schedule with one in it.
fn live_range(ty: &str, v: Venue, m: Market, lead: i64) -> (i64, i64) {
    let start = (now_ms() + lead).div_euclid(1000) * 1000;
    if ty.starts_with("ws_candles") {
        let minute = start.div_euclid(60_000) * 60_000;
        return (minute, minute + 60_000);
    }
    if ty == "ws_liquidations" {
        return (0..120)
            .map(|s| (start + s * 1000, start + s * 1000 + 8_000))
            .find(|&(a, b)| {
                let sym = symbol(v, m);
                match v {
                    Venue::Binance => !data::liquidations(sim_market(m), sym, a, b - 1).is_empty(),
                    Venue::Bybit => {
                        let category = match m {
                            Market::CoinM => BybitCategory::Inverse,
                            _ => BybitCategory::Linear,
                        };
                        !data::bybit_liquidations(category, sym, a, b - 1).is_empty()
                    }
                    Venue::Okx => !data::okx_liquidations(sym, a, b - 1).is_empty(),
                }
            })
            .expect("a liquidation within two minutes");
    }
    (start, start + 4_000)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_registered_type_loads_on_every_market_and_verifies() {
    let sim = support::sim(SimConfig {
        // A trade a second: live ranges of seconds have trades, history stays small.
        agg_trade_spacing_ms: 1_000,
        futures_ws: WsFaults::futures(),
        ..SimConfig::default()
    })
    .await;
    // Every live job of the test connects from this one address within a second or two, each
    // process keeping to OKX's 3 connections a second on its own: together they would be refused
    // by the simulator's per-IP limit and some would connect past their ranges of seconds.
    sim.set_okx_ws_config(exchange_sim::okx_ws::OkxWsConfig {
        max_connections_per_sec: 1_000,
        ..sim.okx_ws_config()
    });

    let mut cases: Vec<Case> = Vec::new();
    for entry in TYPES {
        let live = entry
            .origins
            .contains(&loader_producer::registry::Origin::WebSocket);
        let ty = type_value(entry.name, entry.takes_interval, entry.interval_rule, live);
        let data_type = DataType::parse(&ty, None).expect("a registered type parses");
        for spec in loader_producer::venues::REGISTERED {
            let venue = spec.venue();
            for market in Market::ALL {
                if spec.serves(data_type, market).is_err() {
                    continue;
                }
                let topic = match venue {
                    // Binance's topics as they were named before venues.
                    Venue::Binance => format!("compliance-{}-{ty}", market.as_str()),
                    v => format!("compliance-{v}-{}-{ty}", v.market_name(market)),
                };
                cases.push(Case {
                    venue,
                    market,
                    range: (0, 0),
                    topic: fresh_topic(&topic),
                    ty: ty.clone(),
                });
            }
        }
    }
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for v in Venue::ALL {
        assert!(
            cases.iter().any(|c| c.venue == v),
            "{v} serves some registered type"
        );
    }

    // Live jobs first, all at once (they mostly wait for their range), then history jobs a few
    // at a time meanwhile.
    let mut live_jobs = Vec::new();
    for (i, case) in cases.iter_mut().enumerate() {
        if case.ty.starts_with("ws_") {
            case.range = live_range(&case.ty, case.venue, case.market, 5_000);
            live_jobs.push((i, tokio::spawn(run_loader_async(case.env(&sim), vec![]))));
        } else {
            case.range = history_range(&case.ty);
        }
    }
    let mut results: Vec<Option<Run>> = cases.iter().map(|_| None).collect();
    let history: Vec<usize> = (0..cases.len())
        .filter(|&i| !cases[i].ty.starts_with("ws_"))
        .collect();
    for chunk in history.chunks(3) {
        let jobs: Vec<_> = chunk
            .iter()
            .map(|&i| {
                (
                    i,
                    tokio::spawn(run_loader_async(cases[i].env(&sim), vec![])),
                )
            })
            .collect();
        for (i, job) in jobs {
            results[i] = Some(job.await.expect("job task"));
        }
    }
    for (i, job) in live_jobs {
        results[i] = Some(job.await.expect("job task"));
    }

    // Every job is done: a day passes at the exchange, so the archives hold the days of the
    // live ranges too (Bybit's trades are listed from its archive alone) before `verify` asks.
    sim.clock().set_now_ms(sim.clock().now_ms() + DAY);

    let mut failures = Vec::new();
    for (case, run) in cases.iter().zip(&results) {
        let run = run.as_ref().expect("every case ran");
        if run.code != Some(0) {
            failures.push(format!(
                "{}: exit {:?}: {}",
                case.label(),
                run.code,
                run.stderr
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
            continue;
        }
        let v = case.verify(&sim);
        if v.code != Some(0) {
            failures.push(format!(
                "{}: verify exit {:?}: {}{}",
                case.label(),
                v.code,
                v.stdout.chars().take(600).collect::<String>(),
                v.stderr.lines().last().unwrap_or("")
            ));
            continue;
        }
        let report: serde_json::Value = serde_json::from_str(&v.stdout).expect("verify --json");
        let records = report["groups"][0]["records"].as_u64().unwrap_or(0);
        if records == 0 {
            failures.push(format!("{}: the topic is empty", case.label()));
        }
        // Every record, as published, is what its kind's JSON Schema says.
        let messages = support::loader::read_tagged(&case.topic);
        let kind = DataType::parse(&case.ty, None)
            .expect("a registered type parses")
            .record_kind();
        let schema = loader_producer::schema::of(kind);
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        for (_, payload) in &messages {
            let record: serde_json::Value = serde_json::from_slice(payload).expect("a JSON record");
            let error = validator
                .iter_errors(&record)
                .next()
                .map(|e| format!("{e} at {}", e.instance_path()));
            if let Some(e) = error {
                failures.push(format!(
                    "{}: a record is not what schema {} says: {e}: {record}",
                    case.label(),
                    loader_producer::schema::family(kind),
                ));
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    sim.shutdown().await;
}
