//! AMF0 (Action Message Format 0) values: decoding and encoding.
//!
//! AMF0 carries RTMP commands (`connect`, `publish`, `onStatus`, …) and FLV/RTMP script data (`onMetaData`).
//! The decoder is tolerant the way real servers have to be: ECMA array counts are ignored (encoders lie about
//! them), a missing object end marker at the end of the input ends the object, invalid UTF-8 is replaced, and
//! a few legacy markers are mapped onto the closest value. References and the AMF3 switch are refused with an
//! error. Nesting is limited to [`MAX_DEPTH`] so hostile input cannot overflow the stack.

use thiserror::Error;

/// Deepest nesting of objects/arrays the decoder accepts.
pub const MAX_DEPTH: usize = 64;

/// AMF0 type markers.
pub mod marker {
    /// IEEE-754 double.
    pub const NUMBER: u8 = 0x00;
    /// One byte, non-zero is true.
    pub const BOOLEAN: u8 = 0x01;
    /// UTF-8 string with a 16-bit length.
    pub const STRING: u8 = 0x02;
    /// Anonymous object: key/value pairs until the end marker.
    pub const OBJECT: u8 = 0x03;
    /// Reserved, never sent.
    pub const MOVIECLIP: u8 = 0x04;
    /// Null.
    pub const NULL: u8 = 0x05;
    /// Undefined.
    pub const UNDEFINED: u8 = 0x06;
    /// Reference to an earlier complex value (not supported).
    pub const REFERENCE: u8 = 0x07;
    /// Associative array: a 32-bit count hint, then key/value pairs until the end marker.
    pub const ECMA_ARRAY: u8 = 0x08;
    /// Object end marker, preceded by an empty key.
    pub const OBJECT_END: u8 = 0x09;
    /// Dense array: a 32-bit count, then values.
    pub const STRICT_ARRAY: u8 = 0x0A;
    /// Milliseconds since the epoch as a double, then a 16-bit time zone.
    pub const DATE: u8 = 0x0B;
    /// UTF-8 string with a 32-bit length.
    pub const LONG_STRING: u8 = 0x0C;
    /// Unsupported value (decoded as undefined).
    pub const UNSUPPORTED: u8 = 0x0D;
    /// Reserved record set (not supported).
    pub const RECORDSET: u8 = 0x0E;
    /// XML document as a long string.
    pub const XML_DOCUMENT: u8 = 0x0F;
    /// Object with a class name (decoded as an object).
    pub const TYPED_OBJECT: u8 = 0x10;
    /// Switch to AMF3 (not supported).
    pub const AVMPLUS: u8 = 0x11;
}

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// A number (always a double in AMF0).
    Number(f64),
    /// A boolean.
    Boolean(bool),
    /// A string; encoded as a long string automatically when longer than 65535 bytes.
    String(String),
    /// An anonymous object with its properties in wire order.
    Object(Vec<(String, Amf0Value)>),
    /// Null.
    Null,
    /// Undefined.
    Undefined,
    /// An associative (ECMA) array with its properties in wire order.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// A dense array.
    StrictArray(Vec<Amf0Value>),
    /// A date: milliseconds since the epoch and a time zone offset (ignored by most peers).
    Date(f64, i16),
    /// A string with a 32-bit length.
    LongString(String),
}

impl Amf0Value {
    /// The string contents of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an `Object` or `EcmaArray`.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// The first property named `key` of an `Object` or `EcmaArray`.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether this is `Null` or `Undefined`.
    pub fn is_null(&self) -> bool {
        matches!(self, Amf0Value::Null | Amf0Value::Undefined)
    }

    /// Builds an `Object` from `(key, value)` pairs.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Amf0Value)>) -> Self {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Builds a `String` value.
    pub fn string(s: impl Into<String>) -> Self {
        Amf0Value::String(s.into())
    }
}

/// Why AMF0 decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Amf0Error {
    /// The input ended in the middle of a value.
    #[error("AMF0 input ended in the middle of a value")]
    UnexpectedEof,
    /// A type marker this decoder does not support (reference, AMF3 switch, record set, unknown).
    #[error("unsupported AMF0 type marker 0x{0:02x}")]
    UnsupportedMarker(u8),
    /// An object end marker appeared where a value was expected.
    #[error("unexpected AMF0 object end marker")]
    UnexpectedObjectEnd,
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 values nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Decodes one value from the front of `buf` and advances `buf` past it.
pub fn decode(buf: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    decode_value(buf, 0)
}

/// Decodes every value in `buf` (e.g. a command: name, transaction id, command object, arguments…).
pub fn decode_all(buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut rest = buf;
    let mut values = Vec::new();
    while !rest.is_empty() {
        values.push(decode(&mut rest)?);
    }
    Ok(values)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Amf0Error> {
    if buf.len() < n {
        return Err(Amf0Error::UnexpectedEof);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn take_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], Amf0Error> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(buf, N)?);
    Ok(out)
}

fn read_u8(buf: &mut &[u8]) -> Result<u8, Amf0Error> {
    Ok(take_array::<1>(buf)?[0])
}

fn read_u16(buf: &mut &[u8]) -> Result<u16, Amf0Error> {
    Ok(u16::from_be_bytes(take_array(buf)?))
}

fn read_u32(buf: &mut &[u8]) -> Result<u32, Amf0Error> {
    Ok(u32::from_be_bytes(take_array(buf)?))
}

fn read_f64(buf: &mut &[u8]) -> Result<f64, Amf0Error> {
    Ok(f64::from_be_bytes(take_array(buf)?))
}

fn read_string(buf: &mut &[u8], len: usize) -> Result<String, Amf0Error> {
    let bytes = take(buf, len)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn read_short_string(buf: &mut &[u8]) -> Result<String, Amf0Error> {
    let len = read_u16(buf)? as usize;
    read_string(buf, len)
}

fn decode_value(buf: &mut &[u8], depth: usize) -> Result<Amf0Value, Amf0Error> {
    let m = read_u8(buf)?;
    match m {
        marker::NUMBER => Ok(Amf0Value::Number(read_f64(buf)?)),
        marker::BOOLEAN => Ok(Amf0Value::Boolean(read_u8(buf)? != 0)),
        marker::STRING => Ok(Amf0Value::String(read_short_string(buf)?)),
        marker::OBJECT => Ok(Amf0Value::Object(decode_properties(buf, depth)?)),
        marker::NULL => Ok(Amf0Value::Null),
        marker::UNDEFINED | marker::UNSUPPORTED => Ok(Amf0Value::Undefined),
        marker::ECMA_ARRAY => {
            // The count is only a hint that encoders routinely get wrong: read until the end marker.
            let _count = read_u32(buf)?;
            Ok(Amf0Value::EcmaArray(decode_properties(buf, depth)?))
        }
        marker::OBJECT_END => Err(Amf0Error::UnexpectedObjectEnd),
        marker::STRICT_ARRAY => {
            let count = read_u32(buf)? as usize;
            let nested = depth + 1;
            if nested > MAX_DEPTH {
                return Err(Amf0Error::TooDeep);
            }
            // Every value takes at least one byte: never trust the count for the allocation.
            let mut items = Vec::with_capacity(count.min(buf.len()));
            for _ in 0..count {
                items.push(decode_value(buf, nested)?);
            }
            Ok(Amf0Value::StrictArray(items))
        }
        marker::DATE => {
            let ms = read_f64(buf)?;
            let tz = i16::from_be_bytes(take_array(buf)?);
            Ok(Amf0Value::Date(ms, tz))
        }
        marker::LONG_STRING | marker::XML_DOCUMENT => {
            let len = read_u32(buf)? as usize;
            Ok(Amf0Value::LongString(read_string(buf, len)?))
        }
        marker::TYPED_OBJECT => {
            let _class_name = read_short_string(buf)?;
            Ok(Amf0Value::Object(decode_properties(buf, depth)?))
        }
        other => Err(Amf0Error::UnsupportedMarker(other)),
    }
}

/// Reads `key, value` pairs until an empty key followed by the end marker (or the end of the input).
fn decode_properties(buf: &mut &[u8], depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
    let nested = depth + 1;
    if nested > MAX_DEPTH {
        return Err(Amf0Error::TooDeep);
    }
    let mut props = Vec::new();
    loop {
        if buf.is_empty() {
            // Truncated before the end marker: keep what we have (common in onMetaData from old encoders).
            return Ok(props);
        }
        if buf.len() < 2 {
            // A bare end marker without its empty key, as a few old encoders end their metadata.
            if *buf == [marker::OBJECT_END] {
                *buf = &[];
                return Ok(props);
            }
            return Err(Amf0Error::UnexpectedEof);
        }
        let key = read_short_string(buf)?;
        if key.is_empty() {
            match buf.first() {
                Some(&marker::OBJECT_END) => {
                    *buf = buf.get(1..).unwrap_or_default();
                    return Ok(props);
                }
                None => return Ok(props),
                Some(_) => {}
            }
        }
        let value = decode_value(buf, nested)?;
        props.push((key, value));
    }
}

/// Appends the encoding of `v` to `out`.
pub fn encode(v: &Amf0Value, out: &mut Vec<u8>) {
    match v {
        Amf0Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => {
            out.push(marker::BOOLEAN);
            out.push(u8::from(*b));
        }
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(marker::STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => encode_long_string(s, out),
        },
        Amf0Value::Object(props) => {
            out.push(marker::OBJECT);
            encode_properties(props, out);
        }
        Amf0Value::Null => out.push(marker::NULL),
        Amf0Value::Undefined => out.push(marker::UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            out.extend_from_slice(&saturating_u32(props.len()).to_be_bytes());
            encode_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            out.extend_from_slice(&saturating_u32(items.len()).to_be_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Amf0Value::Date(ms, tz) => {
            out.push(marker::DATE);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&tz.to_be_bytes());
        }
        Amf0Value::LongString(s) => encode_long_string(s, out),
    }
}

/// Appends the encoding of every value in `values` to `out`.
pub fn encode_all(values: &[Amf0Value], out: &mut Vec<u8>) {
    for v in values {
        encode(v, out);
    }
}

/// Encodes `v` into a new buffer.
pub fn to_vec(v: &Amf0Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn encode_long_string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let bytes = bytes.get(..u32::MAX as usize).unwrap_or(bytes);
    out.push(marker::LONG_STRING);
    out.extend_from_slice(&saturating_u32(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode_properties(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (key, value) in props {
        // Keys have a 16-bit length; a longer key is cut (it can only come from our own code).
        let key = key.as_bytes();
        let key = key.get(..u16::MAX as usize).unwrap_or(key);
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        encode(value, out);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Amf0Value) {
        let bytes = to_vec(&v);
        let mut slice = bytes.as_slice();
        assert_eq!(decode(&mut slice).unwrap(), v);
        assert!(slice.is_empty());
    }

    #[test]
    fn roundtrips_every_type() {
        roundtrip(Amf0Value::Number(1.5));
        roundtrip(Amf0Value::Boolean(true));
        roundtrip(Amf0Value::Boolean(false));
        roundtrip(Amf0Value::string("connect"));
        roundtrip(Amf0Value::Null);
        roundtrip(Amf0Value::Undefined);
        roundtrip(Amf0Value::Date(1.7e12, 0));
        roundtrip(Amf0Value::LongString("long".into()));
        roundtrip(Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), Amf0Value::Null]));
        roundtrip(Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("nested", Amf0Value::object([("x", Amf0Value::Boolean(true))])),
        ]));
        roundtrip(Amf0Value::EcmaArray(vec![
            ("duration".into(), Amf0Value::Number(0.0)),
            ("encoder".into(), Amf0Value::string("obs")),
        ]));
    }

    #[test]
    fn long_string_value_switches_marker() {
        let s = "x".repeat(70_000);
        let bytes = to_vec(&Amf0Value::String(s.clone()));
        assert_eq!(bytes[0], marker::LONG_STRING);
        assert_eq!(decode(&mut bytes.as_slice()).unwrap(), Amf0Value::LongString(s));
    }

    #[test]
    fn decodes_known_connect_command() {
        let mut bytes = Vec::new();
        encode_all(
            &[
                Amf0Value::string("connect"),
                Amf0Value::Number(1.0),
                Amf0Value::object([("app", Amf0Value::string("live")), ("tcUrl", Amf0Value::string("rtmp://h/live"))]),
            ],
            &mut bytes,
        );
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        assert_eq!(values[2].get("tcUrl").and_then(Amf0Value::as_str), Some("rtmp://h/live"));
        assert_eq!(values[2].get("missing"), None);
    }

    #[test]
    fn ecma_array_count_is_ignored() {
        // Claims 100 entries, has 1.
        let mut bytes = vec![marker::ECMA_ARRAY, 0, 0, 0, 100, 0, 1, b'a'];
        encode(&Amf0Value::Number(2.0), &mut bytes);
        bytes.extend_from_slice(&[0, 0, 9]);
        let v = decode(&mut bytes.as_slice()).unwrap();
        assert_eq!(v.get("a").and_then(Amf0Value::as_f64), Some(2.0));
    }

    #[test]
    fn missing_end_marker_at_eof_is_tolerated() {
        let mut bytes = vec![marker::OBJECT, 0, 1, b'a'];
        encode(&Amf0Value::Boolean(true), &mut bytes);
        let v = decode(&mut bytes.as_slice()).unwrap();
        assert_eq!(v.get("a"), Some(&Amf0Value::Boolean(true)));
        // Bare end marker at the end of the input.
        let bytes = [marker::ECMA_ARRAY, 0, 0, 0, 0, marker::OBJECT_END];
        assert_eq!(decode(&mut bytes.as_slice()).unwrap(), Amf0Value::EcmaArray(vec![]));
        // Empty key with nothing after it.
        let bytes = [marker::OBJECT, 0, 0];
        assert_eq!(decode(&mut bytes.as_slice()).unwrap(), Amf0Value::Object(vec![]));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let bytes = [marker::STRING, 0, 2, 0xff, b'a'];
        assert_eq!(decode(&mut bytes.as_slice()).unwrap().as_str(), Some("\u{fffd}a"));
    }

    #[test]
    fn unsupported_and_truncated_inputs_error() {
        assert_eq!(decode(&mut [marker::REFERENCE, 0, 0].as_slice()), Err(Amf0Error::UnsupportedMarker(7)));
        assert_eq!(decode(&mut [marker::AVMPLUS].as_slice()), Err(Amf0Error::UnsupportedMarker(0x11)));
        assert_eq!(decode(&mut [0x42].as_slice()), Err(Amf0Error::UnsupportedMarker(0x42)));
        assert_eq!(decode(&mut [marker::NUMBER, 0].as_slice()), Err(Amf0Error::UnexpectedEof));
        assert_eq!(decode(&mut [marker::STRING, 0, 5, b'a'].as_slice()), Err(Amf0Error::UnexpectedEof));
        assert_eq!(decode(&mut [marker::OBJECT_END].as_slice()), Err(Amf0Error::UnexpectedObjectEnd));
        assert_eq!(decode(&mut [].as_slice()), Err(Amf0Error::UnexpectedEof));
        assert_eq!(decode(&mut [marker::OBJECT, 0].as_slice()), Err(Amf0Error::UnexpectedEof));
    }

    #[test]
    fn huge_strict_array_count_does_not_allocate() {
        let bytes = [marker::STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, marker::NULL];
        assert_eq!(decode(&mut bytes.as_slice()), Err(Amf0Error::UnexpectedEof));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = Vec::new();
        for _ in 0..10_000 {
            bytes.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        bytes.push(marker::NULL);
        assert_eq!(decode(&mut bytes.as_slice()), Err(Amf0Error::TooDeep));
        let mut bytes = Vec::new();
        for _ in 0..10_000 {
            bytes.extend_from_slice(&[marker::OBJECT, 0, 1, b'k']);
        }
        assert_eq!(decode(&mut bytes.as_slice()), Err(Amf0Error::TooDeep));
        // Exactly MAX_DEPTH levels is fine.
        let mut bytes = Vec::new();
        for _ in 0..MAX_DEPTH {
            bytes.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        bytes.push(marker::NULL);
        assert!(decode(&mut bytes.as_slice()).is_ok());
    }

    #[test]
    fn legacy_markers_map_to_values() {
        let bytes = [marker::UNSUPPORTED];
        assert_eq!(decode(&mut bytes.as_slice()).unwrap(), Amf0Value::Undefined);
        let bytes = [marker::XML_DOCUMENT, 0, 0, 0, 1, b'x'];
        assert_eq!(decode(&mut bytes.as_slice()).unwrap(), Amf0Value::LongString("x".into()));
        let bytes = [marker::TYPED_OBJECT, 0, 1, b'C', 0, 0, 9];
        assert_eq!(decode(&mut bytes.as_slice()).unwrap(), Amf0Value::Object(vec![]));
    }

    #[test]
    fn empty_key_with_value_is_kept() {
        let mut bytes = vec![marker::OBJECT, 0, 0];
        encode(&Amf0Value::Number(1.0), &mut bytes);
        bytes.extend_from_slice(&[0, 0, 9]);
        let v = decode(&mut bytes.as_slice()).unwrap();
        assert_eq!(v.properties().map(<[_]>::len), Some(1));
    }

    #[test]
    fn decode_advances_the_slice() {
        let mut bytes = to_vec(&Amf0Value::string("@setDataFrame"));
        bytes.extend(to_vec(&Amf0Value::string("onMetaData")));
        let mut rest = bytes.as_slice();
        decode(&mut rest).unwrap();
        assert_eq!(rest.len(), 13);
    }
}
