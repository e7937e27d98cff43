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

/// The messages of one in-progress streamed transaction, spilled to an anonymous file as
/// `[wal_start u64][length u32][pgoutput bytes]` records in arrival order.
#[derive(Debug)]
pub struct StagedTransaction {
    pub(super) xid: u32,
    spill: Spill,
    pub(super) staged_messages: u64,
    pub(super) aborted_subtransactions: HashSet<u32>,
    pub(super) commit: Option<OpenTransaction>,
    pub(super) end_lsn: Lsn,
}

#[derive(Debug)]
enum Spill {
    Writing(BufWriter<File>),
    Reading(BufReader<File>),
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
            aborted_subtransactions: HashSet::new(),
            commit: None,
            end_lsn: 0,
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
        writer.write_all(&wal_start.to_be_bytes())?;
        writer.write_all(&length.to_be_bytes())?;
        writer.write_all(message)?;
        self.staged_messages += 1;
        Ok(())
    }

    pub(super) fn start_reading(&mut self) -> Result<(), AssembleError> {
        let spill = std::mem::replace(
            &mut self.spill,
            Spill::Writing(BufWriter::new(tempfile::tempfile()?)),
        );
        let mut file = match spill {
            Spill::Writing(writer) => writer.into_inner().map_err(|e| e.into_error())?,
            Spill::Reading(reader) => reader.into_inner(),
        };
        file.rewind()?;
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
        let mut header = [0u8; 12];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let wal_start = u64::from_be_bytes(header[..8].try_into().unwrap_or_default());
        let length = u32::from_be_bytes(header[8..].try_into().unwrap_or_default());
        buffer.resize(length as usize, 0);
        reader.read_exact(buffer)?;
        Ok(Some(wal_start))
    }
}
