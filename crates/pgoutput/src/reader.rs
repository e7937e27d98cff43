//! Bounds-checked big-endian cursor shared by the framing and message decoders.
//!
//! Every read names the field it is reading so that a short buffer is reported
//! as "truncated relation column name at offset 17" rather than a bare
//! "unexpected end of input".

use crate::error::DecodeError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, position: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.position
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    pub(crate) fn bytes(
        &mut self,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let available = self.remaining();
        if len > available {
            return Err(DecodeError::Truncated {
                what,
                offset: self.position,
                needed: len,
                available,
            });
        }
        let slice = &self.buf[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    /// Everything after the cursor; used for payloads that run to the end.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let slice = &self.buf[self.position..];
        self.position = self.buf.len();
        slice
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.bytes(N, what)?;
        let mut array = [0u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// An Int32 byte count followed by that many bytes. PostgreSQL never sends
    /// a negative length here, so one means the stream is corrupt.
    pub(crate) fn length_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let length_offset = self.position;
        let length = self.i32(what)?;
        let length = usize::try_from(length).map_err(|_| DecodeError::InvalidField {
            what,
            offset: length_offset,
            detail: format!("negative length {length}"),
        })?;
        self.bytes(length, what)
    }

    /// A NUL-terminated UTF-8 string (the protocol's "String" type).
    pub(crate) fn cstring(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let start = self.position;
        let terminator = self.buf[start..].iter().position(|&byte| byte == 0).ok_or(
            DecodeError::UnterminatedString {
                what,
                offset: start,
            },
        )?;
        let text = std::str::from_utf8(&self.buf[start..start + terminator]).map_err(|_| {
            DecodeError::InvalidUtf8 {
                what,
                offset: start,
            }
        })?;
        self.position = start + terminator + 1;
        Ok(text.to_owned())
    }

    /// Rejects leftovers: a message longer than its layout means we are out of
    /// step with the sender, and silently ignoring it would hide that.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                what,
                offset: self.position,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_integers() {
        let mut reader = Reader::new(&[0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFE]);
        assert_eq!(reader.u16("a").unwrap(), 0x0102);
        assert_eq!(reader.i32("b").unwrap(), -2);
        reader.finish("c").unwrap();
    }

    #[test]
    fn short_read_reports_field_and_offset() {
        let mut reader = Reader::new(&[0, 0, 0]);
        reader.u8("tag").unwrap();
        let error = reader.u32("relation id").unwrap_err();
        assert_eq!(
            error,
            DecodeError::Truncated {
                what: "relation id",
                offset: 1,
                needed: 4,
                available: 2
            }
        );
    }

    #[test]
    fn cstring_requires_terminator_and_utf8() {
        assert_eq!(
            Reader::new(b"abc").cstring("name").unwrap_err(),
            DecodeError::UnterminatedString {
                what: "name",
                offset: 0
            }
        );
        assert_eq!(
            Reader::new(b"\xff\0").cstring("name").unwrap_err(),
            DecodeError::InvalidUtf8 {
                what: "name",
                offset: 0
            }
        );
        let mut reader = Reader::new(b"public\0x");
        assert_eq!(reader.cstring("name").unwrap(), "public");
        assert_eq!(reader.offset(), 7);
    }

    #[test]
    fn negative_length_prefix_is_rejected() {
        let error = Reader::new(&(-1i32).to_be_bytes())
            .length_prefixed("content")
            .unwrap_err();
        assert!(matches!(error, DecodeError::InvalidField { offset: 0, .. }));
    }

    #[test]
    fn huge_length_prefix_is_truncation_not_allocation() {
        let error = Reader::new(&i32::MAX.to_be_bytes())
            .length_prefixed("content")
            .unwrap_err();
        assert!(
            matches!(error, DecodeError::Truncated { needed, .. } if needed == i32::MAX as usize)
        );
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let reader = Reader::new(&[1, 2]);
        assert_eq!(
            reader.finish("commit").unwrap_err(),
            DecodeError::TrailingBytes {
                what: "commit",
                offset: 0,
                count: 2
            }
        );
    }
}
