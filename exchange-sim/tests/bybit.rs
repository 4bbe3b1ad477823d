//! The Bybit venue of the simulator over real HTTP: the v5 envelope, the kline endpoint's paging
//! (newest first, both bounds inclusive, the newest `limit` at or before `end`, anchored at
//! `start` when it comes alone), its errors, instruments-info, and the IP limit with its
//! 10-minute ban, which the simulator's clock is jumped through instead of waited out.

mod common;

use std::time::Duration;

use common::{get_path, pin_mid_day, start};
use exchange_sim::bybit::{self, BybitCategory};
use exchange_sim::data::Data;
use exchange_sim::{Interval, SimConfig};
use serde_json::Value;

const MIN: i64 = 60_000;

fn opens(v: &Value) -> Vec<i64> {
    v["result"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("no list in {v}"))
        .iter()
        .map(|r| r[0].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn klines_come_newest_first_within_inclusive_bounds() {
    let sim = start(SimConfig::default()).await;
    let now = pin_mid_day(&sim);
    let addr = sim.local_addr();
    let t0 = now - now.rem_euclid(MIN) - 120 * MIN;
    let path = |q: &str| format!("/bybit/v5/market/kline?category=linear&symbol=BTCUSDT&{q}");

    // Both bounds inclusive, newest first.
    let v = common::rest(
        addr,
        &path(&format!("interval=1&start={t0}&end={}", t0 + 2 * MIN)),
    )
    .await;
    assert_eq!(v["retCode"], 0);
    assert_eq!(v["result"]["category"], "linear");
    assert_eq!(opens(&v), [t0 + 2 * MIN, t0 + MIN, t0]);
    // More than `limit` between the bounds: the newest ones.
    let v = common::rest(
        addr,
        &path(&format!(
            "interval=1&start={t0}&end={}&limit=2",
            t0 + 60 * MIN
        )),
    )
    .await;
    assert_eq!(opens(&v), [t0 + 60 * MIN, t0 + 59 * MIN]);
    // `start` alone: the oldest `limit` from it.
    let v = common::rest(addr, &path(&format!("interval=1&start={t0}&limit=2"))).await;
    assert_eq!(opens(&v), [t0 + MIN, t0]);
    // Neither: the newest 200, the unclosed candle first.
    let v = common::rest(addr, &path("interval=1")).await;
    let o = opens(&v);
    assert_eq!((o.len(), o[0]), (200, now - now.rem_euclid(MIN)));

    // The rows are the data functions' candles: volume and turnover as Binance's volume and
    // quote volume of the same generator, other fields not served.
    let data = Data::default();
    let k = bybit::kline(&data, BybitCategory::Linear, "BTCUSDT", Interval::M1, t0).unwrap();
    let v = common::rest(addr, &path(&format!("interval=1&start={t0}&end={t0}"))).await;
    let row = &v["result"]["list"][0];
    let want = [
        t0.to_string(),
        k.open.clone(),
        k.high.clone(),
        k.low.clone(),
        k.close.clone(),
        k.volume.clone(),
        k.quote_volume.clone(),
    ];
    assert_eq!(row.as_array().unwrap().len(), 7);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(row[i].as_str().unwrap(), w, "column {i}");
    }
    // Each category has data of its own, also for a symbol two of them share.
    let spot = bybit::kline(&data, BybitCategory::Spot, "BTCUSDT", Interval::M1, t0).unwrap();
    let binance = exchange_sim::data::kline(&data, "BTCUSDT", Interval::M1, t0);
    assert_ne!(spot.close, k.close);
    assert_ne!(spot.close, binance.close);
    // Hours and days have Bybit's names.
    let v = common::rest(addr, &path(&format!("interval=D&end={t0}&limit=1"))).await;
    assert_eq!(opens(&v), [t0 - t0.rem_euclid(86_400_000)]);
}

#[tokio::test]
async fn wrong_parameters_get_retcode_10001() {
    let sim = start(SimConfig::default()).await;
    let addr = sim.local_addr();
    for (q, msg) in [
        (
            "category=linear&symbol=ETHBTC&interval=1",
            "Not supported symbols",
        ),
        (
            "category=inverse&symbol=BTCUSDT&interval=1",
            "Not supported symbols",
        ),
        (
            "category=spot&symbol=BTCUSDT&interval=2",
            "params error: interval is invalid",
        ),
        (
            "category=spot&symbol=BTCUSDT&interval=1&limit=1001",
            "params error: limit is invalid",
        ),
        (
            "category=margin&symbol=BTCUSDT&interval=1",
            "params error: category is invalid",
        ),
    ] {
        let r = get_path(addr, &format!("/bybit/v5/market/kline?{q}")).await;
        assert_eq!(r.status, 200, "{q}");
        let v = r.json();
        assert_eq!(
            (v["retCode"].as_i64(), v["retMsg"].as_str()),
            (Some(10001), Some(msg)),
            "{q}"
        );
    }
    // Inverse contracts are `<BASE>USD`; instruments-info lists what a category trades.
    let v = common::rest(
        addr,
        "/bybit/v5/market/instruments-info?category=inverse&symbol=BTCUSD",
    )
    .await;
    assert_eq!(v["result"]["list"][0]["symbol"], "BTCUSD");
    let v = common::rest(
        addr,
        "/bybit/v5/market/instruments-info?category=spot&symbol=BTCUSD_PERP",
    )
    .await;
    assert_eq!(v["result"]["list"].as_array().unwrap().len(), 0);
    assert_eq!(sim.stats().bybit.per_endpoint["/v5/market/kline"], 5);
}

#[tokio::test]
async fn the_ip_limit_bans_for_ten_minutes_of_the_servers_clock() {
    let sim = start(SimConfig::default()).await;
    let now = pin_mid_day(&sim);
    let addr = sim.local_addr();
    let v = common::rest(addr, "/bybit/v5/market/time").await;
    assert_eq!(v["time"].as_i64().unwrap() / 1000, now / 1000);
    assert_eq!(
        v["result"]["timeSecond"],
        (v["time"].as_i64().unwrap() / 1000).to_string()
    );
    // 600 in the window are served (the time request above is one of them).
    for _ in 0..599 {
        assert_eq!(get_path(addr, "/bybit/v5/market/time").await.status, 200);
    }
    let r = get_path(addr, "/bybit/v5/market/time").await;
    assert_eq!((r.status, r.text()), (403, "access too frequent"));
    // Past the window, still banned.
    sim.clock().advance(Duration::from_secs(6));
    assert_eq!(get_path(addr, "/bybit/v5/market/time").await.status, 403);
    // Ten minutes after it began, served again.
    sim.clock().advance(Duration::from_secs(595));
    assert_eq!(get_path(addr, "/bybit/v5/market/time").await.status, 200);
    let st = sim.stats().bybit;
    assert_eq!((st.responses_403, st.max_in_window), (2, 601));
    // Binance's markets count their own requests.
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test]
async fn funding_history_comes_newest_first_and_needs_an_end_with_a_start() {
    let sim = start(SimConfig::default()).await;
    let now = pin_mid_day(&sim);
    let addr = sim.local_addr();
    let eight = bybit::FUNDING_INTERVAL_MS;
    let last = now.div_euclid(eight) * eight;
    let path = |q: &str| format!("/bybit/v5/market/funding/history?symbol=BTCUSD&{q}");
    let times = |v: &Value| -> Vec<i64> {
        v["result"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("no list in {v}"))
            .iter()
            .map(|r| r["fundingRateTimestamp"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let v = common::rest(
        addr,
        &path(&format!(
            "category=inverse&startTime={}&endTime={last}",
            last - 2 * eight
        )),
    )
    .await;
    assert_eq!(times(&v), [last, last - eight, last - 2 * eight]);
    let (t, rate) = bybit::funding(BybitCategory::Inverse, "BTCUSD", last / eight).unwrap();
    assert_eq!(t, last);
    assert_eq!(
        v["result"]["list"][0]["fundingRate"].as_str(),
        Some(rate.as_str())
    );
    assert_eq!(v["result"]["list"][0]["symbol"], "BTCUSD");
    // Neither bound: the newest 200, up to now; a limit: the newest `limit`.
    let v = common::rest(addr, &path("category=inverse")).await;
    assert_eq!((times(&v).len(), times(&v)[0]), (200, last));
    let v = common::rest(
        addr,
        &path(&format!("category=inverse&endTime={last}&limit=2")),
    )
    .await;
    assert_eq!(times(&v), [last, last - eight]);
    for (q, msg) in [
        (
            format!("category=inverse&startTime={last}"),
            "params error: endTime is required with startTime",
        ),
        (
            "category=spot".to_string(),
            "params error: category only support linear or inverse",
        ),
        (
            "category=inverse&limit=201".to_string(),
            "params error: limit is invalid",
        ),
    ] {
        let v = get_path(addr, &path(&q)).await.json();
        assert_eq!(
            (v["retCode"].as_i64(), v["retMsg"].as_str()),
            (Some(10001), Some(msg)),
            "{q}"
        );
    }
}

#[tokio::test]
async fn open_interest_pages_newest_first_and_a_cursor_continues_older() {
    let sim = start(SimConfig::default()).await;
    let now = pin_mid_day(&sim);
    let addr = sim.local_addr();
    let five = 5 * MIN;
    let last = now - now.rem_euclid(five);
    let path = |q: &str| {
        format!(
            "/bybit/v5/market/open-interest?category=linear&symbol=BTCUSDT&intervalTime=5min&{q}"
        )
    };
    let rows = |v: &Value| -> Vec<(i64, String)> {
        v["result"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("no list in {v}"))
            .iter()
            .map(|r| {
                (
                    r["timestamp"].as_str().unwrap().parse().unwrap(),
                    r["openInterest"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // Both bounds inclusive, newest first, the data function's values.
    let v = common::rest(
        addr,
        &path(&format!("startTime={}&endTime={last}", last - 2 * five)),
    )
    .await;
    let want: Vec<(i64, String)> = [last, last - five, last - 2 * five]
        .into_iter()
        .map(|t| {
            (
                t,
                bybit::open_interest(BybitCategory::Linear, "BTCUSDT", t).unwrap(),
            )
        })
        .collect();
    assert_eq!(rows(&v), want);
    assert_eq!(v["result"]["nextPageCursor"], "");
    // The default page is 50; the cursor continues where it ended.
    let v = common::rest(addr, &path("")).await;
    let first = rows(&v);
    assert_eq!((first.len(), first[0].0), (50, last));
    let cursor = v["result"]["nextPageCursor"].as_str().unwrap().to_string();
    let v = common::rest(addr, &path(&format!("cursor={cursor}&limit=2"))).await;
    assert_eq!(
        rows(&v).iter().map(|r| r.0).collect::<Vec<_>>(),
        [last - 50 * five, last - 51 * five]
    );
    let v = get_path(
        addr,
        &path("intervalTime=2h").replace("intervalTime=5min&", ""),
    )
    .await
    .json();
    assert_eq!(v["retMsg"], "params error: intervalTime is invalid");
}
