// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.
//
// Palisade patch 3 (see PALISADE.md): OPA's arithmetic on non-integers.

//! Arithmetic on non-integers as OPA computes it.
//!
//! OPA keeps numbers as decimal strings. An operation on two integers is
//! exact; any other `+ - * /` parses its operands into Go `big.Float`s of
//! 64-bit precision, computes a correctly rounded result (ties to even), and
//! turns it back into the shortest decimal that rounds to that result
//! (`Text('g', -1)`, or `'f'` when it is an integer). So `0.1 + 0.2` is
//! `0.3`, where `f64` gives `0.30000000000000004`, and `0.3 == 0.1 + 0.2`
//! holds.
//!
//! This module does the same with exact big-integer arithmetic: an operand
//! is its decimal (for an `f64`, the shortest digits that print it, which
//! are the literal's own for any literal of up to 15 significant digits),
//! rounded to a
//! 64-bit mantissa; the result is rounded to 64 bits, and its shortest
//! decimal becomes the regorus number: an integer exactly, a non-integer as
//! an `f64` when one prints as those digits, and otherwise as a
//! [`Number::Decimal`] that keeps them (`1 / 3`), so that `1 / 3 * 3 == 1`
//! holds as in OPA. Integral operands of `+ - *` are exact, as in OPA.
//!
//! Tested in Palisade's `filter/core/src/policy/opa_compat_numbers_tests.rs`
//! (regorus's own test harness is not vendored).

use alloc::format;
use alloc::string::{String, ToString};

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{One, Signed, Zero};

use super::Number;
use crate::Rc;

/// Go's `big.Float` precision when OPA parses a number: 64 bits.
const PRECISION: u64 = 64;

/// The widest integer a product may make (about 1,233 decimal digits).
/// OPA multiplies integers without a bound, but a product's cost grows
/// with its width and a builtin call is not interrupted by the evaluation
/// time limit: `product` of a few thousand `1e308`s from a request would
/// stall a worker for seconds. Past this, a product is an overflow error
/// (the request is denied) instead.
pub(super) const MAX_PRODUCT_BITS: u64 = 4096;

/// An overflow error when multiplying integers of these widths could make
/// one wider than [`MAX_PRODUCT_BITS`].
pub(super) fn check_product_width(lhs_bits: u64, rhs_bits: u64) -> Result<(), &'static str> {
    if lhs_bits.saturating_add(rhs_bits) > MAX_PRODUCT_BITS {
        Err("overflow")
    } else {
        Ok(())
    }
}

/// `mant * 2^exp`, exactly. After [`round`], `|mant|` is in
/// `[2^63, 2^64)` or zero.
#[derive(Clone, Debug)]
struct Dyadic {
    mant: BigInt,
    exp: i64,
}

/// A decimal `digits * 10^exp`, with no trailing zeros in `digits`.
/// Held in a [`Number::Decimal`] only when it is not an integer and no
/// `f64` prints as it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal {
    digits: BigInt,
    exp: i64,
}

impl Decimal {
    /// The nearest `f64` (infinite beyond its range).
    pub(crate) fn to_f64(&self) -> f64 {
        format!("{}e{}", self.digits, self.exp)
            .parse::<f64>()
            .unwrap_or(f64::NAN)
    }

    pub(crate) fn is_negative(&self) -> bool {
        self.digits.is_negative()
    }

    pub(crate) fn neg(&self) -> Decimal {
        Decimal {
            digits: -&self.digits,
            exp: self.exp,
        }
    }

    /// The greatest integer not above it (`exp < 0`: it is no integer).
    pub(crate) fn floor(&self) -> BigInt {
        let scale = BigInt::from(pow10(self.exp.unsigned_abs()));
        let q = &self.digits / &scale;
        if self.digits.is_negative() && !(&self.digits % &scale).is_zero() {
            q - 1
        } else {
            q
        }
    }

    /// The nearest integer, halves away from zero (OPA's `round`).
    pub(crate) fn round_half_away(&self) -> BigInt {
        let scale = BigInt::from(pow10(self.exp.unsigned_abs()));
        let magnitude: BigInt = (self.digits.abs() * 2 + &scale) / (scale * 2);
        if self.digits.is_negative() {
            -magnitude
        } else {
            magnitude
        }
    }

    /// The decimal as OPA prints it, without an exponent.
    pub(crate) fn to_plain_string(&self) -> String {
        let negative = self.digits.is_negative();
        let digits = self.digits.magnitude().to_string();
        let places = usize::try_from(self.exp.unsigned_abs()).unwrap_or(usize::MAX);
        let body = if self.exp >= 0 {
            format!("{digits}{}", "0".repeat(places))
        } else if digits.len() > places {
            let (int, frac) = digits.split_at(digits.len() - places);
            format!("{int}.{frac}")
        } else {
            format!("0.{}{digits}", "0".repeat(places - digits.len()))
        };
        if negative {
            format!("-{body}")
        } else {
            body
        }
    }
}

/// The exact order of two numbers as decimals, the way OPA compares its
/// decimal strings; an `f64` counts as the shortest decimal that prints it.
/// `None` when one is not finite.
pub(super) fn cmp_exact(lhs: &Number, rhs: &Number) -> Option<core::cmp::Ordering> {
    let a = to_decimal(lhs)?;
    let b = to_decimal(rhs)?;
    let exp = a.exp.min(b.exp);
    let scale = |d: &Decimal| &d.digits * BigInt::from(pow10((d.exp - exp).unsigned_abs()));
    Some(scale(&a).cmp(&scale(&b)))
}

/// The four operations OPA computes on `big.Float`s.
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    Add,
    Sub,
    Mul,
    Quo,
}

/// `lhs op rhs` as OPA computes it. `rhs` is not zero for [`Op::Quo`].
pub(super) fn compute(op: Op, lhs: &Number, rhs: &Number) -> Result<Number, &'static str> {
    let x = to_decimal(lhs).ok_or("non-finite operand")?;
    let y = to_decimal(rhs).ok_or("non-finite operand")?;
    // OPA adds, subtracts and multiplies integral operands (`2.0` among
    // them) exactly, as big integers; only division goes through floats.
    if let (Some(i), Some(j)) = (integer(&x), integer(&y)) {
        match op {
            Op::Add => return Ok(Number::from_bigint_owned(i + j)),
            Op::Sub => return Ok(Number::from_bigint_owned(i - j)),
            Op::Mul => {
                check_product_width(i.bits(), j.bits())?;
                return Ok(Number::from_bigint_owned(i * j));
            }
            Op::Quo => {}
        }
    }
    let a = round(decimal_ratio(&x));
    let b = round(decimal_ratio(&y));
    let exact = match op {
        Op::Add | Op::Sub => {
            let exp = a.exp.min(b.exp);
            let a_m = shl(&a.mant, a.exp - exp);
            let mut b_m = shl(&b.mant, b.exp - exp);
            if matches!(op, Op::Sub) {
                b_m = -b_m;
            }
            Ratio::dyadic(a_m + b_m, exp)
        }
        Op::Mul => Ratio::dyadic(&a.mant * &b.mant, a.exp + b.exp),
        Op::Quo => {
            if b.mant.is_zero() {
                return Err("division by zero");
            }
            let negative = a.mant.is_negative() != b.mant.is_negative();
            let num = a.mant.abs();
            let num = if negative { -num } else { num };
            Ratio {
                num,
                den: b.mant.magnitude().clone(),
                exp: a.exp - b.exp,
            }
        }
    };
    let result = round(exact);
    to_number(&shortest(&result))
}

/// `sum` (`Op::Add`) or `product` (`Op::Mul`) of `items` as OPA computes
/// them: exactly when every item is an integer; otherwise accumulated in one
/// Go `big.Float` without a decimal between steps. OPA's sum starts from a
/// zero of 64-bit precision; its product from `big.NewFloat(1)`, whose
/// precision is 53 bits, so a product of non-integers is rounded to 53.
pub(super) fn accumulate(op: Op, items: &[Number]) -> Result<Number, &'static str> {
    let decimals = items
        .iter()
        .map(to_decimal)
        .collect::<Option<alloc::vec::Vec<_>>>()
        .ok_or("non-finite operand")?;
    let integers: Option<alloc::vec::Vec<BigInt>> = decimals.iter().map(integer).collect();
    if let Some(integers) = integers {
        let exact = match op {
            Op::Mul => {
                let mut acc = BigInt::one();
                for i in integers {
                    check_product_width(acc.bits(), i.bits())?;
                    acc *= i;
                }
                acc
            }
            _ => integers.into_iter().fold(BigInt::zero(), |acc, i| acc + i),
        };
        return Ok(Number::from_bigint_owned(exact));
    }
    let (precision, mut acc) = match op {
        Op::Mul => (53, round_to(Ratio::dyadic(BigInt::one(), 0), 53)),
        _ => (PRECISION, round(Ratio::dyadic(BigInt::zero(), 0))),
    };
    for d in &decimals {
        let x = round(decimal_ratio(d));
        let exact = match op {
            Op::Mul => Ratio::dyadic(&acc.mant * &x.mant, acc.exp + x.exp),
            _ => {
                let exp = acc.exp.min(x.exp);
                Ratio::dyadic(shl(&acc.mant, acc.exp - exp) + shl(&x.mant, x.exp - exp), exp)
            }
        };
        acc = round_to(exact, precision);
    }
    to_number(&shortest(&acc))
}

/// `num / den * 2^exp`, exactly; `den > 0`.
struct Ratio {
    num: BigInt,
    den: BigUint,
    exp: i64,
}

impl Ratio {
    fn dyadic(num: BigInt, exp: i64) -> Ratio {
        Ratio {
            num,
            den: BigUint::one(),
            exp,
        }
    }
}

fn shl(value: &BigInt, bits: i64) -> BigInt {
    // `bits` is a difference of exponents of finite numbers: it fits.
    value << usize::try_from(bits).unwrap_or(0)
}

fn pow10(exp: u64) -> BigUint {
    BigUint::from(10u32).pow(u32::try_from(exp).unwrap_or(u32::MAX))
}

/// A number as a decimal: integers as they are, an `f64` as the shortest
/// decimal that prints it. `None` for a non-finite `f64`.
fn to_decimal(n: &Number) -> Option<Decimal> {
    let decimal = match n {
        Number::UInt(v) => Decimal {
            digits: BigInt::from(*v),
            exp: 0,
        },
        Number::Int(v) => Decimal {
            digits: BigInt::from(*v),
            exp: 0,
        },
        Number::BigInt(v) => Decimal {
            digits: (**v).clone(),
            exp: 0,
        },
        Number::Float(f) => {
            if !f.is_finite() {
                return None;
            }
            parse_shortest(*f)?
        }
        Number::Decimal(d) => (**d).clone(),
    };
    Some(decimal)
}

/// A non-integer literal that no `f64` prints as (`0.30000000000000000001`),
/// kept exactly as OPA keeps it. `None` for anything else (an integer, a
/// value an `f64` holds, or an exponent past ±400), which the caller parses
/// as before.
pub(super) fn exact_literal(text: &str) -> Option<Number> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac_len = i64::try_from(frac_part.len()).ok()?;
    let mut digits: BigInt = format!("{int_part}{frac_part}").parse().ok()?;
    let mut exp = exp.checked_sub(frac_len)?;
    let ten = BigInt::from(10u32);
    while !digits.is_zero() && (&digits % &ten).is_zero() {
        digits /= &ten;
        exp += 1;
    }
    if digits.is_zero() || !(-400..0).contains(&exp) {
        return None;
    }
    let decimal = Decimal {
        digits: if negative { -digits } else { digits },
        exp,
    };
    let f = decimal.to_f64();
    if !f.is_finite() || f == 0.0 || parse_shortest(f).as_ref() == Some(&decimal) {
        return None;
    }
    Some(Number::Decimal(Rc::new(decimal)))
}

/// The integer a decimal is, if it is one.
fn integer(d: &Decimal) -> Option<BigInt> {
    if d.exp >= 0 {
        return Some(&d.digits * BigInt::from(pow10(d.exp.unsigned_abs())));
    }
    let scale = BigInt::from(pow10(d.exp.unsigned_abs()));
    (&d.digits % &scale).is_zero().then(|| &d.digits / scale)
}

fn decimal_ratio(d: &Decimal) -> Ratio {
    if d.exp >= 0 {
        let scale = BigInt::from(pow10(d.exp.unsigned_abs()));
        Ratio::dyadic(&d.digits * scale, 0)
    } else {
        Ratio {
            num: d.digits.clone(),
            den: pow10(d.exp.unsigned_abs()),
            exp: 0,
        }
    }
}

/// The digits Rust prints for `f` (`{:e}`: the shortest that round-trip).
fn parse_shortest(f: f64) -> Option<Decimal> {
    let text = format!("{f:e}");
    let (mantissa, exp) = text.split_once('e')?;
    let exp: i64 = exp.parse().ok()?;
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: BigInt = format!("{int_part}{frac_part}").parse().ok()?;
    let frac_len = i64::try_from(frac_part.len()).ok()?;
    Some(Decimal {
        digits,
        exp: exp - frac_len,
    })
}

/// Rounds `r` to a 64-bit mantissa, ties to even, as Go's `big.Float`
/// does for every result at precision 64.
fn round(r: Ratio) -> Dyadic {
    round_to(r, PRECISION)
}

/// Rounds `r` to a mantissa of `precision` bits, ties to even.
fn round_to(r: Ratio, precision_bits: u64) -> Dyadic {
    if r.num.is_zero() {
        return Dyadic {
            mant: BigInt::zero(),
            exp: 0,
        };
    }
    let negative = r.num.is_negative();
    let num = r.num.magnitude().clone();
    let den = r.den;
    // Choose `shift` so that floor(num * 2^shift / den) is in [2^63, 2^64).
    let num_bits = i64::try_from(num.bits()).unwrap_or(i64::MAX);
    let den_bits = i64::try_from(den.bits()).unwrap_or(i64::MAX);
    let precision = i64::try_from(precision_bits).unwrap_or(64);
    let mut shift = precision - (num_bits - den_bits);
    let low = BigUint::one() << (precision_bits - 1);
    let high = BigUint::one() << precision_bits;
    let (mut q, mut rem, mut scaled_den);
    loop {
        let (n, d) = if shift >= 0 {
            (&num << usize::try_from(shift).unwrap_or(0), den.clone())
        } else {
            (num.clone(), &den << usize::try_from(-shift).unwrap_or(0))
        };
        q = &n / &d;
        rem = &n - &q * &d;
        scaled_den = d;
        if q >= high {
            shift -= 1;
        } else if q < low {
            shift += 1;
        } else {
            break;
        }
    }
    // Round to nearest, ties to even.
    let twice = &rem << 1usize;
    let round_up = match twice.cmp(&scaled_den) {
        core::cmp::Ordering::Greater => true,
        core::cmp::Ordering::Equal => q.bit(0),
        core::cmp::Ordering::Less => false,
    };
    let mut exp = r.exp - shift;
    if round_up {
        q += 1u32;
        if q == high {
            q = low;
            exp += 1;
        }
    }
    let mant = BigInt::from_biguint(if negative { Sign::Minus } else { Sign::Plus }, q);
    Dyadic { mant, exp }
}

/// The shortest decimal that rounds back to `v` at 64 bits, and of those
/// the nearest to `v` (Go's `roundShortest`). Go takes the interval
/// `v ± ½ ulp`, closed when the mantissa is even.
fn shortest(v: &Dyadic) -> Decimal {
    if v.mant.is_zero() {
        return Decimal {
            digits: BigInt::zero(),
            exp: 0,
        };
    }
    let negative = v.mant.is_negative();
    let mant = v.mant.magnitude().clone();
    let inclusive = !mant.bit(0);
    // v = num / den exactly; half an ulp = 2^(exp-1) = half_num / half_den.
    let (num, den) = if v.exp >= 0 {
        (&mant << usize::try_from(v.exp).unwrap_or(0), BigUint::one())
    } else {
        (mant.clone(), BigUint::one() << usize::try_from(-v.exp).unwrap_or(0))
    };
    let (half_num, half_den) = if v.exp >= 1 {
        (BigUint::one() << usize::try_from(v.exp - 1).unwrap_or(0), BigUint::one())
    } else {
        (BigUint::one(), BigUint::one() << usize::try_from(1 - v.exp).unwrap_or(0))
    };
    // The decimal exponent of v's leading digit.
    let lead = leading_exponent(&num, &den);
    let mut best = None;
    for k in 1..=40i64 {
        // Scale v to k significant digits: v * 10^(k-1-lead).
        let e10 = k - 1 - lead;
        let (sn, sd) = if e10 >= 0 {
            (&num * pow10(e10.unsigned_abs()), den.clone())
        } else {
            (num.clone(), &den * pow10(e10.unsigned_abs()))
        };
        let mut c = &sn / &sd;
        let rem = &sn - &c * &sd;
        let twice = &rem << 1usize;
        if twice > sd || (twice == sd && c.bit(0)) {
            c += 1u32;
        }
        // |c / 10^e10 - v| against half an ulp, in integers:
        // |c*sd - sn| / sd  vs  half * 10^e10 (scaled the same way).
        let c_sd = &c * &sd;
        let diff = if c_sd >= sn { &c_sd - &sn } else { &sn - &c_sd };
        // diff / sd <= half_num/half_den * (sn/num) ... compare exactly:
        // |c/10^e10 - num/den| = diff / (sd * 10^e10) when e10 >= 0, else diff * 10^-e10 / sd.
        let (lhs, rhs) = if e10 >= 0 {
            (
                &diff * &half_den,
                &half_num * &sd * pow10(e10.unsigned_abs()),
            )
        } else {
            (
                &diff * &half_den * pow10(e10.unsigned_abs()),
                &half_num * &sd,
            )
        };
        if lhs < rhs || (inclusive && lhs == rhs) {
            best = Some(Decimal {
                digits: BigInt::from_biguint(Sign::Plus, c),
                exp: -e10,
            });
            break;
        }
    }
    let mut d = best.unwrap_or_else(|| Decimal {
        // Unreachable: 20 digits always suffice for 64 bits.
        digits: BigInt::from_biguint(Sign::Plus, num / den),
        exp: 0,
    });
    // Drop trailing zeros, so an integer shows as one.
    let ten = BigInt::from(10u32);
    while !d.digits.is_zero() && (&d.digits % &ten).is_zero() {
        d.digits /= &ten;
        d.exp += 1;
    }
    if negative {
        d.digits = -d.digits;
    }
    d
}

/// `floor(log10(num / den))` for a positive ratio.
fn leading_exponent(num: &BigUint, den: &BigUint) -> i64 {
    // Estimate from bit lengths, then correct.
    let bits = i64::try_from(num.bits()).unwrap_or(0) - i64::try_from(den.bits()).unwrap_or(0);
    let mut e = (bits * 30103) / 100_000;
    loop {
        let ge_lower = if e >= 0 {
            *num >= den * pow10(e.unsigned_abs())
        } else {
            num * pow10(e.unsigned_abs()) >= *den
        };
        if !ge_lower {
            e -= 1;
            continue;
        }
        let upper = e + 1;
        let lt_upper = if upper >= 0 {
            *num < den * pow10(upper.unsigned_abs())
        } else {
            num * pow10(upper.unsigned_abs()) < *den
        };
        if !lt_upper {
            e += 1;
            continue;
        }
        return e;
    }
}

/// OPA's decimal as a regorus number: an integer exactly; a non-integer as
/// an `f64` when one prints as these digits, else as a [`Decimal`]. A
/// non-integer beyond `f64`'s range is an overflow, and one that `f64` can
/// only hold as zero an underflow: both are errors (OPA would go on).
fn to_number(d: &Decimal) -> Result<Number, &'static str> {
    if d.digits.is_zero() {
        return Ok(Number::UInt(0));
    }
    if d.exp >= 0 {
        let value = &d.digits * BigInt::from(pow10(d.exp.unsigned_abs()));
        return Ok(Number::from_bigint_owned(value));
    }
    let f = d.to_f64();
    if !f.is_finite() {
        return Err("overflow");
    }
    if f == 0.0 {
        return Err("underflow");
    }
    if parse_shortest(f).as_ref() == Some(d) {
        Ok(Number::Float(f))
    } else {
        Ok(Number::Decimal(Rc::new(d.clone())))
    }
}
