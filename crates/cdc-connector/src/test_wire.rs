//! pgoutput messages built byte by byte, as the server sends them, for unit tests: a
//! `public.bookings (booking_id int8 key, status text)` relation and its changes.

pub const BOOKINGS: u32 = 16_400;
pub const INT8: u32 = 20;
pub const TEXT: u32 = 25;

/// Builds pgoutput messages byte by byte, as the server sends them.
pub struct Wire(pub Vec<u8>);

impl Wire {
    pub fn new(tag: u8, stream_xid: Option<u32>) -> Self {
        let mut wire = Self(vec![tag]);
        if let Some(xid) = stream_xid {
            wire = wire.u32(xid);
        }
        wire
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn cstr(mut self, v: &str) -> Self {
        self.0.extend(v.as_bytes());
        self.0.push(0);
        self
    }
    pub fn tuple(self, id: &str, status: Option<&str>) -> Self {
        let wire = self.u16(2).u8(b't').u32(id.len() as u32);
        let mut wire = Self([wire.0, id.as_bytes().to_vec()].concat());
        match status {
            Some(status) => {
                wire = wire.u8(b't').u32(status.len() as u32);
                Self([wire.0, status.as_bytes().to_vec()].concat())
            }
            None => wire.u8(b'n'),
        }
    }
}

pub fn relation(stream_xid: Option<u32>) -> Vec<u8> {
    Wire::new(b'R', stream_xid)
        .u32(BOOKINGS)
        .cstr("public")
        .cstr("bookings")
        .u8(b'd')
        .u16(2)
        .u8(1)
        .cstr("booking_id")
        .u32(INT8)
        .u32(u32::MAX)
        .u8(0)
        .cstr("status")
        .u32(TEXT)
        .u32(u32::MAX)
        .0
}
pub fn begin(final_lsn: u64, xid: u32) -> Vec<u8> {
    Wire::new(b'B', None).u64(final_lsn).u64(0).u32(xid).0
}
pub fn commit(commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
    Wire::new(b'C', None)
        .u8(0)
        .u64(commit_lsn)
        .u64(end_lsn)
        .u64(0)
        .0
}
pub fn insert(stream_xid: Option<u32>, id: &str) -> Vec<u8> {
    Wire::new(b'I', stream_xid)
        .u32(BOOKINGS)
        .u8(b'N')
        .tuple(id, Some("pending"))
        .0
}
pub fn update(id: &str, status: &str) -> Vec<u8> {
    Wire::new(b'U', None)
        .u32(BOOKINGS)
        .u8(b'N')
        .tuple(id, Some(status))
        .0
}
pub fn delete_by_key(id: &str) -> Vec<u8> {
    Wire::new(b'D', None)
        .u32(BOOKINGS)
        .u8(b'K')
        .tuple(id, None)
        .0
}
pub fn truncate() -> Vec<u8> {
    Wire::new(b'T', None).u32(1).u8(0).u32(BOOKINGS).0
}
pub fn message(stream_xid: Option<u32>, transactional: bool, lsn: u64, prefix: &str) -> Vec<u8> {
    Wire::new(b'M', stream_xid)
        .u8(u8::from(transactional))
        .u64(lsn)
        .cstr(prefix)
        .u32(2)
        .u8(b'h')
        .u8(b'i')
        .0
}
pub fn stream_start(xid: u32) -> Vec<u8> {
    Wire::new(b'S', None).u32(xid).u8(1).0
}
pub fn stream_stop() -> Vec<u8> {
    vec![b'E']
}
pub fn stream_commit(xid: u32, commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
    Wire::new(b'c', None)
        .u32(xid)
        .u8(0)
        .u64(commit_lsn)
        .u64(end_lsn)
        .u64(0)
        .0
}
pub fn stream_abort(xid: u32, subxid: u32) -> Vec<u8> {
    Wire::new(b'A', None).u32(xid).u32(subxid).0
}

/// A message with any content (e.g. a signal).
pub fn message_with(transactional: bool, lsn: u64, prefix: &str, content: &[u8]) -> Vec<u8> {
    let mut wire = Wire::new(b'M', None)
        .u8(u8::from(transactional))
        .u64(lsn)
        .cstr(prefix)
        .u32(content.len() as u32);
    wire.0.extend_from_slice(content);
    wire.0
}

/// An XLogData CopyData payload carrying `data` at `wal_start`.
pub fn xlog(wal_start: u64, data: Vec<u8>) -> Vec<u8> {
    Wire::new(b'w', None)
        .u64(wal_start)
        .u64(wal_start)
        .u64(0)
        .0
        .into_iter()
        .chain(data)
        .collect()
}

/// A primary keepalive CopyData payload.
pub fn keepalive(wal_end: u64, reply_requested: bool) -> Vec<u8> {
    Wire::new(b'k', None)
        .u64(wal_end)
        .u64(0)
        .u8(u8::from(reply_requested))
        .0
}

/// The (write, flush) positions of a standby status update.
pub fn status_positions(update: &[u8]) -> (u64, u64) {
    assert_eq!(update[0], b'r', "a standby status update");
    let position = |at: usize| u64::from_be_bytes(update[at..at + 8].try_into().unwrap());
    (position(1), position(9))
}
