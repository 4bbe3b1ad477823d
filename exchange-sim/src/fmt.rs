//! Allocation-free text formatting used to build JSON responses quickly: integers, fixed-point
//! decimals with 8 places (Binance's `"16541.77000000"` style) and JSON string escaping.

/// Number of fixed-point units in one whole: every price and quantity is kept as an integer count
/// of 1e-8, the precision Binance prints.
pub const SCALE: i64 = 100_000_000;

/// Appends the decimal digits of `v`.
#[inline]
pub fn push_u64(buf: &mut String, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // The bytes are ASCII digits.
    buf.push_str(std::str::from_utf8(&tmp[i..]).unwrap_or("0"));
}

/// Appends the decimal digits of `v`, with a leading `-` when negative.
#[inline]
pub fn push_i64(buf: &mut String, v: i64) {
    if v < 0 {
        buf.push('-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Appends a fixed-point amount of 1e-8 units as a decimal with exactly 8 fractional digits
/// (`1_654_177_000_000` → `16541.77000000`).
#[inline]
pub fn push_fixed8(buf: &mut String, units: i64) {
    if units < 0 {
        buf.push('-');
    }
    let u = units.unsigned_abs();
    push_u64(buf, u / SCALE as u64);
    let mut frac = u % SCALE as u64;
    let mut tmp = [b'0'; 9];
    tmp[0] = b'.';
    for slot in tmp[1..].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    buf.push_str(std::str::from_utf8(&tmp).unwrap_or(".00000000"));
}

/// Like [`push_fixed8`] for amounts too large for `i64` units (big volumes).
#[inline]
pub fn push_fixed8_wide(buf: &mut String, units: i128) {
    if let Ok(small) = i64::try_from(units) {
        return push_fixed8(buf, small);
    }
    if units < 0 {
        buf.push('-');
    }
    let u = units.unsigned_abs();
    let whole = u / SCALE as u128;
    let frac = (u % SCALE as u128) as i64;
    if let Ok(w) = u64::try_from(whole) {
        push_u64(buf, w);
    } else {
        buf.push_str(&whole.to_string());
    }
    let mut tail = String::with_capacity(12);
    push_fixed8(&mut tail, frac);
    // `tail` is "0.xxxxxxxx"; keep the point and the digits.
    buf.push_str(&tail[1..]);
}

/// Appends an amount of 1e-4 units with exactly 4 fractional digits (`6543` → `0.6543`), the
/// way Binance prints long/short ratios.
#[inline]
pub fn push_fixed4(buf: &mut String, units: i64) {
    if units < 0 {
        buf.push('-');
    }
    let u = units.unsigned_abs();
    push_u64(buf, u / 10_000);
    let mut frac = u % 10_000;
    let mut tmp = [b'0'; 5];
    tmp[0] = b'.';
    for slot in tmp[1..].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    buf.push_str(std::str::from_utf8(&tmp).unwrap_or(".0000"));
}

/// Formats an amount of 1e-4 units as an owned string (see [`push_fixed4`]).
pub fn fixed4(units: i64) -> String {
    let mut s = String::with_capacity(12);
    push_fixed4(&mut s, units);
    s
}

/// Formats a fixed-point amount as an owned string (see [`push_fixed8`]).
pub fn fixed8(units: i64) -> String {
    let mut s = String::with_capacity(24);
    push_fixed8(&mut s, units);
    s
}

/// Appends `s` as a JSON string literal, quotes included.
pub fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                buf.push_str("\\u00");
                let v = c as u32;
                for shift in [4, 0] {
                    let d = (v >> shift) & 0xf;
                    buf.push(char::from_digit(d, 16).unwrap_or('0'));
                }
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        let mut s = String::new();
        push_u64(&mut s, 0);
        s.push(' ');
        push_u64(&mut s, u64::MAX);
        s.push(' ');
        push_i64(&mut s, i64::MIN);
        s.push(' ');
        push_i64(&mut s, 1_502_928_000_000);
        assert_eq!(
            s,
            "0 18446744073709551615 -9223372036854775808 1502928000000"
        );
    }

    #[test]
    fn fixed_point() {
        assert_eq!(fixed8(1_654_177_000_000), "16541.77000000");
        assert_eq!(fixed8(1), "0.00000001");
        assert_eq!(fixed8(0), "0.00000000");
        assert_eq!(fixed8(-150_000_000), "-1.50000000");
        assert_eq!(fixed8(SCALE * 7 + 12_345), "7.00012345");
        assert_eq!(fixed4(6543), "0.6543");
        assert_eq!(fixed4(24_087), "2.4087");
        assert_eq!(fixed4(10_000), "1.0000");
        let mut s = String::new();
        push_fixed8_wide(&mut s, 123_456_789_012_345_678_901_234);
        assert_eq!(s, "1234567890123456.78901234");
        s.clear();
        push_fixed8_wide(&mut s, 1_500_000_000);
        assert_eq!(s, "15.00000000");
    }

    #[test]
    fn json_strings() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }
}
