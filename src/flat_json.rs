//! A reader of flat JSON objects, for the events a busy stream sends thousands of times a
//! second: one level of members whose values are strings without escapes, integers, booleans
//! or null, written without whitespace, as exchanges write their trade events. It takes such
//! an object in one pass without building anything; whatever else it meets (whitespace, an
//! escape, a nested value, a fraction, a duplicate member) it declines, and the caller reads the
//! text with serde_json, which then accepts it or names what is wrong. So the fast way never
//! accepts what serde_json would refuse, and never reads a value differently.

/// A member's value, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string's contents (no escapes, no control characters).
    Str(&'a str),
    /// An integer, read as it was scanned: its sign and magnitude (`None` past `u64::MAX`).
    Int {
        negative: bool,
        magnitude: Option<u64>,
    },
    Bool(bool),
    Null,
}

impl<'a> Value<'a> {
    pub fn str(self) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn bool(self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// `null` or a boolean, as serde reads an `Option<bool>`.
    pub fn opt_bool(self) -> Option<Option<bool>> {
        match self {
            Value::Null => Some(None),
            Value::Bool(b) => Some(Some(b)),
            _ => None,
        }
    }

    pub fn u64(self) -> Option<u64> {
        match self {
            // A sign (`-0` included) is left to serde_json.
            Value::Int {
                negative: false,
                magnitude,
            } => magnitude,
            _ => None,
        }
    }

    pub fn i64(self) -> Option<i64> {
        match self {
            // serde_json reads `-0` as a float, which no integer field takes.
            Value::Int {
                negative: true,
                magnitude: Some(0),
            } => None,
            Value::Int {
                negative: true,
                magnitude,
            } => 0i64.checked_sub_unsigned(magnitude?),
            Value::Int {
                negative: false,
                magnitude,
            } => i64::try_from(magnitude?).ok(),
            _ => None,
        }
    }
}

/// The integer that starts at `b[at]` (a digit or `-`), read in one pass, and where it ends;
/// `None` for what JSON does not allow (no digit, a leading zero).
#[inline]
fn integer<'a>(b: &[u8], at: usize) -> Option<(Value<'a>, usize)> {
    let negative = b[at] == b'-';
    let start = at + usize::from(negative);
    let mut i = start;
    let mut n = 0u64;
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|&d| d <= 9) {
        n = n.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    // JSON has no leading zeros; none at all is no number.
    let digits = i - start;
    if digits == 0 || (digits > 1 && b[start] == b'0') {
        return None;
    }
    // 19 digits cannot overflow; longer ones are read again, checked.
    let magnitude = if digits <= 19 {
        Some(n)
    } else {
        b[start..i].iter().try_fold(0u64, |m, &c| {
            m.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        })
    };
    Some((
        Value::Int {
            negative,
            magnitude,
        },
        i,
    ))
}

/// Calls `member` with every name and value of `text`, a flat JSON object as described above,
/// in order; `None` when `text` is anything else or `member` declines (returns `None`).
#[inline]
pub fn members<'a>(
    text: &'a str,
    member: impl FnMut(&'a str, Value<'a>) -> Option<()>,
) -> Option<()> {
    (object(text, 0, member)? == text.len()).then_some(())
}

/// Reads the flat object that starts at byte `at` of `text` as [`members`] does, and returns
/// where it ends (just after its `}`).
#[inline]
pub fn object<'a>(
    text: &'a str,
    at: usize,
    mut member: impl FnMut(&'a str, Value<'a>) -> Option<()>,
) -> Option<usize> {
    let b = text.as_bytes();
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = at + 1;
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        // Exchanges' event members mostly have one-letter names.
        let name_end = match b.get(i + 1..i + 3) {
            Some(&[c, b'"']) if !SPECIAL[usize::from(c)] => i + 2,
            _ => i + 1 + plain_len(&b[i + 1..])?,
        };
        let name = &text[i + 1..name_end];
        i = name_end + 1;
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        let value = match *b.get(i)? {
            b'"' => {
                let s = i + 1;
                let e = s + plain_len(&b[s..])?;
                i = e + 1;
                Value::Str(&text[s..e])
            }
            b't' if b[i..].starts_with(b"true") => {
                i += 4;
                Value::Bool(true)
            }
            b'f' if b[i..].starts_with(b"false") => {
                i += 5;
                Value::Bool(false)
            }
            b'n' if b[i..].starts_with(b"null") => {
                i += 4;
                Value::Null
            }
            b'-' | b'0'..=b'9' => {
                let (value, end) = integer(b, i)?;
                i = end;
                value
            }
            _ => return None,
        };
        member(name, value)?;
        // Anything but a comma or the end here (a fraction, an exponent, whitespace) is for
        // serde_json.
        match b.get(i)? {
            b',' => i += 1,
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Reads `text`, a JSON array of flat objects (a REST page of trades), with `item`, which reads
/// the object that starts at the offset it is given and returns it with where it ends; `None`
/// when `text` is anything else or `item` declines.
pub fn array<T>(text: &str, mut item: impl FnMut(usize) -> Option<(T, usize)>) -> Option<Vec<T>> {
    let b = text.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    // Exchanges' trade rows are 100-200 bytes.
    let mut out = Vec::with_capacity(text.len() / 100);
    if b.get(1) == Some(&b']') {
        return (b.len() == 2).then_some(out);
    }
    let mut i = 1;
    loop {
        let (row, end) = item(i)?;
        out.push(row);
        match b.get(end)? {
            b',' => i = end + 1,
            b']' => return (end + 1 == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// The length of a string's contents up to its closing quote, when it has no escape and no
/// control character.
#[inline]
fn plain_len(b: &[u8]) -> Option<usize> {
    let n = b.iter().position(|&c| SPECIAL[usize::from(c)])?;
    (b[n] == b'"').then_some(n)
}

/// The bytes that end a plain string's contents: its closing quote, an escape, a control
/// character.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// `fast`'s reading of `text`, or serde_json's where it declines: the same result either way.
#[inline]
pub fn or_serde<'a, T: serde::Deserialize<'a>>(
    text: &'a str,
    fast: impl FnOnce(&'a str) -> Option<T>,
) -> serde_json::Result<T> {
    match fast(text) {
        Some(t) => Ok(t),
        None => serde_json::from_str(text),
    }
}

/// Fills `slot` with a member's `value`; `None` when the value is not of the member's type, or
/// when the member came before (serde refuses a duplicate).
#[inline]
pub fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// What a type's fast reader is tested with: variants of an event, and the comparison with
/// serde_json.
#[cfg(test)]
pub mod check {
    use serde::Deserialize;

    /// Variants of an event, each with whether it is still flat (`flat_json`'s layout):
    /// its own layout, and every way a member can differ.
    pub fn variants(event: &str) -> Vec<(String, bool)> {
        let body = &event[1..event.len() - 1];
        let members: Vec<&str> = body.split(',').collect();
        let mut reversed = members.clone();
        reversed.reverse();
        let mut out = vec![
            (event.to_string(), true),
            (format!("{{{}}}", reversed.join(",")), true),
            (format!(r#"{{{body},"x":"z","y":null}}"#), true),
            (format!(r#"{{"x":{{"y":[1]}},{body}}}"#), false),
            (format!("{{ {body} }}"), false),
            (format!("{{{body}}} "), false),
            (format!("{{{body},}}"), false),
        ];
        for (i, member) in members.iter().enumerate() {
            // A member missing, or twice.
            let mut fewer = members.clone();
            fewer.remove(i);
            out.push((format!("{{{}}}", fewer.join(",")), true));
            out.push((format!("{{{body},{member}}}"), true));
            // Its value replaced by every kind of value.
            let (name, _) = member.split_once(':').unwrap();
            for (v, flat) in [
                ("null", true),
                ("true", true),
                ("false", true),
                ("0", true),
                ("-1", true),
                ("-0", true),
                ("01", false),
                ("1.5", false),
                ("1e3", false),
                ("18446744073709551615", true),
                ("18446744073709551616", true),
                ("9223372036854775808", true),
                (r#""""#, true),
                (r#""7""#, true),
                (r#""a\"b""#, false),
                (r#"{"x":1}"#, false),
                ("[1]", false),
            ] {
                let mut changed = members.clone();
                let member = format!("{name}:{v}");
                changed[i] = &member;
                out.push((format!("{{{}}}", changed.join(",")), flat));
            }
        }
        out
    }

    /// Checks `from_flat` against serde_json on every variant of `events`: what the fast way
    /// reads, serde_json reads the same; what serde_json reads of a flat text, the fast way
    /// reads too (so it is not merely declining everything).
    pub fn same_as_serde<'a, T: Deserialize<'a> + std::fmt::Debug>(
        texts: &'a [(String, bool)],
        from_flat: impl Fn(&'a str) -> Option<T>,
    ) -> usize {
        let mut fast = 0;
        for (text, flat) in texts {
            let serde = serde_json::from_str::<T>(text).map(|t| format!("{t:?}"));
            match (from_flat(text), serde) {
                (Some(t), Ok(expected)) => {
                    fast += 1;
                    assert_eq!(format!("{t:?}"), expected, "{text}");
                }
                (Some(t), Err(e)) => panic!("read {text} as {t:?}; serde_json refuses it: {e}"),
                (None, Ok(expected)) => {
                    assert!(
                        !flat,
                        "declined the flat {text}, which serde_json reads as {expected}"
                    )
                }
                (None, Err(_)) => {}
            }
        }
        fast
    }

    /// Checks a type's `from_json` (fast way, else serde_json) against serde_json alone: the
    /// same value, or an error for both.
    pub fn same_result<'a, T: Deserialize<'a> + std::fmt::Debug>(
        texts: &'a [(String, bool)],
        from_json: impl Fn(&'a str) -> serde_json::Result<T>,
    ) {
        for (text, _) in texts {
            assert_eq!(
                from_json(text).map(|t| format!("{t:?}")).ok(),
                serde_json::from_str::<T>(text)
                    .map(|t| format!("{t:?}"))
                    .ok(),
                "{text}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Option<Vec<(&str, Value<'_>)>> {
        let mut out = Vec::new();
        members(text, |n, v| {
            out.push((n, v));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn reads_every_kind_of_value() {
        assert_eq!(
            all(r#"{"e":"aggTrade","E":17,"a":-3,"m":true,"M":false,"x":null,"p":"0.1"}"#),
            Some(vec![
                ("e", Value::Str("aggTrade")),
                ("E", int("17")),
                ("a", int("-3")),
                ("m", Value::Bool(true)),
                ("M", Value::Bool(false)),
                ("x", Value::Null),
                ("p", Value::Str("0.1")),
            ])
        );
        assert_eq!(all("{}"), Some(vec![]));
        assert_eq!(all(r#"{"p":""}"#), Some(vec![("p", Value::Str(""))]));
    }

    /// Everything outside the flat layout is declined, for serde_json to read or refuse.
    #[test]
    fn declines_anything_else() {
        for text in [
            "",
            "{",
            "[]",
            r#"{"a":1,}"#,
            r#"{"a":1 }"#,
            r#"{ "a":1}"#,
            r#"{"a" :1}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":01}"#,
            r#"{"a":-}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":"x\"y"}"#,
            r#"{"a\u0062":1}"#,
            "{\"a\":\"x\ty\"}",
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":1"b":2}"#,
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":"1}"#,
        ] {
            assert_eq!(all(text), None, "{text}");
        }
    }

    /// Arrays of flat objects: each object's end is found by reading it.
    #[test]
    fn reads_arrays_of_flat_objects() {
        let count = |text: &str| {
            array(text, |at| {
                let mut n = 0;
                let end = object(text, at, |_, _| {
                    n += 1;
                    Some(())
                })?;
                Some((n, end))
            })
        };
        assert_eq!(count("[]"), Some(vec![]));
        assert_eq!(
            count(r#"[{"a":1,"b":"}"},{},{"c":null}]"#),
            Some(vec![2, 0, 1])
        );
        for text in [
            "",
            "[",
            "[]x",
            "[{}",
            "[{},]",
            "[{}]x",
            "[{} ]",
            "[1]",
            r#"[{"a":[1]}]"#,
        ] {
            assert_eq!(count(text), None, "{text}");
        }
    }

    /// The integer `digits` as the reader scans it.
    fn int(digits: &str) -> Value<'_> {
        let (value, end) = integer(digits.as_bytes(), 0).expect("an integer");
        assert_eq!(end, digits.len(), "{digits}");
        value
    }

    #[test]
    fn integers_are_read_within_their_type() {
        assert_eq!(int("18446744073709551615").u64(), Some(u64::MAX));
        assert_eq!(int("18446744073709551616").u64(), None);
        assert_eq!(int("-1").u64(), None);
        assert_eq!(int("-9223372036854775808").i64(), Some(i64::MIN));
        assert_eq!(int("9223372036854775808").i64(), None);
        assert_eq!(int("-0").i64(), None);
        assert_eq!(int("-7").i64(), Some(-7));
        assert_eq!(Value::Str("1").u64(), None);
        assert_eq!(Value::Null.opt_bool(), Some(None));
        assert_eq!(int("1").opt_bool(), None);
    }

    #[test]
    fn a_member_is_taken_once() {
        let mut slot = None;
        assert_eq!(once(&mut slot, Some(1)), Some(()));
        assert_eq!(once(&mut slot, Some(2)), None);
        assert_eq!(slot, Some(1));
        let mut empty: Option<u64> = None;
        assert_eq!(once(&mut empty, None), None);
    }
}
