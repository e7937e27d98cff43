//! The single error type of this crate.
//!
//! Offsets are byte positions from the start of the buffer handed to the
//! decoding function (the tag byte is offset 0), so a hex dump of the
//! offending message can be matched against the error directly.

/// Longest excerpt of an offending value kept in an error, so that a
/// multi-megabyte JSON document does not end up in a log line.
const MAX_EXCERPT_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty {what}: no tag byte")]
    Empty { what: &'static str },

    #[error("truncated {what} at offset {offset}: needed {needed} bytes, only {available} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },

    #[error("unknown {what} tag {tag:#04x} ({printable:?}) at offset {offset}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        printable: char,
        offset: usize,
    },

    #[error("{what} at offset {offset} has no NUL terminator")]
    UnterminatedString { what: &'static str, offset: usize },

    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: usize },

    #[error("invalid {what} at offset {offset}: {detail}")]
    InvalidField {
        what: &'static str,
        offset: usize,
        detail: String,
    },

    #[error("{count} unexpected trailing bytes after {what} at offset {offset}")]
    TrailingBytes {
        what: &'static str,
        offset: usize,
        count: usize,
    },

    #[error(
        "tuple has {tuple_columns} columns but relation {relation_id} ({relation_name}) has {relation_columns}"
    )]
    ColumnCountMismatch {
        relation_id: u32,
        relation_name: String,
        relation_columns: usize,
        tuple_columns: usize,
    },

    #[error("invalid {type_name} text value {excerpt:?}: {reason}")]
    InvalidValue {
        type_name: String,
        excerpt: String,
        reason: &'static str,
    },

    #[error("column {column} of {relation}: {source}")]
    InvalidColumn {
        relation: String,
        column: String,
        #[source]
        source: Box<DecodeError>,
    },

    #[error("invalid LSN {excerpt:?}: expected two hex numbers like \"16/B374D848\"")]
    InvalidLsn { excerpt: String },
}

impl DecodeError {
    pub(crate) fn unknown_tag(what: &'static str, tag: u8, offset: usize) -> Self {
        DecodeError::UnknownTag {
            what,
            tag,
            printable: char::from(tag),
            offset,
        }
    }

    pub(crate) fn invalid_value(type_name: &str, text: &[u8], reason: &'static str) -> Self {
        DecodeError::InvalidValue {
            type_name: type_name.to_owned(),
            excerpt: excerpt(text),
            reason,
        }
    }

    pub(crate) fn invalid_lsn(text: &str) -> Self {
        DecodeError::InvalidLsn {
            excerpt: excerpt(text.as_bytes()),
        }
    }
}

fn excerpt(text: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(text);
    let mut chars = lossy.chars();
    let mut shortened: String = chars.by_ref().take(MAX_EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        shortened.push('…');
    }
    shortened
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_shortened_in_errors() {
        let huge = vec![b'x'; 10_000];
        let message = DecodeError::invalid_value("json", &huge, "whatever").to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains('…'));
    }

    #[test]
    fn unknown_tag_shows_hex_and_char() {
        let message = DecodeError::unknown_tag("pgoutput message", b'Z', 0).to_string();
        assert_eq!(
            message,
            "unknown pgoutput message tag 0x5a ('Z') at offset 0"
        );
    }
}
