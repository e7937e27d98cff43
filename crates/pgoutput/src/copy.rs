//! Streaming replication protocol messages carried inside CopyData
//! (`START_REPLICATION ... LOGICAL`), plus LSN and timestamp helpers.
//!
//! Server to client: XLogData (`'w'`) and Primary keepalive (`'k'`).
//! Client to server: Standby status update (`'r'`).

use crate::error::DecodeError;
use crate::reader::Reader;

/// A WAL location (XLogRecPtr).
pub type Lsn = u64;

/// Microseconds from the Unix epoch (1970-01-01) to the PostgreSQL epoch
/// (2000-01-01), in which the protocol expresses every timestamp.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

const XLOG_DATA_TAG: u8 = b'w';
const PRIMARY_KEEPALIVE_TAG: u8 = b'k';
const STANDBY_STATUS_UPDATE_TAG: u8 = b'r';
const STANDBY_STATUS_UPDATE_LEN: usize = 1 + 8 * 4 + 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage<'a> {
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        /// Microseconds since 2000-01-01.
        send_time: i64,
        /// One pgoutput message; decode with [`crate::message::decode_message`].
        data: &'a [u8],
    },
    PrimaryKeepalive {
        wal_end: Lsn,
        /// Microseconds since 2000-01-01.
        send_time: i64,
        /// The server disconnects us if we do not answer this soon.
        reply_requested: bool,
    },
}

/// Decodes the payload of one CopyData message received during replication.
pub fn decode_copy_data(buf: &[u8]) -> Result<ReplicationMessage<'_>, DecodeError> {
    let mut reader = Reader::new(buf);
    let tag = reader
        .u8("replication message tag")
        .map_err(|_| DecodeError::Empty {
            what: "CopyData replication message",
        })?;
    match tag {
        XLOG_DATA_TAG => {
            let wal_start = reader.u64("XLogData WAL start")?;
            let wal_end = reader.u64("XLogData WAL end")?;
            let send_time = reader.i64("XLogData send time")?;
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                send_time,
                data: reader.rest(),
            })
        }
        PRIMARY_KEEPALIVE_TAG => {
            let wal_end = reader.u64("keepalive WAL end")?;
            let send_time = reader.i64("keepalive send time")?;
            let reply_requested = reader.u8("keepalive reply flag")? != 0;
            reader.finish("primary keepalive")?;
            Ok(ReplicationMessage::PrimaryKeepalive {
                wal_end,
                send_time,
                reply_requested,
            })
        }
        other => Err(DecodeError::unknown_tag("replication message", other, 0)),
    }
}

/// A standby status update as sent by the client; see
/// [`encode_standby_status_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    pub write: Lsn,
    pub flush: Lsn,
    pub apply: Lsn,
    /// Microseconds since 2000-01-01.
    pub client_time_pg_micros: i64,
    pub reply_requested: bool,
}

/// Builds the `'r'` message body to send inside CopyData. `flush` is what
/// lets the server recycle WAL and advance the slot's confirmed_flush_lsn.
pub fn encode_standby_status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    client_time_pg_micros: i64,
    reply_requested: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(STANDBY_STATUS_UPDATE_LEN);
    out.push(STANDBY_STATUS_UPDATE_TAG);
    out.extend_from_slice(&write.to_be_bytes());
    out.extend_from_slice(&flush.to_be_bytes());
    out.extend_from_slice(&apply.to_be_bytes());
    out.extend_from_slice(&client_time_pg_micros.to_be_bytes());
    out.push(u8::from(reply_requested));
    out
}

/// The inverse of [`encode_standby_status_update`], for fake servers in tests
/// and for inspecting captured traffic.
pub fn decode_standby_status_update(buf: &[u8]) -> Result<StandbyStatusUpdate, DecodeError> {
    let mut reader = Reader::new(buf);
    let tag = reader
        .u8("standby status update tag")
        .map_err(|_| DecodeError::Empty {
            what: "standby status update",
        })?;
    if tag != STANDBY_STATUS_UPDATE_TAG {
        return Err(DecodeError::unknown_tag("standby status update", tag, 0));
    }
    let update = StandbyStatusUpdate {
        write: reader.u64("standby write LSN")?,
        flush: reader.u64("standby flush LSN")?,
        apply: reader.u64("standby apply LSN")?,
        client_time_pg_micros: reader.i64("standby client time")?,
        reply_requested: reader.u8("standby reply flag")? != 0,
    };
    reader.finish("standby status update")?;
    Ok(update)
}

/// Formats an LSN the way PostgreSQL prints `pg_lsn`, e.g. `16/B374D848`.
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses PostgreSQL's `pg_lsn` text form (hex, case-insensitive).
pub fn parse_lsn(text: &str) -> Result<Lsn, DecodeError> {
    let invalid = || DecodeError::invalid_lsn(text);
    let (high, low) = text.split_once('/').ok_or_else(invalid)?;
    let parse_half = |half: &str| {
        let well_formed =
            (1..=8).contains(&half.len()) && half.bytes().all(|byte| byte.is_ascii_hexdigit());
        if well_formed {
            u32::from_str_radix(half, 16).map_err(|_| invalid())
        } else {
            Err(invalid())
        }
    };
    Ok((u64::from(parse_half(high)?) << 32) | u64::from(parse_half(low)?))
}

/// Saturates instead of overflowing: the inputs come off the wire.
pub fn pg_micros_to_unix_micros(pg_micros: i64) -> i64 {
    pg_micros.saturating_add(PG_EPOCH_OFFSET_MICROS)
}

/// Saturates instead of overflowing, like [`pg_micros_to_unix_micros`].
pub fn unix_micros_to_pg_micros(unix_micros: i64) -> i64 {
    unix_micros.saturating_sub(PG_EPOCH_OFFSET_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xlog_data(wal_start: u64, wal_end: u64, send_time: i64, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![b'w'];
        buf.extend_from_slice(&wal_start.to_be_bytes());
        buf.extend_from_slice(&wal_end.to_be_bytes());
        buf.extend_from_slice(&send_time.to_be_bytes());
        buf.extend_from_slice(payload);
        buf
    }

    fn keepalive(wal_end: u64, send_time: i64, reply: u8) -> Vec<u8> {
        let mut buf = vec![b'k'];
        buf.extend_from_slice(&wal_end.to_be_bytes());
        buf.extend_from_slice(&send_time.to_be_bytes());
        buf.push(reply);
        buf
    }

    #[test]
    fn decodes_xlog_data_with_payload() {
        let buf = xlog_data(0x16_B374_D848, 0x16_B374_D900, 123_456, b"B...");
        assert_eq!(
            decode_copy_data(&buf).unwrap(),
            ReplicationMessage::XLogData {
                wal_start: 0x16_B374_D848,
                wal_end: 0x16_B374_D900,
                send_time: 123_456,
                data: b"B...",
            }
        );
    }

    #[test]
    fn decodes_xlog_data_with_empty_payload() {
        let buf = xlog_data(1, 2, -3, b"");
        assert!(matches!(
            decode_copy_data(&buf).unwrap(),
            ReplicationMessage::XLogData {
                data: [],
                send_time: -3,
                ..
            }
        ));
    }

    #[test]
    fn decodes_keepalive() {
        assert_eq!(
            decode_copy_data(&keepalive(42, 7, 1)).unwrap(),
            ReplicationMessage::PrimaryKeepalive {
                wal_end: 42,
                send_time: 7,
                reply_requested: true
            }
        );
        assert_eq!(
            decode_copy_data(&keepalive(42, 7, 0)).unwrap(),
            ReplicationMessage::PrimaryKeepalive {
                wal_end: 42,
                send_time: 7,
                reply_requested: false
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for full in [xlog_data(1, 2, 3, b""), keepalive(1, 2, 1)] {
            for len in 0..full.len() {
                assert!(decode_copy_data(&full[..len]).is_err(), "prefix {len}");
            }
        }
    }

    #[test]
    fn keepalive_with_trailing_bytes_is_an_error() {
        let mut buf = keepalive(1, 2, 0);
        buf.push(0);
        assert!(matches!(
            decode_copy_data(&buf),
            Err(DecodeError::TrailingBytes {
                offset: 18,
                count: 1,
                ..
            })
        ));
    }

    #[test]
    fn unknown_and_empty_are_errors() {
        assert!(matches!(
            decode_copy_data(b""),
            Err(DecodeError::Empty { .. })
        ));
        assert!(matches!(
            decode_copy_data(b"x123"),
            Err(DecodeError::UnknownTag { tag: b'x', .. })
        ));
    }

    #[test]
    fn standby_status_update_layout() {
        let buf = encode_standby_status_update(1, 2, 3, 4, true);
        let mut expected = vec![b'r'];
        for value in [1u64, 2, 3, 4] {
            expected.extend_from_slice(&value.to_be_bytes());
        }
        expected.push(1);
        assert_eq!(buf, expected);
        assert_eq!(buf.len(), STANDBY_STATUS_UPDATE_LEN);
        assert_eq!(
            decode_standby_status_update(&buf).unwrap(),
            StandbyStatusUpdate {
                write: 1,
                flush: 2,
                apply: 3,
                client_time_pg_micros: 4,
                reply_requested: true
            }
        );
        for len in 0..buf.len() {
            assert!(decode_standby_status_update(&buf[..len]).is_err());
        }
    }

    #[test]
    fn lsn_text_round_trip() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(format_lsn(u64::MAX), "FFFFFFFF/FFFFFFFF");
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(parse_lsn("16/b374d848").unwrap(), 0x16_B374_D848);
        assert_eq!(parse_lsn("0/0").unwrap(), 0);
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF").unwrap(), u64::MAX);
        for bad in [
            "",
            "/",
            "16",
            "16/",
            "/1",
            "1/2/3",
            "G/1",
            "123456789/0",
            "+1/0",
            " 1/0",
        ] {
            assert!(parse_lsn(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn epoch_conversion() {
        assert_eq!(PG_EPOCH_OFFSET_MICROS, 10_957 * 86_400 * 1_000_000);
        assert_eq!(pg_micros_to_unix_micros(0), PG_EPOCH_OFFSET_MICROS);
        assert_eq!(unix_micros_to_pg_micros(PG_EPOCH_OFFSET_MICROS), 0);
        assert_eq!(pg_micros_to_unix_micros(i64::MAX), i64::MAX);
        assert_eq!(unix_micros_to_pg_micros(i64::MIN), i64::MIN);
    }
}
