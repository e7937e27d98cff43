//! Staging of streamed (in-progress) transactions: their pgoutput messages go to an anonymous
//! temporary file until the commit, so a transaction of any size costs a fixed buffer of memory,
//! and an aborted one is dropped without ever being decoded.

use std::{
    collections::HashSet,
    fs::File,
    io::{BufReader, BufWriter, Read, Seek, Write},
    path::PathBuf,
};

use pgoutput::copy::Lsn;

use super::{AssembleError, OpenTransaction};
use platform::avro::binary::long;

/// The messages of one in-progress streamed transaction, spilled to an anonymous file as
/// `[wal_start delta][length][pgoutput bytes]` records in arrival order. The delta from the
/// previous message's position and the length are Avro longs (zig-zag varints,
/// [`platform::avro::binary::long`]): two to four bytes of header instead of twelve, which for small
/// rows (a 17-byte insert) is the difference between 1.2× and 1.7× the pgoutput bytes on disk.
#[derive(Debug)]
pub struct StagedTransaction {
    pub(super) xid: u32,
    spill: Spill,
    pub(super) staged_messages: u64,
    /// Bytes written to the spill file: the pgoutput bytes plus each one's header.
    pub(super) staged_bytes: u64,
    /// The pgoutput bytes of the staged messages, as received.
    pub(super) pgoutput_bytes: u64,
    pub(super) aborted_subtransactions: HashSet<u32>,
    pub(super) commit: Option<OpenTransaction>,
    pub(super) end_lsn: Lsn,
    /// The position of the message staged (or replayed) last: positions are stored as deltas.
    previous_wal_start: Lsn,
    /// The header being written, kept to reuse its allocation.
    header: Vec<u8>,
    /// The message being replayed, kept to reuse its allocation.
    pub(super) replayed: Vec<u8>,
}

#[derive(Debug)]
enum Spill {
    Writing(BufWriter<File>),
    Reading(BufReader<File>),
    /// Only while switching from writing to reading.
    Switching,
}

const SPILL_BUFFER_BYTES: usize = 256 * 1024;

impl StagedTransaction {
    pub(super) fn new(xid: u32, directory: Option<&PathBuf>) -> std::io::Result<Self> {
        let file = match directory {
            Some(directory) => tempfile::tempfile_in(directory)?,
            None => tempfile::tempfile()?,
        };
        Ok(Self {
            xid,
            spill: Spill::Writing(BufWriter::with_capacity(SPILL_BUFFER_BYTES, file)),
            staged_messages: 0,
            staged_bytes: 0,
            pgoutput_bytes: 0,
            aborted_subtransactions: HashSet::new(),
            commit: None,
            end_lsn: 0,
            previous_wal_start: 0,
            header: Vec::with_capacity(2 * MAX_VARINT_BYTES),
            replayed: Vec::new(),
        })
    }

    pub(super) fn stage(&mut self, wal_start: Lsn, message: &[u8]) -> Result<(), AssembleError> {
        let Spill::Writing(writer) = &mut self.spill else {
            return Err(AssembleError::Unexpected(format!(
                "transaction {} changed after its commit",
                self.xid
            )));
        };
        let length = u32::try_from(message.len())
            .map_err(|_| AssembleError::Unexpected("a pgoutput message over 4 GiB".into()))?;
        self.header.clear();
        // The wrapping difference read as signed: small for small steps either way.
        long(
            &mut self.header,
            wal_start.wrapping_sub(self.previous_wal_start) as i64,
        );
        long(&mut self.header, i64::from(length));
        self.previous_wal_start = wal_start;
        writer.write_all(&self.header)?;
        writer.write_all(message)?;
        self.staged_messages += 1;
        self.staged_bytes += (self.header.len() + message.len()) as u64;
        self.pgoutput_bytes += u64::from(length);
        Ok(())
    }

    pub(super) fn start_reading(&mut self) -> Result<(), AssembleError> {
        let mut file = match std::mem::replace(&mut self.spill, Spill::Switching) {
            Spill::Writing(writer) => writer.into_inner().map_err(|e| e.into_error())?,
            Spill::Reading(reader) => reader.into_inner(),
            Spill::Switching => {
                return Err(AssembleError::Unexpected(
                    "a staged transaction lost its spill file".into(),
                ));
            }
        };
        file.rewind()?;
        self.previous_wal_start = 0;
        self.spill = Spill::Reading(BufReader::with_capacity(SPILL_BUFFER_BYTES, file));
        Ok(())
    }

    /// The next staged message, or None at the end.
    pub(super) fn next_staged(
        &mut self,
        buffer: &mut Vec<u8>,
    ) -> Result<Option<Lsn>, AssembleError> {
        let Spill::Reading(reader) = &mut self.spill else {
            return Err(AssembleError::Unexpected("replay before commit".into()));
        };
        let Some(delta) = read_long(reader, true)? else {
            return Ok(None);
        };
        let length = read_long(reader, false)?.unwrap_or_default();
        let length = usize::try_from(length)
            .map_err(|_| AssembleError::Unexpected("a staged record's length is corrupt".into()))?;
        let wal_start = self.previous_wal_start.wrapping_add(delta as u64);
        self.previous_wal_start = wal_start;
        buffer.resize(length, 0);
        reader.read_exact(buffer)?;
        Ok(Some(wal_start))
    }
}

const MAX_VARINT_BYTES: usize = 10;

/// Reads one Avro long (the inverse of [`long`]); `None` at a clean end of the file when
/// `end_allowed` (between records).
fn read_long(reader: &mut impl Read, end_allowed: bool) -> Result<Option<i64>, AssembleError> {
    let mut value = 0u64;
    for index in 0..MAX_VARINT_BYTES {
        let mut byte = [0u8];
        match reader.read_exact(&mut byte) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::UnexpectedEof && index == 0 && end_allowed =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * index);
        if byte[0] & 0x80 == 0 {
            return Ok(Some((value >> 1) as i64 ^ -((value & 1) as i64)));
        }
    }
    Err(AssembleError::Unexpected(
        "a staged record's header is corrupt".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_in_order_with_their_positions() {
        let mut staged = StagedTransaction::new(7, None).unwrap();
        // Positions go up in small and huge steps and, for safety, may even go back.
        let positions = [
            0x1_0000_0028,
            0x1_0000_0050,
            0x9_0000_0000,
            0x1_0000_0000,
            u64::MAX,
            0,
        ];
        for (i, &at) in positions.iter().enumerate() {
            staged.stage(at, &vec![i as u8; i * 100]).unwrap();
        }
        staged.start_reading().unwrap();
        let mut buffer = Vec::new();
        for (i, &at) in positions.iter().enumerate() {
            assert_eq!(staged.next_staged(&mut buffer).unwrap(), Some(at));
            assert_eq!(buffer, vec![i as u8; i * 100]);
        }
        assert_eq!(staged.next_staged(&mut buffer).unwrap(), None);
    }

    #[test]
    fn small_rows_take_at_most_one_and_a_half_times_their_pgoutput_bytes() {
        let mut staged = StagedTransaction::new(7, None).unwrap();
        // The smallest insert of one int4 column in a streamed transaction: 17 bytes, every
        // 40 bytes of WAL.
        for i in 0..10_000u64 {
            staged.stage(0x5_0000_0000 + 40 * i, &[0u8; 17]).unwrap();
        }
        assert_eq!(staged.pgoutput_bytes, 170_000);
        assert!(
            staged.staged_bytes * 2 <= staged.pgoutput_bytes * 3,
            "{} staged for {} pgoutput bytes",
            staged.staged_bytes,
            staged.pgoutput_bytes
        );
    }

    #[test]
    fn a_truncated_spill_file_is_an_error_not_a_short_transaction() {
        let mut header = Vec::new();
        long(&mut header, 300);
        assert_eq!(header.len(), 2);
        let mut whole = &header[..];
        assert_eq!(read_long(&mut whole, false).unwrap(), Some(300));
        let mut cut = &header[..1];
        assert!(read_long(&mut cut, true).is_err());
        let mut empty: &[u8] = &[];
        assert!(matches!(read_long(&mut empty, true), Ok(None)));
        assert!(read_long(&mut empty, false).is_err());
    }
}
