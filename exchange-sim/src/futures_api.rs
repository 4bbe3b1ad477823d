//! The REST endpoints only the futures markets have: their `exchangeInfo`, `fundingRate` and
//! the `/futures/data/*` history (open interest and long/short ratios, last 30 days only),
//! with Binance's parameters, paging (including the "newest `limit` rows ending at endTime"
//! trap) and error codes; bodies written straight into a `String` from [`crate::futures`].

use kline_interval::Interval;

use crate::api::{
    illegal, limit_param, mandatory, market_pair, market_symbol, time_param, ApiError, Ctx,
    Endpoint,
};
use crate::data::Market;
use crate::fmt::{push_fixed8, push_i64, push_json_str, push_u64};
use crate::futures::{self, FUTURES_DATA_RETENTION_MS};
use crate::market::{coinm_pair, SimMarket};

/// A delivery date Binance gives perpetuals (2100-12-25).
const PERPETUAL_DELIVERY: i64 = 4_133_404_800_000;

/// Futures `exchangeInfo` (no parameters): the request-weight limit in force and every listed
/// symbol of the market.
pub(crate) fn exchange_info(ctx: &Ctx<'_>) -> String {
    let mut s = String::with_capacity(4096);
    s.push_str("{\"timezone\":\"UTC\",\"serverTime\":");
    push_i64(&mut s, ctx.now);
    if ctx.market == SimMarket::UsdM {
        s.push_str(",\"futuresType\":\"U_MARGINED\"");
    }
    s.push_str(",\"rateLimits\":[{\"rateLimitType\":\"REQUEST_WEIGHT\",\"interval\":\"");
    s.push_str(ctx.window.unit);
    s.push_str("\",\"intervalNum\":");
    push_u64(&mut s, ctx.window.num);
    s.push_str(",\"limit\":");
    push_u64(&mut s, u64::from(ctx.weight_limit));
    s.push_str(
        "},{\"rateLimitType\":\"ORDERS\",\"interval\":\"MINUTE\",\"intervalNum\":1,\"limit\":1200},\
         {\"rateLimitType\":\"ORDERS\",\"interval\":\"SECOND\",\"intervalNum\":10,\"limit\":300}],\
         \"exchangeFilters\":[],\"symbols\":[",
    );
    for (i, sym) in ctx.market.listed_symbols().iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_symbol(&mut s, ctx, sym);
    }
    s.push_str("]}");
    s
}

fn write_symbol(s: &mut String, ctx: &Ctx<'_>, symbol: &str) {
    let (base, quote) = ctx.market.parse_symbol(symbol).unwrap_or((symbol, ""));
    let m = Market::of(ctx.market, symbol);
    s.push_str("{\"symbol\":");
    push_json_str(s, symbol);
    s.push_str(",\"pair\":");
    push_json_str(
        s,
        if ctx.market == SimMarket::CoinM {
            coinm_pair(symbol)
        } else {
            symbol
        },
    );
    s.push_str(",\"contractType\":\"PERPETUAL\",\"deliveryDate\":");
    push_i64(s, PERPETUAL_DELIVERY);
    s.push_str(",\"onboardDate\":");
    push_i64(s, ctx.data.listed_at);
    if let Some(cs) = m.contract_size() {
        s.push_str(",\"contractStatus\":\"TRADING\",\"contractSize\":");
        push_i64(s, cs);
    } else {
        s.push_str(",\"status\":\"TRADING\"");
    }
    s.push_str(",\"baseAsset\":");
    push_json_str(s, base);
    s.push_str(",\"quoteAsset\":");
    push_json_str(s, quote);
    s.push_str(",\"marginAsset\":");
    push_json_str(
        s,
        if ctx.market == SimMarket::CoinM {
            base
        } else {
            quote
        },
    );
    s.push_str(
        ",\"pricePrecision\":8,\"quantityPrecision\":8,\"baseAssetPrecision\":8,\
         \"quotePrecision\":8,\"underlyingType\":\"COIN\",\"filters\":[{\"filterType\":\
         \"PRICE_FILTER\",\"minPrice\":\"",
    );
    push_fixed8(s, m.tick_units());
    s.push_str("\",\"maxPrice\":\"1000000.00000000\",\"tickSize\":\"");
    push_fixed8(s, m.tick_units());
    s.push_str("\"},{\"filterType\":\"LOT_SIZE\",\"minQty\":\"");
    push_fixed8(s, m.step_units());
    s.push_str("\",\"maxQty\":\"9000000.00000000\",\"stepSize\":\"");
    push_fixed8(s, m.step_units());
    s.push_str(
        "\"}],\"orderTypes\":[\"LIMIT\",\"MARKET\",\"STOP\",\"STOP_MARKET\",\"TAKE_PROFIT\",\
                \"TAKE_PROFIT_MARKET\",\"TRAILING_STOP_MARKET\"],\"timeInForce\":[\"GTC\",\"IOC\",\
                \"FOK\",\"GTX\"]}",
    );
}

/// `fundingRate`: ascending from startTime (or the newest `limit`), nothing past endTime nor
/// now, nothing before the listing. `symbol` is mandatory here (Binance would return every
/// symbol's rates without it).
pub(crate) fn funding_rate(q: &crate::query::Query, ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let symbol = market_symbol(q, ctx.market)?;
    let start = time_param(q, "startTime")?;
    let end = time_param(q, "endTime")?;
    let limit = limit_param(q, 100, 1000)? as i64;
    let m = Market::of(ctx.market, symbol);
    let first = futures::first_funding_index(ctx.data.listed_at);
    let hi = futures::funding_index_at_or_before(&m, end.unwrap_or(ctx.now).min(ctx.now));
    let (lo, hi) = match start {
        // COIN-M documents no order for bounds holding more than `limit` rows; its klines
        // answer the newest rows then, and so does this (a client must not rely on either).
        Some(s) if end.is_some() && ctx.market == SimMarket::CoinM => {
            let lo = futures::funding_index_at_or_after(&m, s).max(first);
            (lo.max(hi - limit + 1), hi)
        }
        Some(s) => {
            let lo = futures::funding_index_at_or_after(&m, s).max(first);
            (lo, hi.min(lo + limit - 1))
        }
        None => ((hi - limit + 1).max(first), hi),
    };
    let mut s = String::with_capacity(2 + (hi - lo + 1).clamp(0, 1000) as usize * 120);
    s.push('[');
    for k in lo..=hi {
        if k > lo {
            s.push(',');
        }
        let time = futures::funding_time(&m, k);
        s.push_str("{\"symbol\":");
        push_json_str(&mut s, symbol);
        s.push_str(",\"fundingTime\":");
        push_i64(&mut s, time);
        s.push_str(",\"fundingRate\":\"");
        push_fixed8(&mut s, futures::funding_units(&m, k));
        s.push('"');
        if ctx.market == SimMarket::UsdM {
            s.push_str(",\"markPrice\":\"");
            push_fixed8(&mut s, futures::mark_units(&m, time));
            s.push('"');
        }
        s.push('}');
    }
    s.push(']');
    Ok(s)
}

/// The periods `/futures/data/*` accepts.
const PERIODS: [Interval; 9] = [
    Interval::M5,
    Interval::M15,
    Interval::M30,
    Interval::H1,
    Interval::H2,
    Interval::H4,
    Interval::H6,
    Interval::H12,
    Interval::D1,
];

/// The timestamps a `/futures/data/*` request returns, ascending: period-aligned, within the
/// last 30 days, the listing and now. With startTime alone, the oldest `limit` from it;
/// otherwise the newest `limit` ending at endTime (or now) — also when both are sent.
pub(crate) fn futures_data_times(
    period: Interval,
    listed_at: i64,
    now: i64,
    start: Option<i64>,
    end: Option<i64>,
    limit: usize,
) -> Result<Vec<i64>, ApiError> {
    let floor = now - FUTURES_DATA_RETENTION_MS;
    if start.is_some_and(|s| s < floor) {
        return Err(ApiError::bad(
            -1130,
            "Data sent for parameter 'startTime' is not valid.",
        ));
    }
    let lo = period.align_up(start.unwrap_or(floor).max(floor).max(listed_at));
    let hi = period.align_down(end.unwrap_or(now).min(now));
    let mut out = Vec::with_capacity(limit.min(500));
    if lo > hi {
        return Ok(out);
    }
    if start.is_some() && end.is_none() {
        let mut t = lo;
        while t <= hi && out.len() < limit {
            out.push(t);
            t = period.next_open(t);
        }
    } else {
        let mut t = hi;
        while t >= lo && out.len() < limit {
            out.push(t);
            t = period.prev_open(t);
        }
        out.reverse();
    }
    Ok(out)
}

/// `openInterestHist` and the three long/short ratio endpoints of `/futures/data/`.
pub(crate) fn futures_data(
    ep: Endpoint,
    q: &crate::query::Query,
    ctx: &Ctx<'_>,
) -> Result<String, ApiError> {
    let coinm = ctx.market == SimMarket::CoinM;
    // USD-M asks by symbol, COIN-M by pair.
    let (name, symbol) = if coinm {
        let (pair, symbol) = market_pair(q, ctx.market)?;
        (pair, symbol)
    } else {
        let s = market_symbol(q, ctx.market)?;
        (s, s.to_string())
    };
    let mut contract_type = None;
    if coinm && ep == Endpoint::OpenInterestHist {
        let ct = q
            .get("contractType")
            .ok_or_else(|| mandatory("contractType"))?;
        if !["PERPETUAL", "CURRENT_QUARTER", "NEXT_QUARTER", "ALL"].contains(&ct) {
            return Err(illegal(
                "contractType",
                "PERPETUAL, CURRENT_QUARTER, NEXT_QUARTER, ALL",
            ));
        }
        contract_type = Some(ct);
    }
    let period = q
        .get("period")
        .ok_or_else(|| mandatory("period"))?
        .parse::<Interval>()
        .ok()
        .filter(|p| PERIODS.contains(p))
        .ok_or_else(|| ApiError::bad(-1130, "Data sent for parameter 'period' is not valid."))?;
    let limit = limit_param(q, 30, 500)?;
    let start = time_param(q, "startTime")?;
    let end = time_param(q, "endTime")?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(ApiError::bad(-1127, "startTime must be less than endTime"));
        }
    }
    let times = futures_data_times(period, ctx.data.listed_at, ctx.now, start, end, limit)?;
    // This simulator has perpetuals only: quarterly contracts have no history.
    if contract_type.is_some_and(|ct| ct.ends_with("QUARTER")) {
        return Ok("[]".to_string());
    }
    let m = Market::of(ctx.market, &symbol);
    let mut s = String::with_capacity(2 + times.len() * 140);
    s.push('[');
    for (i, &t) in times.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(if coinm { "{\"pair\":" } else { "{\"symbol\":" });
        push_json_str(&mut s, name);
        if ep == Endpoint::OpenInterestHist {
            if coinm {
                s.push_str(",\"contractType\":\"PERPETUAL\"");
            }
            let (oi, value) = futures::open_interest_units(&m, t);
            s.push_str(",\"sumOpenInterest\":\"");
            push_fixed8(&mut s, oi);
            s.push_str("\",\"sumOpenInterestValue\":\"");
            push_fixed8(&mut s, value);
            s.push('"');
        } else {
            let r = futures::long_short_ratios(ctx.market, &symbol, t);
            let (ratio, long_key, short_key) = match ep {
                Endpoint::GlobalLongShortAccountRatio => {
                    (r.global_account, "longAccount", "shortAccount")
                }
                Endpoint::TopLongShortAccountRatio => {
                    (r.top_account, "longAccount", "shortAccount")
                }
                // USD-M names the position shares "…Account" too.
                _ if coinm => (r.top_position, "longPosition", "shortPosition"),
                _ => (r.top_position, "longAccount", "shortAccount"),
            };
            s.push_str(",\"longShortRatio\":\"");
            s.push_str(&ratio.long_short_ratio);
            s.push_str("\",\"");
            s.push_str(long_key);
            s.push_str("\":\"");
            s.push_str(&ratio.long);
            s.push_str("\",\"");
            s.push_str(short_key);
            s.push_str("\":\"");
            s.push_str(&ratio.short);
            s.push('"');
        }
        s.push_str(",\"timestamp\":");
        push_i64(&mut s, t);
        s.push('}');
    }
    s.push(']');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;

    #[test]
    fn futures_data_paging() {
        let now = 1_717_200_000_000 + 7 * 60_000; // 5m grid + 7 min
        let iv = Interval::M5;
        let t = futures_data_times(iv, 0, now, None, None, 3).unwrap();
        let last = iv.align_down(now);
        assert_eq!(t, vec![last - 600_000, last - 300_000, last]);
        // Both bounds: the newest `limit` ending at endTime.
        let t = futures_data_times(iv, 0, now, Some(now - DAY), Some(now - H), 2).unwrap();
        assert_eq!(
            t,
            vec![iv.align_down(now - H) - 300_000, iv.align_down(now - H)]
        );
        // startTime only: the oldest from it.
        let t = futures_data_times(iv, 0, now, Some(now - DAY + 1), None, 2).unwrap();
        assert_eq!(t[0], iv.align_up(now - DAY + 1));
        let e = futures_data_times(iv, 0, now, Some(now - 31 * DAY), None, 2).unwrap_err();
        assert_eq!(e.code, -1130);
        // Nothing older than 30 days even when endTime asks for it.
        let t = futures_data_times(iv, 0, now, None, Some(now - 40 * DAY), 5).unwrap();
        assert!(t.is_empty());
        // Nothing before the listing.
        let t = futures_data_times(Interval::D1, now - 2 * DAY, now, None, None, 30).unwrap();
        assert_eq!(t.len(), 2);
    }
}
