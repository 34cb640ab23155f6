//! flagd's `fractional` operator, in both of flagd's bucketings.
//!
//! - `v2`, what flagd and the Node flagd-core publish today: MurmurHash3
//!   of the bucketing key's UTF-8 text, which must be a string; the
//!   shorthand key is `flagKey` and `targetingKey` joined.
//! - `v3`, flagd's hashing-consistency ADR, as `openfeature-flagd-core` 2.x
//!   on PyPI computes it: MurmurHash3 of the bucketing value encoded as
//!   canonical CBOR, after whole floats become integers, so that any JSON
//!   value can bucket and `1` and `1.0` bucket alike; the shorthand value is
//!   the array `[flagKey, targetingKey]`.
//!
//! Both scale the unsigned 32-bit hash onto the total weight as
//! `(hash × total) >> 32`, with no floating point and so no drift at the
//! edges of a bucket.

use datalogic_rs::bumpalo::collections::Vec as BumpVec;
use datalogic_rs::bumpalo::Bump;
use datalogic_rs::datavalue::NumberValue;
use datalogic_rs::operator::EvalContext;
use datalogic_rs::{CustomOperator, DataValue};

/// The operator `fractional` compiles to in a set bucketed with
/// [`Bucketing::V3`] (see `ops::rewrite`); never written by users.
pub(crate) const FRACTIONAL_V3: &str = "cfgd:fractional-v3";

/// How `fractional` turns a bucketing value into a bucket. Chosen per
/// namespace; see the flags guide for which flagd providers use which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Bucketing {
    /// flagd's published bucketing: MurmurHash3 of a string key.
    #[default]
    V2,
    /// flagd's hashing-consistency ADR: MurmurHash3 of the value as
    /// canonical CBOR, for values of any type.
    V3,
}

impl Bucketing {
    /// `"v2"` or `"v3"`, as namespace settings spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucketing::V2 => "v2",
            Bucketing::V3 => "v3",
        }
    }
}

impl std::fmt::Display for Bucketing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Bucketing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v2" => Ok(Bucketing::V2),
            "v3" => Ok(Bucketing::V3),
            other => Err(format!(
                "{other:?} is not a bucketing: use \"v2\" or \"v3\""
            )),
        }
    }
}

type OpResult<'a> = datalogic_rs::Result<&'a DataValue<'a>>;

fn null<'a>(arena: &'a Bump) -> OpResult<'a> {
    Ok(arena.alloc(DataValue::Null))
}

pub(crate) struct Fractional(pub(crate) Bucketing);

impl CustomOperator for Fractional {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> OpResult<'a> {
        let Some(first) = args.first() else {
            return null(arena);
        };
        let picked = match self.0 {
            Bucketing::V2 => v2(first, args, ctx.root_input()),
            Bucketing::V3 => v3(first, args, ctx.root_input(), arena),
        };
        match picked {
            Some(variant) => Ok(variant),
            None => null(arena),
        }
    }
}

/// As the Node flagd-core: a string first argument is the bucketing key;
/// anything else means every argument is a bucket and the key is
/// `$flagd.flagKey` + `targetingKey` (so a key that came out null fails as
/// a bucket, giving null).
fn v2<'a>(
    first: &DataValue<'a>,
    args: &[&'a DataValue<'a>],
    root: &DataValue<'_>,
) -> Option<&'a DataValue<'a>> {
    let implicit;
    let (key, buckets): (&str, &[&DataValue<'a>]) = match first {
        DataValue::String(s) => (s, &args[1..]),
        _ => {
            let (flag, targeting) = shorthand(root)?;
            implicit = format!("{flag}{targeting}");
            (&implicit, args)
        }
    };
    pick(murmur3_32(key.as_bytes(), 0), buckets, Bucketing::V2)
}

/// As `openfeature-flagd-core` 2.x: an array first argument means the
/// shorthand (every argument is a bucket, the value `[flagKey,
/// targetingKey]`); null buckets nothing; anything else is the value.
fn v3<'a>(
    first: &DataValue<'a>,
    args: &[&'a DataValue<'a>],
    root: &DataValue<'_>,
    arena: &'a Bump,
) -> Option<&'a DataValue<'a>> {
    let mut encoded = BumpVec::with_capacity_in(64, arena);
    let buckets = match first {
        DataValue::Array(_) => {
            let (flag, targeting) = shorthand(root)?;
            head(&mut encoded, 4, 2);
            text(&mut encoded, flag);
            text(&mut encoded, targeting);
            args
        }
        DataValue::Null => return None,
        value => {
            canonical_cbor(value, &mut encoded, arena)?;
            &args[1..]
        }
    };
    pick(murmur3_32(&encoded, 0), buckets, Bucketing::V3)
}

/// `$flagd.flagKey` ("" without one) and a non-empty string
/// `targetingKey`, or `None` without one.
fn shorthand<'r>(root: &'r DataValue<'_>) -> Option<(&'r str, &'r str)> {
    let DataValue::Object(fields) = root else {
        return None;
    };
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let targeting = field("targetingKey")?.as_str().filter(|s| !s.is_empty())?;
    let flag = match field("$flagd") {
        Some(DataValue::Object(inner)) => inner
            .iter()
            .find(|(k, _)| *k == "flagKey")
            .and_then(|(_, v)| v.as_str())
            .unwrap_or(""),
        _ => "",
    };
    Some((flag, targeting))
}

/// The bucket `hash` falls in, over `buckets` of `[variant, weight]` (a
/// missing weight is 1, a negative one 0); `None` when a bucket is
/// malformed or the weights sum to 0 or past `i32::MAX`.
fn pick<'a>(
    hash: u32,
    buckets: &[&'a DataValue<'a>],
    bucketing: Bucketing,
) -> Option<&'a DataValue<'a>> {
    let mut total: u64 = 0;
    let mut weighted = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let DataValue::Array(parts) = bucket else {
            return None;
        };
        let ([variant] | [variant, _]) = parts else {
            return None;
        };
        // v2 buckets only a scalar; v3 returns whatever the bucket holds.
        let scalar = matches!(
            variant,
            DataValue::String(_) | DataValue::Number(_) | DataValue::Bool(_) | DataValue::Null
        );
        if bucketing == Bucketing::V2 && !scalar {
            return None;
        }
        let weight = match (parts.get(1), bucketing) {
            (None, _) => 1,
            (Some(DataValue::Number(NumberValue::Integer(i))), _) => (*i).max(0) as u64,
            // flagd-core on npm takes a whole float as its integer; the
            // Python core 2.x takes integers only.
            (Some(DataValue::Number(NumberValue::Float(f))), Bucketing::V2) if f.fract() == 0.0 => {
                f.max(0.0) as u64
            }
            _ => return None,
        };
        total = total.saturating_add(weight);
        weighted.push((variant, weight));
    }
    if total == 0 || total > i32::MAX as u64 {
        return None;
    }
    let bucket = (u64::from(hash) * total) >> 32;
    let mut end = 0;
    weighted.into_iter().find_map(|(variant, weight)| {
        end += weight;
        (bucket < end).then_some(variant)
    })
}

/// Writes `value` as canonical CBOR the way the Python core does it
/// (`cbor2.dumps(normalize_numbers(value), canonical=True)`): whole floats
/// in the 64-bit integer range as integers, other floats in the shortest
/// of half, single or double precision that holds them exactly, map keys
/// sorted by the length and then the bytes of their encoding. `None` for a
/// value JSON cannot hold.
fn canonical_cbor<'a>(
    value: &DataValue<'_>,
    out: &mut BumpVec<'a, u8>,
    arena: &'a Bump,
) -> Option<()> {
    match value {
        DataValue::Null => out.push(0xf6),
        DataValue::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        DataValue::Number(NumberValue::Integer(i)) => integer(out, *i),
        DataValue::Number(NumberValue::Float(f)) => float(out, *f),
        DataValue::String(s) => text(out, s),
        DataValue::Array(items) => {
            head(out, 4, items.len() as u64);
            for item in *items {
                canonical_cbor(item, out, arena)?;
            }
        }
        DataValue::Object(fields) => {
            let mut entries = BumpVec::with_capacity_in(fields.len(), arena);
            for (key, value) in *fields {
                let mut encoded = BumpVec::with_capacity_in(key.len() + 9, arena);
                text(&mut encoded, key);
                entries.push((encoded, value));
            }
            entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            head(out, 5, entries.len() as u64);
            for (key, value) in &entries {
                out.extend_from_slice(key);
                canonical_cbor(value, out, arena)?;
            }
        }
        #[allow(unreachable_patterns)]
        _ => return None,
    }
    Some(())
}

/// A data item's head: major type and argument, in the fewest bytes.
fn head(out: &mut BumpVec<'_, u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn text(out: &mut BumpVec<'_, u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn integer(out: &mut BumpVec<'_, u8>, i: i64) {
    if i >= 0 {
        head(out, 0, i as u64);
    } else {
        // -1 - i, which cannot overflow.
        head(out, 1, !i as u64);
    }
}

fn float(out: &mut BumpVec<'_, u8>, f: f64) {
    // flagd's normalisation: whole floats in [-2^63, 2^64) are integers.
    if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f)
    {
        if f < 0.0 {
            integer(out, f as i64);
        } else {
            head(out, 0, f as u64);
        }
        return;
    }
    if f.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(&[0xf9, if f > 0.0 { 0x7c } else { 0xfc }, 0x00]);
        return;
    }
    let single = f as f32;
    if f64::from(single) != f {
        out.push(0xfb);
        out.extend_from_slice(&f.to_be_bytes());
    } else if let Some(half) = exact_half(single) {
        out.push(0xf9);
        out.extend_from_slice(&half.to_be_bytes());
    } else {
        out.push(0xfa);
        out.extend_from_slice(&single.to_be_bytes());
    }
}

/// `s` as an IEEE 754 half-precision float, when one holds it exactly.
fn exact_half(s: f32) -> Option<u16> {
    let bits = s.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let mantissa = bits & 0x7f_ffff;
    if exp > 15 {
        return None;
    }
    if exp >= -14 {
        // A normal half keeps 10 of the 23 mantissa bits.
        if mantissa & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((exp + 15) as u16) << 10) | (mantissa >> 13) as u16);
    }
    if exp < -24 {
        return None;
    }
    // A subnormal half is m × 2^-24 with m below 2^10.
    let full = 0x80_0000 | mantissa;
    let shift = (-exp - 1) as u32;
    if full & ((1 << shift) - 1) != 0 {
        return None;
    }
    Some(sign | (full >> shift) as u16)
}

/// The bucket, 0 to 99, that flagd's `fractional` (v2) puts `targeting_key`
/// in for flag `flag_key`: a share of the first `p` buckets is `p` percent.
/// cfgd's overlays pick their `percent` of instances with it, so that an
/// overlay selects the instances a `[["on", p], ["off", 100 - p]]` rollout
/// of a flag of the same name would.
///
/// ```
/// let bucket = cfgd_flags::percent_bucket("canary", "host-17");
/// assert!(bucket < 100);
/// assert_eq!(bucket, cfgd_flags::percent_bucket("canary", "host-17"));
/// ```
pub fn percent_bucket(flag_key: &str, targeting_key: &str) -> u8 {
    let key = format!("{flag_key}{targeting_key}");
    ((u64::from(murmur3_32(key.as_bytes(), 0)) * 100) >> 32) as u8
}

/// MurmurHash3, x86 32-bit variant, as flagd uses for bucketing.
pub(crate) fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h = (h ^ mix(k))
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_reference_vectors() {
        // Published MurmurHash3_x86_32 test vectors (SMHasher).
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_32(b"\0\0\0\0", 0), 0x2362_f9de);
        assert_eq!(murmur3_32(b"aaaa", 0x9747_b28c), 0x5a97_808a);
        assert_eq!(murmur3_32(b"aaa", 0x9747_b28c), 0x283e_0130);
        assert_eq!(murmur3_32(b"aa", 0x9747_b28c), 0x5d21_1726);
        assert_eq!(murmur3_32(b"a", 0x9747_b28c), 0x7fa0_9ea6);
        assert_eq!(murmur3_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    fn cbor(json: &str) -> String {
        let arena = Bump::new();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let data = crate::evaluation::to_data(&value, &arena);
        let mut out = BumpVec::new_in(&arena);
        canonical_cbor(&data, &mut out, &arena).unwrap();
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn canonical_cbor_matches_rfc_8949_appendix_a() {
        for (json, hex) in [
            ("0", "00"),
            ("23", "17"),
            ("24", "1818"),
            ("1000000", "1a000f4240"),
            ("1000000000000", "1b000000e8d4a51000"),
            ("-1", "20"),
            ("-1000", "3903e7"),
            ("1.1", "fb3ff199999999999a"),
            ("1.5", "f93e00"),
            ("5.960464477539063e-8", "f90001"),
            ("0.00006103515625", "f90400"),
            ("-4.1", "fbc010666666666666"),
            ("3.4028234663852886e38", "fa7f7fffff"),
            ("1.0e300", "fb7e37e43c8800759c"),
            ("false", "f4"),
            ("true", "f5"),
            ("null", "f6"),
            (r#""""#, "60"),
            (r#""IETF""#, "6449455446"),
            (r#""\u00fc""#, "62c3bc"),
            ("[1,[2,3],[4,5]]", "8301820203820405"),
            (r#"{"a":1,"b":[2,3]}"#, "a26161016162820203"),
        ] {
            assert_eq!(cbor(json), hex, "{json}");
        }
    }

    #[test]
    fn whole_floats_encode_as_integers_and_keys_sort_length_first() {
        // flagd's normalisation: 1.0 buckets as 1, -0.0 as 0.
        assert_eq!(cbor("1.0"), cbor("1"));
        assert_eq!(cbor("-0.0"), "00");
        assert_eq!(cbor("-9223372036854775808.0"), "3b7fffffffffffffff");
        // 2^64 is past the integer range: it stays a float (single).
        assert_eq!(cbor("18446744073709551616.0"), "fa5f800000");
        // Shorter keys first, then by bytes: "b" < "aa".
        assert_eq!(cbor(r#"{"aa":1,"b":2,"a":3}"#), "a361610361620262616101");
    }

    #[test]
    fn bucketing_names_parse_and_print() {
        assert_eq!("v3".parse::<Bucketing>(), Ok(Bucketing::V3));
        assert_eq!(Bucketing::default().to_string(), "v2");
        assert!("v4".parse::<Bucketing>().unwrap_err().contains("\"v4\""));
    }
}

#[cfg(test)]
mod weights {
    use crate::{Bucketing, FlagSet};

    #[test]
    fn v3_takes_integer_weights_only_as_the_python_core_does() {
        let document = |weight: &str| {
            format!(
                r#"{{"flags": {{"f": {{"state": "ENABLED", "variants": {{"a": "a", "b": "b", "c": "c"}},
                "defaultVariant": "c", "targeting": {{"fractional": [["a", {weight}], ["b", {weight}]]}}}}}}}}"#
            )
        };
        let ctx = serde_json::json!({"targetingKey": "u1"});
        for (weight, bucketing, reason) in [
            ("50", Bucketing::V3, "TARGETING_MATCH"),
            ("50.0", Bucketing::V3, "DEFAULT"),
            ("true", Bucketing::V3, "DEFAULT"),
            ("50.0", Bucketing::V2, "TARGETING_MATCH"),
        ] {
            let set = FlagSet::from_document_with(&document(weight), bucketing).unwrap();
            let details = set.evaluate("f", String::new(), &ctx);
            assert_eq!(
                details.reason.as_str(),
                reason,
                "{weight} under {bucketing}"
            );
        }
    }
}
