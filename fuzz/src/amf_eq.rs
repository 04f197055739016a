//! Structural equality of [`Value`]s in which a number equals itself bit for bit, so NaN
//! round-trips compare equal (`PartialEq` on `f64` says NaN != NaN).

use siprtmp_core::amf::Value;

fn num(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn pairs(a: &[(String, Value)], b: &[(String, Value)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && same(&x.1, &y.1))
}

fn list(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

/// Whether `a` and `b` are the same value (numbers compared by bits, NaNs equal).
pub fn same(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (Number(x), Number(y)) => num(*x, *y),
        (
            Object {
                class_name: c1,
                properties: p1,
            },
            Object {
                class_name: c2,
                properties: p2,
            },
        ) => c1 == c2 && pairs(p1, p2),
        (EcmaArray(x), EcmaArray(y)) => pairs(x, y),
        (StrictArray(x), StrictArray(y)) => list(x, y),
        (
            MixedArray {
                associative: a1,
                dense: d1,
            },
            MixedArray {
                associative: a2,
                dense: d2,
            },
        ) => pairs(a1, a2) && list(d1, d2),
        (
            Date {
                millis: m1,
                timezone: t1,
            },
            Date {
                millis: m2,
                timezone: t2,
            },
        ) => num(*m1, *m2) && t1 == t2,
        (VectorDouble(x, f1), VectorDouble(y, f2)) => {
            f1 == f2 && x.len() == y.len() && x.iter().zip(y).all(|(p, q)| num(*p, *q))
        }
        (VectorObject(n1, x, f1), VectorObject(n2, y, f2)) => n1 == n2 && f1 == f2 && list(x, y),
        (Dictionary(x, w1), Dictionary(y, w2)) => {
            w1 == w2
                && x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| same(&p.0, &q.0) && same(&p.1, &q.1))
        }
        _ => a == b,
    }
}

/// [`same`] over two sequences.
pub fn same_all(a: &[Value], b: &[Value]) -> bool {
    list(a, b)
}
