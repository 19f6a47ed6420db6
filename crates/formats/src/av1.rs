//! AV1 low-overhead bitstream helpers (AV1 spec §5.3, §4.10.3): walking the OBUs of a temporal unit or of an
//! `av1C` record's configOBUs, and an MSB-first bit reader for the uncompressed headers of AV1 (and VP9).
//! Shared by the snapshot decoder input and the WebRTC bridge so the parsing of untrusted bytes lives once.

/// `obu_type` of a sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// `obu_type` of a temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// The OBUs of a low-overhead bitstream as (type, whole OBU including its header); `None` when malformed (the
/// forbidden bit is set, or a size field is truncated or runs past the end). An OBU without a size field runs to
/// the end of `data`.
pub fn obus(data: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let start = pos;
        let header = data[pos];
        if header & 0x80 != 0 {
            return None;
        }
        pos += 1 + usize::from(header & 0x04 != 0);
        let end = if header & 0x02 != 0 {
            let (size, n) = leb128(data.get(pos..)?)?;
            pos += n;
            pos.checked_add(usize::try_from(size).ok()?)?
        } else {
            data.len()
        };
        if end > data.len() || pos > end {
            return None;
        }
        out.push(((header >> 3) & 0x0f, &data[start..end]));
        pos = end;
    }
    Some(out)
}

/// A `leb128()` value at the start of `data` and its length in bytes (at most 8, AV1 spec §4.10.5).
pub fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The payload of one whole OBU (after its header, extension and size field).
pub fn obu_payload(obu: &[u8]) -> Option<&[u8]> {
    let header = *obu.first()?;
    let mut pos = 1 + usize::from(header & 0x04 != 0);
    if header & 0x02 != 0 {
        pos += leb128(obu.get(pos..)?)?.1;
    }
    obu.get(pos..)
}

/// The first sequence header OBU (whole) of a temporal unit, if it has one and is well formed.
pub fn sequence_header(data: &[u8]) -> Option<&[u8]> {
    obus(data)?.into_iter().find(|(t, _)| *t == OBU_SEQUENCE_HEADER).map(|(_, o)| o)
}

/// An MSB-first bit reader; every read past the end is `None`.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader { data, pos: 0 }
    }

    /// The next `n` bits (at most 32) as an unsigned number, `f(n)` in the AV1 and VP9 specs.
    pub fn read(&mut self, n: u32) -> Option<u32> {
        if n > 32 {
            return None;
        }
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    /// A variable-length unsigned number, `uvlc()` in the AV1 spec (§4.10.3); `None` beyond 32 leading zeros.
    pub fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.read(1)? == 0 {
            zeros += 1;
            if zeros >= 32 {
                return None;
            }
        }
        Some(self.read(zeros)? + ((1u32 << zeros) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // libaom's sequence header for 320x240 4:2:0 8-bit (profile 0, level 2.0).
    const SEQ: &[u8] = &[0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40];

    #[test]
    fn walks_a_temporal_unit() {
        let mut tu = vec![0x12, 0x00]; // temporal delimiter
        tu.extend_from_slice(SEQ);
        tu.extend_from_slice(&[0x32, 0x03, 0x10, 0x20, 0x30]); // frame OBU
        let found = obus(&tu).expect("well formed");
        let types: Vec<u8> = found.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [OBU_TEMPORAL_DELIMITER, OBU_SEQUENCE_HEADER, 6]);
        assert_eq!(found[1].1, SEQ);
        assert_eq!(sequence_header(&tu), Some(SEQ));
        assert_eq!(obu_payload(SEQ), Some(&SEQ[2..]));
        // Without a size field the OBU runs to the end.
        assert_eq!(obus(&[0x30, 1, 2]).expect("ok"), [(6, &[0x30, 1, 2][..])]);
        assert_eq!(obus(&[]).expect("ok"), []);
    }

    #[test]
    fn malformed_obus_are_none() {
        assert!(obus(&[0x80]).is_none(), "forbidden bit");
        assert!(obus(&[0x0a, 0x05, 1]).is_none(), "size past the end");
        assert!(obus(&[0x0a, 0xff, 0xff]).is_none(), "truncated leb128");
        assert!(obus(&[0x0c]).is_none(), "extension byte missing");
        assert!(sequence_header(&[0x0a, 0xff, 0xff]).is_none());
        assert_eq!(leb128(&[0x80; 9]), None, "longer than 8 bytes");
        assert_eq!(leb128(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
    }

    #[test]
    fn reads_bits_msb_first() {
        let mut r = BitReader::new(&[0b1010_0000, 0xff]);
        assert_eq!(r.read(1), Some(1));
        assert_eq!(r.read(3), Some(0b010));
        assert_eq!(r.read(8), Some(0x0f));
        assert_eq!(r.read(4), Some(0x0f));
        assert_eq!(r.read(1), None, "past the end");
        assert_eq!(BitReader::new(&[0; 8]).read(33), None);
        // uvlc: "00101" = 2 leading zeros, then 01 -> 1 + 3 = 4.
        assert_eq!(BitReader::new(&[0b0010_1000]).uvlc(), Some(4));
        assert_eq!(BitReader::new(&[0; 8]).uvlc(), None);
    }
}
