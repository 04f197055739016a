//! Hostile-input guards shared by the AMF0 and AMF3 decoders: bounds-checked reads, the nesting
//! cap, and the reference table whose copies are charged against an expansion budget.
//!
//! Both formats let a byte or two on the wire (a reference) stand for a whole earlier value.
//! [`Value`] is an owned tree, so every reference becomes a copy; without a budget, a few hundred
//! bytes that reference a reference of a reference would ask for gigabytes. Every copy made into
//! or out of a [`RefTable`] is therefore charged to a per-decoder [`Budget`], and the depth of
//! the copied tree is checked, so a decoded value is never deeper than [`MAX_DEPTH`] even when
//! references splice earlier values into it.

use super::{AmfError, Value};

/// How many containers (objects, arrays, vectors of objects, dictionaries) may enclose a value.
/// Real RTMP commands nest two or three levels; 64 keeps recursion far from the stack limit.
pub(crate) const MAX_DEPTH: usize = 64;

/// How much (in approximate bytes of decoded [`Value`]s) one decoder may copy through its
/// reference tables over its lifetime (one message). Legitimate messages with references copy
/// far less; hostile ones hit this cap instead of exhausting memory.
pub(crate) const MAX_EXPANSION: usize = 32 << 20;

/// The most elements a decoder reserves up front for a declared count. Counts are hints from
/// the peer: larger collections still decode, the vector just grows as elements really arrive.
const PREALLOC_LIMIT: usize = 1024;

/// Takes exactly `n` bytes of a fixed-size field, or fails with `UnexpectedEof`.
pub(crate) fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], AmfError> {
    if input.len() < n {
        return Err(AmfError::UnexpectedEof);
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

/// Takes a peer-declared number of bytes: a length longer than what is left is `LengthTooLarge`
/// (not a short read), so nothing is ever allocated for it.
pub(crate) fn take_declared<'a>(input: &mut &'a [u8], n: u64) -> Result<&'a [u8], AmfError> {
    match usize::try_from(n) {
        Ok(len) if len <= input.len() => take(input, len),
        _ => Err(AmfError::LengthTooLarge(n)),
    }
}

/// Checks a declared element count against the input left, given that each element takes at
/// least `min_bytes` bytes, and returns how many elements to reserve room for.
pub(crate) fn check_count(input: &[u8], count: u64, min_bytes: u64) -> Result<usize, AmfError> {
    let needed = count.saturating_mul(min_bytes);
    if needed > input.len() as u64 {
        return Err(AmfError::LengthTooLarge(count));
    }
    // `count <= input.len()` here (min_bytes >= 1), so the conversion cannot fail.
    Ok(usize::try_from(count).map_or(PREALLOC_LIMIT, |c| c.min(PREALLOC_LIMIT)))
}

/// Reads one byte.
pub(crate) fn read_u8(input: &mut &[u8]) -> Result<u8, AmfError> {
    Ok(take(input, 1)?[0])
}

/// Reads `N` bytes as an array.
pub(crate) fn read_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], AmfError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(input, N)?);
    Ok(out)
}

/// Reads a big-endian u16.
pub(crate) fn read_u16(input: &mut &[u8]) -> Result<u16, AmfError> {
    read_array(input).map(u16::from_be_bytes)
}

/// Reads a big-endian u32.
pub(crate) fn read_u32(input: &mut &[u8]) -> Result<u32, AmfError> {
    read_array(input).map(u32::from_be_bytes)
}

/// Reads a big-endian IEEE 754 double.
pub(crate) fn read_f64(input: &mut &[u8]) -> Result<f64, AmfError> {
    read_array(input).map(f64::from_be_bytes)
}

/// Reads `len` declared bytes as a UTF-8 string.
pub(crate) fn read_utf8(input: &mut &[u8], len: u64) -> Result<String, AmfError> {
    let bytes = take_declared(input, len)?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| AmfError::InvalidUtf8)
}

/// Fails with `TooDeep` if a container at `level` (0 = top-level value) may not hold children.
/// Returns the level of those children.
pub(crate) fn enter(level: usize) -> Result<usize, AmfError> {
    if level >= MAX_DEPTH {
        return Err(AmfError::TooDeep);
    }
    Ok(level + 1)
}

/// What copying through references has cost a decoder so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Budget {
    spent: usize,
}

impl Budget {
    /// Spends `amount`, or fails once the total would pass [`MAX_EXPANSION`].
    pub(crate) fn charge(&mut self, amount: usize) -> Result<(), AmfError> {
        let total = self.spent.saturating_add(amount);
        if total > MAX_EXPANSION {
            return Err(AmfError::ExpansionTooLarge);
        }
        self.spent = total;
        Ok(())
    }
}

/// The approximate memory of a value (`weight`) and how many container levels it spans
/// (`height`: 0 for a scalar, 1 for a container of scalars...).
#[derive(Debug, Clone, Copy)]
struct Measure {
    weight: usize,
    height: usize,
}

/// Measures a value; the recursion is bounded because only decoded values, themselves capped
/// at [`MAX_DEPTH`], are measured.
fn measure(value: &Value) -> Measure {
    const NODE: usize = std::mem::size_of::<Value>();
    let leaf = |bytes: usize| Measure {
        weight: NODE + bytes,
        height: 0,
    };
    let children = |extra: usize, items: &mut dyn Iterator<Item = &Value>| {
        let mut m = Measure {
            weight: NODE + extra,
            height: 1,
        };
        for item in items {
            let c = measure(item);
            m.weight = m.weight.saturating_add(c.weight);
            m.height = m.height.max(c.height + 1);
        }
        m
    };
    let keys = |pairs: &[(String, Value)]| pairs.iter().map(|(k, _)| k.len() + 24).sum::<usize>();
    match value {
        Value::Number(_)
        | Value::Integer(_)
        | Value::Boolean(_)
        | Value::Null
        | Value::Undefined
        | Value::Unsupported
        | Value::Date { .. } => leaf(0),
        Value::String(s) | Value::XmlDocument(s) | Value::Xml(s) => leaf(s.len()),
        Value::ByteArray(b) => leaf(b.len()),
        Value::VectorInt(v, _) => leaf(v.len() * 4),
        Value::VectorUint(v, _) => leaf(v.len() * 4),
        Value::VectorDouble(v, _) => leaf(v.len() * 8),
        Value::Object {
            class_name,
            properties,
        } => children(
            class_name.as_ref().map_or(0, String::len) + keys(properties),
            &mut properties.iter().map(|(_, v)| v),
        ),
        Value::EcmaArray(pairs) => children(keys(pairs), &mut pairs.iter().map(|(_, v)| v)),
        Value::StrictArray(items) => children(0, &mut items.iter()),
        Value::MixedArray { associative, dense } => children(
            keys(associative),
            &mut associative.iter().map(|(_, v)| v).chain(dense.iter()),
        ),
        Value::VectorObject(name, items, _) => children(name.len(), &mut items.iter()),
        Value::Dictionary(pairs, _) => {
            children(0, &mut pairs.iter().flat_map(|(k, v)| [k, v].into_iter()))
        }
    }
}

/// A table of complex values that later references may copy: AMF0's object table and AMF3's
/// object table. A slot is reserved when a value starts (so indexes follow the order in which
/// values begin, as both specifications number them) and filled when it is complete.
#[derive(Debug, Default, Clone)]
pub(crate) struct RefTable {
    entries: Vec<Option<(Value, Measure)>>,
}

impl RefTable {
    /// Reserves the next index for a value that is starting to decode.
    pub(crate) fn reserve(&mut self) -> usize {
        self.entries.push(None);
        self.entries.len() - 1
    }

    /// Stores the completed value of slot `index`, charging its copy to `budget`.
    pub(crate) fn fill(
        &mut self,
        index: usize,
        value: &Value,
        budget: &mut Budget,
    ) -> Result<(), AmfError> {
        let m = measure(value);
        budget.charge(m.weight)?;
        if let Some(slot) = self.entries.get_mut(index) {
            *slot = Some((value.clone(), m));
        }
        Ok(())
    }

    /// A copy of the value at `index` for a reference found at `level`: `BadReference` if the
    /// slot does not exist or is still being decoded (a cycle), `TooDeep` if splicing it there
    /// would nest deeper than [`MAX_DEPTH`], `ExpansionTooLarge` if the budget is spent.
    pub(crate) fn get(
        &self,
        index: u32,
        level: usize,
        budget: &mut Budget,
    ) -> Result<Value, AmfError> {
        let (value, m) = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .and_then(Option::as_ref)
            .ok_or(AmfError::BadReference(index))?;
        if level + m.height > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        budget.charge(m.weight)?;
        Ok(value.clone())
    }
}
