use super::*;

/// Assembles messages field by field, mirroring the documented layouts.
struct Wire(Vec<u8>);

impl Wire {
    fn tag(tag: u8) -> Self {
        Wire(vec![tag])
    }
    fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }
    fn u16(mut self, value: u16) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn u32(mut self, value: u32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i32(mut self, value: i32) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i64(mut self, value: i64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn string(mut self, value: &str) -> Self {
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(0);
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn text_column(self, value: &[u8]) -> Self {
        self.u8(b't').i32(value.len() as i32).raw(value)
    }
    /// Tuple `(1, 'alice')`.
    fn two_text_columns(self) -> Self {
        self.u16(2).text_column(b"1").text_column(b"alice")
    }
    fn build(self) -> Vec<u8> {
        self.0
    }
}

fn two_text_values() -> TupleData {
    TupleData(vec![
        TupleValue::Text(b"1".to_vec()),
        TupleValue::Text(b"alice".to_vec()),
    ])
}

fn decode(buf: &[u8]) -> LogicalMessage {
    decode_message(buf, false).unwrap()
}

fn decode_streamed(buf: &[u8]) -> LogicalMessage {
    decode_message(buf, true).unwrap()
}

fn begin_message() -> Vec<u8> {
    Wire::tag(b'B').u64(0x10).i64(-5).u32(777).build()
}

fn relation_message() -> Vec<u8> {
    Wire::tag(b'R')
        .u32(16_384)
        .string("public")
        .string("users")
        .u8(b'd')
        .u16(2)
        .u8(1)
        .string("id")
        .u32(23)
        .i32(-1)
        .u8(0)
        .string("name")
        .u32(1043)
        .i32(68)
        .build()
}

fn update_with_key_message() -> Vec<u8> {
    Wire::tag(b'U')
        .u32(16_384)
        .u8(b'K')
        .u16(2)
        .text_column(b"1")
        .u8(b'n')
        .u8(b'N')
        .two_text_columns()
        .build()
}

fn rollback_prepared_message() -> Vec<u8> {
    Wire::tag(b'r')
        .u8(0)
        .u64(0x100)
        .u64(0x200)
        .i64(10)
        .i64(20)
        .u32(99)
        .string("gid-1")
        .build()
}

#[test]
fn begin() {
    assert_eq!(
        decode(&begin_message()),
        LogicalMessage::Begin {
            final_lsn: 0x10,
            commit_time: -5,
            xid: 777
        }
    );
}

#[test]
fn commit() {
    let buf = Wire::tag(b'C').u8(0).u64(0x20).u64(0x28).i64(1_000).build();
    assert_eq!(
        decode(&buf),
        LogicalMessage::Commit {
            flags: 0,
            commit_lsn: 0x20,
            end_lsn: 0x28,
            commit_time: 1_000
        }
    );
}

#[test]
fn origin() {
    let buf = Wire::tag(b'O').u64(0xABC).string("node_a").build();
    assert_eq!(
        decode(&buf),
        LogicalMessage::Origin {
            commit_lsn: 0xABC,
            name: "node_a".into()
        }
    );
}

#[test]
fn relation() {
    let expected = LogicalMessage::Relation(Relation {
        id: 16_384,
        namespace: "public".into(),
        name: "users".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            Column {
                is_key: true,
                name: "id".into(),
                type_id: 23,
                type_modifier: -1,
            },
            Column {
                is_key: false,
                name: "name".into(),
                type_id: 1043,
                type_modifier: 68,
            },
        ],
    });
    assert_eq!(decode(&relation_message()), expected);

    let mut streamed = Wire::tag(b'R').u32(555).build();
    streamed.extend_from_slice(&relation_message()[1..]);
    assert_eq!(decode_streamed(&streamed), expected);
}

#[test]
fn relation_replica_identities() {
    for (byte, identity) in [
        (b'd', ReplicaIdentity::Default),
        (b'n', ReplicaIdentity::Nothing),
        (b'f', ReplicaIdentity::Full),
        (b'i', ReplicaIdentity::Index),
    ] {
        let buf = Wire::tag(b'R')
            .u32(1)
            .string("")
            .string("t")
            .u8(byte)
            .u16(0)
            .build();
        match decode(&buf) {
            LogicalMessage::Relation(relation) => {
                assert_eq!(relation.replica_identity, identity);
                assert!(relation.columns.is_empty());
                assert_eq!(relation.namespace, "");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let unknown = Wire::tag(b'R')
        .u32(1)
        .string("")
        .string("t")
        .u8(b'x')
        .u16(0)
        .build();
    assert_eq!(
        decode_message(&unknown, false).unwrap_err(),
        DecodeError::unknown_tag("relation replica identity", b'x', 8)
    );
}

#[test]
fn relation_with_invalid_utf8_name_names_the_field() {
    let buf = Wire::tag(b'R')
        .u32(1)
        .string("public")
        .raw(b"bad\xff\0")
        .u8(b'd')
        .u16(0)
        .build();
    assert_eq!(
        decode_message(&buf, false).unwrap_err(),
        DecodeError::InvalidUtf8 {
            what: "relation name",
            offset: 12
        }
    );
}

#[test]
fn relation_with_absurd_column_count_is_truncation() {
    let buf = Wire::tag(b'R')
        .u32(1)
        .string("")
        .string("t")
        .u8(b'd')
        .u16(u16::MAX)
        .build();
    assert!(matches!(
        decode_message(&buf, false),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn type_message() {
    let buf = Wire::tag(b'Y')
        .u32(70_000)
        .string("public")
        .string("mood")
        .build();
    assert_eq!(
        decode(&buf),
        LogicalMessage::Type {
            xid: None,
            type_id: 70_000,
            namespace: "public".into(),
            name: "mood".into()
        }
    );
    let streamed = Wire::tag(b'Y')
        .u32(9)
        .u32(70_000)
        .string("")
        .string("int4")
        .build();
    assert_eq!(
        decode_streamed(&streamed),
        LogicalMessage::Type {
            xid: Some(9),
            type_id: 70_000,
            namespace: "".into(),
            name: "int4".into()
        }
    );
}

#[test]
fn insert_with_every_tuple_value_kind() {
    let buf = Wire::tag(b'I')
        .u32(16_384)
        .u8(b'N')
        .u16(5)
        .u8(b'n')
        .u8(b'u')
        .text_column(b"hello")
        .text_column(b"")
        .u8(b'b')
        .i32(2)
        .raw(&[0xDE, 0xAD])
        .build();
    assert_eq!(
        decode(&buf),
        LogicalMessage::Insert {
            xid: None,
            relation_id: 16_384,
            new: TupleData(vec![
                TupleValue::Null,
                TupleValue::UnchangedToast,
                TupleValue::Text(b"hello".to_vec()),
                TupleValue::Text(Vec::new()),
                TupleValue::Binary(vec![0xDE, 0xAD]),
            ])
        }
    );
}

#[test]
fn insert_in_stream_carries_xid() {
    let buf = Wire::tag(b'I')
        .u32(42)
        .u32(16_384)
        .u8(b'N')
        .two_text_columns()
        .build();
    assert_eq!(
        decode_streamed(&buf),
        LogicalMessage::Insert {
            xid: Some(42),
            relation_id: 16_384,
            new: two_text_values()
        }
    );
    // The same bytes outside a stream are misaligned and must not decode.
    assert!(decode_message(&buf, false).is_err());
}

#[test]
fn insert_with_wrong_marker() {
    let buf = Wire::tag(b'I').u32(1).u8(b'K').two_text_columns().build();
    assert_eq!(
        decode_message(&buf, false).unwrap_err(),
        DecodeError::unknown_tag("insert tuple marker", b'K', 5)
    );
}

#[test]
fn tuple_with_unknown_kind_or_negative_length() {
    let unknown = Wire::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'z').build();
    assert_eq!(
        decode_message(&unknown, false).unwrap_err(),
        DecodeError::unknown_tag("tuple column kind", b'z', 8)
    );
    let negative = Wire::tag(b'I')
        .u32(1)
        .u8(b'N')
        .u16(1)
        .u8(b't')
        .i32(-1)
        .build();
    assert!(matches!(
        decode_message(&negative, false),
        Err(DecodeError::InvalidField { offset: 9, .. })
    ));
    let huge = Wire::tag(b'I')
        .u32(1)
        .u8(b'N')
        .u16(1)
        .u8(b't')
        .i32(i32::MAX)
        .build();
    assert!(matches!(
        decode_message(&huge, false),
        Err(DecodeError::Truncated { .. })
    ));
}

#[test]
fn update_without_old_tuple() {
    let buf = Wire::tag(b'U')
        .u32(16_384)
        .u8(b'N')
        .two_text_columns()
        .build();
    assert_eq!(
        decode(&buf),
        LogicalMessage::Update {
            xid: None,
            relation_id: 16_384,
            old: None,
            new: two_text_values()
        }
    );
}

#[test]
fn update_with_old_key() {
    assert_eq!(
        decode(&update_with_key_message()),
        LogicalMessage::Update {
            xid: None,
            relation_id: 16_384,
            old: Some(OldTuple::Key(TupleData(vec![
                TupleValue::Text(b"1".to_vec()),
                TupleValue::Null
            ]))),
            new: two_text_values()
        }
    );
}

#[test]
fn update_with_full_old_row_in_stream() {
    let buf = Wire::tag(b'U')
        .u32(7)
        .u32(16_384)
        .u8(b'O')
        .u16(2)
        .text_column(b"1")
        .text_column(b"bob")
        .u8(b'N')
        .u16(2)
        .text_column(b"1")
        .u8(b'u')
        .build();
    assert_eq!(
        decode_streamed(&buf),
        LogicalMessage::Update {
            xid: Some(7),
            relation_id: 16_384,
            old: Some(OldTuple::Full(TupleData(vec![
                TupleValue::Text(b"1".to_vec()),
                TupleValue::Text(b"bob".to_vec())
            ]))),
            new: TupleData(vec![
                TupleValue::Text(b"1".to_vec()),
                TupleValue::UnchangedToast
            ])
        }
    );
}

#[test]
fn update_with_bad_markers() {
    let no_new = Wire::tag(b'U')
        .u32(1)
        .u8(b'K')
        .u16(0)
        .u8(b'K')
        .u16(0)
        .build();
    assert_eq!(
        decode_message(&no_new, false).unwrap_err(),
        DecodeError::unknown_tag("update tuple marker", b'K', 8)
    );
    let garbage = Wire::tag(b'U').u32(1).u8(b'X').u16(0).build();
    assert_eq!(
        decode_message(&garbage, false).unwrap_err(),
        DecodeError::unknown_tag("update tuple marker", b'X', 5)
    );
}

#[test]
fn delete_with_key_and_full() {
    let key = Wire::tag(b'D')
        .u32(16_384)
        .u8(b'K')
        .u16(2)
        .text_column(b"1")
        .u8(b'n')
        .build();
    assert_eq!(
        decode(&key),
        LogicalMessage::Delete {
            xid: None,
            relation_id: 16_384,
            old: OldTuple::Key(TupleData(vec![
                TupleValue::Text(b"1".to_vec()),
                TupleValue::Null
            ]))
        }
    );
    let full = Wire::tag(b'D')
        .u32(3)
        .u32(16_384)
        .u8(b'O')
        .two_text_columns()
        .build();
    assert_eq!(
        decode_streamed(&full),
        LogicalMessage::Delete {
            xid: Some(3),
            relation_id: 16_384,
            old: OldTuple::Full(two_text_values())
        }
    );
    let new_only = Wire::tag(b'D')
        .u32(16_384)
        .u8(b'N')
        .two_text_columns()
        .build();
    assert_eq!(
        decode_message(&new_only, false).unwrap_err(),
        DecodeError::unknown_tag("delete tuple marker", b'N', 5)
    );
}

#[test]
fn truncate() {
    let buf = Wire::tag(b'T').u32(2).u8(3).u32(16_384).u32(16_390).build();
    assert_eq!(
        decode(&buf),
        LogicalMessage::Truncate {
            xid: None,
            options: 3,
            relation_ids: vec![16_384, 16_390]
        }
    );
    let streamed = Wire::tag(b'T').u32(11).u32(1).u8(0).u32(16_384).build();
    assert_eq!(
        decode_streamed(&streamed),
        LogicalMessage::Truncate {
            xid: Some(11),
            options: 0,
            relation_ids: vec![16_384]
        }
    );
}

#[test]
fn truncate_with_forged_count_fails_before_allocating() {
    let buf = Wire::tag(b'T').u32(u32::MAX).u8(0).u32(1).build();
    assert!(matches!(
        decode_message(&buf, false),
        Err(DecodeError::InvalidField {
            what: "truncate relation count",
            offset: 1,
            ..
        })
    ));
}

#[test]
fn logical_decoding_messages() {
    let transactional = Wire::tag(b'M')
        .u8(1)
        .u64(0x99)
        .string("app")
        .i32(3)
        .raw(b"\0hi")
        .build();
    assert_eq!(
        decode(&transactional),
        LogicalMessage::Message {
            xid: None,
            transactional: true,
            lsn: 0x99,
            prefix: "app".into(),
            content: b"\0hi".to_vec()
        }
    );
    let plain = Wire::tag(b'M').u8(0).u64(0x99).string("").i32(0).build();
    assert_eq!(
        decode(&plain),
        LogicalMessage::Message {
            xid: None,
            transactional: false,
            lsn: 0x99,
            prefix: String::new(),
            content: Vec::new()
        }
    );
    let streamed = Wire::tag(b'M')
        .u32(5)
        .u8(1)
        .u64(1)
        .string("p")
        .i32(1)
        .raw(b"x")
        .build();
    assert_eq!(
        decode_streamed(&streamed),
        LogicalMessage::Message {
            xid: Some(5),
            transactional: true,
            lsn: 1,
            prefix: "p".into(),
            content: b"x".to_vec()
        }
    );
}

#[test]
fn stream_start_and_stop() {
    assert_eq!(
        decode(&Wire::tag(b'S').u32(600).u8(1).build()),
        LogicalMessage::StreamStart {
            xid: 600,
            first_segment: true
        }
    );
    assert_eq!(
        decode(&Wire::tag(b'S').u32(600).u8(0).build()),
        LogicalMessage::StreamStart {
            xid: 600,
            first_segment: false
        }
    );
    assert_eq!(decode(b"E"), LogicalMessage::StreamStop);
    assert_eq!(decode_streamed(b"E"), LogicalMessage::StreamStop);
}

#[test]
fn stream_commit() {
    let buf = Wire::tag(b'c')
        .u32(600)
        .u8(0)
        .u64(0x30)
        .u64(0x38)
        .i64(77)
        .build();
    assert_eq!(
        decode(&buf),
        LogicalMessage::StreamCommit {
            xid: 600,
            flags: 0,
            commit_lsn: 0x30,
            end_lsn: 0x38,
            commit_time: 77
        }
    );
}

#[test]
fn stream_abort_without_and_with_parallel_fields() {
    let short = Wire::tag(b'A').u32(600).u32(601).build();
    assert_eq!(
        decode(&short),
        LogicalMessage::StreamAbort {
            xid: 600,
            subxid: 601,
            abort_lsn: None,
            abort_time: None
        }
    );
    let long = Wire::tag(b'A').u32(600).u32(600).u64(0x40).i64(-1).build();
    assert_eq!(
        decode(&long),
        LogicalMessage::StreamAbort {
            xid: 600,
            subxid: 600,
            abort_lsn: Some(0x40),
            abort_time: Some(-1)
        }
    );
    // Anything between the two forms is corrupt.
    for len in short.len() + 1..long.len() {
        assert!(decode_message(&long[..len], false).is_err(), "prefix {len}");
    }
}

#[test]
fn two_phase_messages() {
    let begin_prepare = Wire::tag(b'b')
        .u64(1)
        .u64(2)
        .i64(3)
        .u32(4)
        .string("g")
        .build();
    assert_eq!(
        decode(&begin_prepare),
        LogicalMessage::BeginPrepare {
            prepare_lsn: 1,
            end_lsn: 2,
            prepare_time: 3,
            xid: 4,
            gid: "g".into()
        }
    );
    let prepare = Wire::tag(b'P')
        .u8(0)
        .u64(1)
        .u64(2)
        .i64(3)
        .u32(4)
        .string("g")
        .build();
    assert_eq!(
        decode(&prepare),
        LogicalMessage::Prepare {
            flags: 0,
            prepare_lsn: 1,
            end_lsn: 2,
            prepare_time: 3,
            xid: 4,
            gid: "g".into()
        }
    );
    let commit_prepared = Wire::tag(b'K')
        .u8(0)
        .u64(5)
        .u64(6)
        .i64(7)
        .u32(8)
        .string("g")
        .build();
    assert_eq!(
        decode(&commit_prepared),
        LogicalMessage::CommitPrepared {
            flags: 0,
            commit_lsn: 5,
            end_lsn: 6,
            commit_time: 7,
            xid: 8,
            gid: "g".into()
        }
    );
    assert_eq!(
        decode(&rollback_prepared_message()),
        LogicalMessage::RollbackPrepared {
            flags: 0,
            prepare_end_lsn: 0x100,
            rollback_end_lsn: 0x200,
            prepare_time: 10,
            rollback_time: 20,
            xid: 99,
            gid: "gid-1".into()
        }
    );
    let stream_prepare = Wire::tag(b'p')
        .u8(0)
        .u64(1)
        .u64(2)
        .i64(3)
        .u32(4)
        .string("g")
        .build();
    assert_eq!(
        decode(&stream_prepare),
        LogicalMessage::StreamPrepare {
            flags: 0,
            prepare_lsn: 1,
            end_lsn: 2,
            prepare_time: 3,
            xid: 4,
            gid: "g".into()
        }
    );
}

#[test]
fn every_prefix_of_every_sample_is_an_error() {
    let samples: Vec<(Vec<u8>, bool)> = vec![
        (begin_message(), false),
        (Wire::tag(b'C').u8(0).u64(1).u64(2).i64(3).build(), false),
        (Wire::tag(b'O').u64(1).string("o").build(), false),
        (relation_message(), false),
        (
            Wire::tag(b'Y')
                .u32(1)
                .u32(2)
                .string("n")
                .string("t")
                .build(),
            true,
        ),
        (
            Wire::tag(b'I')
                .u32(1)
                .u32(2)
                .u8(b'N')
                .two_text_columns()
                .build(),
            true,
        ),
        (update_with_key_message(), false),
        (
            Wire::tag(b'D').u32(1).u8(b'O').two_text_columns().build(),
            false,
        ),
        (Wire::tag(b'T').u32(2).u8(1).u32(1).u32(2).build(), false),
        (
            Wire::tag(b'M')
                .u8(1)
                .u64(1)
                .string("p")
                .i32(2)
                .raw(b"hi")
                .build(),
            false,
        ),
        (Wire::tag(b'S').u32(1).u8(1).build(), false),
        (
            Wire::tag(b'c').u32(1).u8(0).u64(1).u64(2).i64(3).build(),
            false,
        ),
        (Wire::tag(b'A').u32(1).u32(2).build(), false),
        (
            Wire::tag(b'b')
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(4)
                .string("g")
                .build(),
            false,
        ),
        (
            Wire::tag(b'P')
                .u8(0)
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(4)
                .string("g")
                .build(),
            false,
        ),
        (
            Wire::tag(b'K')
                .u8(0)
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(4)
                .string("g")
                .build(),
            false,
        ),
        (rollback_prepared_message(), false),
        (
            Wire::tag(b'p')
                .u8(0)
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(4)
                .string("g")
                .build(),
            false,
        ),
    ];
    for (full, in_stream) in samples {
        decode_message(&full, in_stream).unwrap();
        for len in 0..full.len() {
            assert!(
                decode_message(&full[..len], in_stream).is_err(),
                "prefix {len} of {full:?}"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut buf = begin_message();
    buf.push(0);
    assert_eq!(
        decode_message(&buf, false).unwrap_err(),
        DecodeError::TrailingBytes {
            what: "begin",
            offset: 21,
            count: 1
        }
    );
    assert!(decode_message(b"E\0", false).is_err());
}

#[test]
fn empty_and_unknown() {
    assert!(matches!(
        decode_message(b"", false),
        Err(DecodeError::Empty { .. })
    ));
    assert_eq!(
        decode_message(b"Z", false).unwrap_err(),
        DecodeError::unknown_tag("pgoutput message", b'Z', 0)
    );
}

#[test]
fn errors_read_well() {
    let error = decode_message(&begin_message()[..5], false).unwrap_err();
    assert_eq!(
        error.to_string(),
        "truncated begin final LSN at offset 1: needed 8 bytes, only 4 left"
    );
}

#[test]
fn a_streamed_message_is_classified_by_its_tag_as_its_decoding_would() {
    let transactional_message = |flags: u8| {
        Wire::tag(b'M')
            .u32(5)
            .u8(flags)
            .u64(1)
            .string("p")
            .i32(0)
            .build()
    };
    let mut relation = Wire::tag(b'R').u32(555).build();
    relation.extend_from_slice(&relation_message()[1..]);
    let cases = [
        (
            Wire::tag(b'I')
                .u32(42)
                .u32(16_384)
                .u8(b'N')
                .two_text_columns()
                .build(),
            StreamedMessage::OfTheTransaction,
        ),
        (
            Wire::tag(b'D')
                .u32(42)
                .u32(16_384)
                .u8(b'K')
                .two_text_columns()
                .build(),
            StreamedMessage::OfTheTransaction,
        ),
        (
            Wire::tag(b'T').u32(11).u32(1).u8(0).u32(16_384).build(),
            StreamedMessage::OfTheTransaction,
        ),
        (relation, StreamedMessage::OfTheTransaction),
        (transactional_message(1), StreamedMessage::OfTheTransaction),
        (transactional_message(0), StreamedMessage::Control),
        (
            Wire::tag(b'Y')
                .u32(9)
                .u32(70_000)
                .string("public")
                .string("mood")
                .build(),
            StreamedMessage::Control,
        ),
        (b"E".to_vec(), StreamedMessage::Control),
        (
            Wire::tag(b'A').u32(600).u32(601).build(),
            StreamedMessage::Control,
        ),
    ];
    for (bytes, expected) in cases {
        let decoded = decode_streamed(&bytes);
        assert_eq!(decoded.streamed(), expected, "{decoded:?}");
        assert_eq!(classify_streamed(&bytes), Ok(expected), "{decoded:?}");
    }
    // Only the tag is read: a change whose tuple is cut short is the decoding's to refuse.
    let cut = Wire::tag(b'I').u32(42).u32(16_384).u8(b'N').u16(2).build();
    assert!(decode_message(&cut, true).is_err());
    assert_eq!(
        classify_streamed(&cut),
        Ok(StreamedMessage::OfTheTransaction)
    );
    assert!(matches!(
        classify_streamed(b""),
        Err(DecodeError::Empty { .. })
    ));
    assert_eq!(
        classify_streamed(&Wire::tag(b'M').u32(5).build())
            .unwrap_err()
            .to_string(),
        "truncated logical decoding message flags at offset 5: needed 1 bytes, only 0 left"
    );
}

proptest::proptest! {
    /// A logical decoding message inside a stream belongs to the transaction by its flags' low
    /// bit alone, whatever the other bits say.
    #[test]
    fn a_streamed_logical_message_is_classified_by_its_flags(flags in proptest::num::u8::ANY) {
        let bytes = Wire::tag(b'M').u32(5).u8(flags).u64(1).string("p").i32(0).build();
        let decoded = decode_message(&bytes, true).expect("a valid message");
        proptest::prop_assert_eq!(classify_streamed(&bytes), Ok(decoded.streamed()));
    }
}

impl Wire {
    /// A tuple as pgoutput sends it: column count, then each value's kind and bytes.
    fn tuple(self, values: &[TupleValue]) -> Self {
        values
            .iter()
            .fold(self.u16(values.len() as u16), |wire, value| match value {
                TupleValue::Null => wire.u8(b'n'),
                TupleValue::UnchangedToast => wire.u8(b'u'),
                TupleValue::Text(bytes) => wire.text_column(bytes),
                TupleValue::Binary(bytes) => wire.u8(b'b').i32(bytes.len() as i32).raw(bytes),
            })
    }
}

fn tuple_value() -> impl proptest::strategy::Strategy<Value = TupleValue> {
    use proptest::{collection::vec, prelude::*};
    prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        vec(any::<u8>(), 0..12).prop_map(TupleValue::Text),
        vec(any::<u8>(), 0..12).prop_map(TupleValue::Binary),
    ]
}

proptest::proptest! {
    /// Changes decoded into the tuples of the ones before (of other widths and value kinds),
    /// given back as the connector gives them, decode as they do into new tuples.
    #[test]
    fn changes_decoded_into_given_back_tuples_decode_as_into_new_ones(
        changes in proptest::collection::vec(
            (
                proptest::option::of(proptest::collection::vec(tuple_value(), 0..6)),
                proptest::collection::vec(tuple_value(), 0..6),
            ),
            1..10,
        )
    ) {
        let mut pool = TuplePool::default();
        for (old, new) in changes {
            let bytes = match &old {
                Some(old) => Wire::tag(b'U').u32(7).u8(b'O').tuple(old),
                None => Wire::tag(b'I').u32(7),
            }
            .u8(b'N')
            .tuple(&new)
            .build();
            let reused = decode_message_reusing(&bytes, false, &mut pool).expect("a valid change");
            proptest::prop_assert_eq!(&reused, &decode_message(&bytes, false).unwrap());
            match reused {
                LogicalMessage::Update { old: Some(OldTuple::Full(old)), new, .. } => {
                    pool.give(old);
                    pool.give(new);
                }
                LogicalMessage::Insert { new, .. } => pool.give(new),
                other => unreachable!("decoded {other:?}"),
            }
        }
    }
}

#[test]
fn a_tuple_holding_a_huge_value_is_not_kept_for_reuse() {
    let mut pool = TuplePool::default();
    let huge = TupleValue::Text(Vec::with_capacity(KEPT_BUFFER_BYTES + 1));
    pool.give(TupleData(vec![TupleValue::Null, huge]));
    assert!(pool.0.is_empty());
    let large = TupleValue::Binary(Vec::with_capacity(KEPT_BUFFER_BYTES));
    pool.give(TupleData(vec![large]));
    assert_eq!(pool.0.len(), 1);
    for _ in 0..TuplePool::KEPT {
        pool.give(TupleData(Vec::new()));
    }
    assert_eq!(pool.0.len(), TuplePool::KEPT, "the pool is bounded");
}
