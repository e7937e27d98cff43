//! Filtering and privacy: which tables and columns reach Kafka, and which values are masked or
//! replaced by a salted hash before a change is encoded. Pure: no I/O, so every rule is
//! unit-tested.
//!
//! Patterns name tables as `schema.table` and columns as `schema.table.column`, exactly as
//! PostgreSQL spells them (case-sensitive); `*` matches any run of characters, dots included, so
//! `public.*` is every table (or column) of `public` and `*.email` every `email` column.

use pgoutput::row::{ColumnValue, TypedValue};
use sha2::{Digest, Sha256};

use crate::changes::{ChangeEvent, Columns};

/// What a masked value starts with; it says nothing about the value's length.
pub const MASK: &str = "****";

#[derive(clap::Args, Debug, Clone)]
pub struct FilterOptions {
    /// Tables to publish, as comma-separated `schema.table` patterns (`*` matches any run of
    /// characters, e.g. `public.*`). Empty: every table of the publication.
    #[arg(long, env = "CDC_TABLE_INCLUDE", value_delimiter = ',')]
    pub table_include: Vec<String>,
    /// Tables never to publish (`schema.table` patterns); wins over --table-include. Their
    /// changes are skipped, while the slot still advances past them.
    #[arg(long, env = "CDC_TABLE_EXCLUDE", value_delimiter = ',')]
    pub table_exclude: Vec<String>,
    /// Columns to publish, as comma-separated `schema.table.column` patterns (e.g.
    /// `public.users.*,*.status`); when given, every other column is left out, in every table.
    /// Primary-key columns are always kept: they form the record's key.
    #[arg(long, env = "CDC_COLUMN_INCLUDE", value_delimiter = ',')]
    pub column_include: Vec<String>,
    /// Columns to leave out (`schema.table.column` patterns, e.g. `*.metadata`); wins over
    /// --column-include. Primary-key columns are always kept: hash them to hide them.
    #[arg(long, env = "CDC_COLUMN_EXCLUDE", value_delimiter = ',')]
    pub column_exclude: Vec<String>,
    /// Columns whose values are replaced by the string `****` (followed by the last
    /// --mask-keep-last characters of the value). NULL stays NULL. A primary-key column cannot
    /// be masked (different rows would share a key): the connector stops with an error.
    #[arg(long, env = "CDC_MASK_COLUMNS", value_delimiter = ',')]
    pub mask_columns: Vec<String>,
    /// How many trailing characters of a masked value to keep (e.g. 4 for phone numbers:
    /// `****2222`). A value that is not longer than this is masked entirely, so masking never
    /// reveals a whole value.
    #[arg(long, env = "CDC_MASK_KEEP_LAST", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=64))]
    pub mask_keep_last: u8,
    /// Columns whose values are replaced by the lower-case hex SHA-256 of the salt followed by
    /// the value's text: deterministic, so equal values still join. NULL stays NULL. Allowed on
    /// primary-key columns (the key stays stable per row). Needs --hash-salt.
    #[arg(long, env = "CDC_HASH_COLUMNS", value_delimiter = ',')]
    pub hash_columns: Vec<String>,
    /// Secret prepended to every hashed value; without it common values (emails, phone numbers)
    /// could be recovered by hashing guesses. Use a long random string and keep it stable:
    /// changing it changes every hash. Never logged.
    #[arg(
        long,
        env = "CDC_HASH_SALT",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub hash_salt: Option<HashSalt>,
}

/// The hashing salt; its `Debug` hides it so it never reaches a log line.
#[derive(Clone)]
pub struct HashSalt(String);

impl std::fmt::Debug for HashSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashSalt(<redacted>)")
    }
}

impl std::str::FromStr for HashSalt {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("--{option}: pattern {pattern:?} {reason}")]
    InvalidPattern {
        option: &'static str,
        pattern: String,
        reason: &'static str,
    },
    #[error(
        "--hash-columns needs a salt: set --hash-salt or CDC_HASH_SALT to a long random secret"
    )]
    MissingSalt,
    #[error("{column} is in both --mask-columns and --hash-columns: choose one")]
    MaskedAndHashed { column: String },
    #[error(
        "{column} is part of the primary key and matches --mask-columns: masking would give different rows the same Kafka key; hash it (--hash-columns) or stop masking it"
    )]
    MaskedKey { column: String },
}

/// A `*` glob over a qualified name.
#[derive(Debug, Clone)]
struct Pattern(String);

impl Pattern {
    /// `parts` is how many dot-separated names a pattern without `*` must have at least
    /// (2 for `schema.table`, 3 for `schema.table.column`): an unqualified `users.email` would
    /// otherwise silently match nothing.
    fn parse(option: &'static str, text: &str, parts: usize) -> Result<Self, FilterError> {
        let invalid = |reason| FilterError::InvalidPattern {
            option,
            pattern: text.to_owned(),
            reason,
        };
        // Lists are often written `a, b`; the blanks are not part of any name.
        let pattern = text.trim();
        if pattern.is_empty() {
            return Err(invalid("is empty"));
        }
        if !pattern.contains('*') && pattern.split('.').count() < parts {
            return Err(invalid(if parts == 2 {
                "is not qualified: expected schema.table (or a pattern with *)"
            } else {
                "is not qualified: expected schema.table.column (or a pattern with *)"
            }));
        }
        Ok(Self(pattern.to_owned()))
    }

    fn parse_all(
        option: &'static str,
        texts: &[String],
        parts: usize,
    ) -> Result<Vec<Self>, FilterError> {
        texts
            .iter()
            .map(|text| Self::parse(option, text, parts))
            .collect()
    }

    /// Byte-wise glob matching with backtracking to the last `*`. Comparing bytes is exact for
    /// UTF-8: a literal starts on a character boundary, which a continuation byte never equals.
    fn matches(&self, name: &str) -> bool {
        let (pattern, name) = (self.0.as_bytes(), name.as_bytes());
        let (mut p, mut n) = (0, 0);
        let mut last_star: Option<(usize, usize)> = None;
        while n < name.len() {
            if pattern.get(p) == Some(&b'*') {
                last_star = Some((p, n));
                p += 1;
            } else if pattern.get(p) == Some(&name[n]) {
                p += 1;
                n += 1;
            } else if let Some((star, consumed)) = last_star {
                // Let the last `*` swallow one more byte and retry from there.
                last_star = Some((star, consumed + 1));
                p = star + 1;
                n = consumed + 1;
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|&byte| byte == b'*')
    }
}

fn any_matches(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|pattern| pattern.matches(name))
}

#[derive(Debug, Clone)]
struct Hashing {
    patterns: Vec<Pattern>,
    salt: HashSalt,
}

/// What happens to one published column.
enum Treatment<'a> {
    Drop,
    Keep,
    Mask,
    Hash(&'a HashSalt),
}

/// The table and column filters and value transformations, validated.
/// What the filter does to one column, as the table metadata reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnTreatment {
    /// Not published.
    Dropped,
    /// Published as decoded.
    Kept,
    /// Published as text: masked or hashed.
    Rewritten,
}

#[derive(Debug, Default, Clone)]
pub struct ChangeFilter {
    table_include: Vec<Pattern>,
    table_exclude: Vec<Pattern>,
    column_include: Vec<Pattern>,
    column_exclude: Vec<Pattern>,
    mask: Vec<Pattern>,
    mask_keep_last: usize,
    /// Present exactly when --hash-columns is given, so a hashed column always has its salt.
    hashing: Option<Hashing>,
}

impl ChangeFilter {
    pub fn new(options: &FilterOptions) -> Result<Self, FilterError> {
        let mask = Pattern::parse_all("mask-columns", &options.mask_columns, 3)?;
        let hash = Pattern::parse_all("hash-columns", &options.hash_columns, 3)?;
        // Overlapping globs can only be detected per column (see `treatment`); the same
        // pattern in both lists is a mistake visible now.
        if let Some(both) = mask.iter().find(|m| hash.iter().any(|h| h.0 == m.0)) {
            return Err(FilterError::MaskedAndHashed {
                column: both.0.clone(),
            });
        }
        let hashing = if hash.is_empty() {
            None
        } else {
            match &options.hash_salt {
                Some(salt) if !salt.0.is_empty() => Some(Hashing {
                    patterns: hash,
                    salt: salt.clone(),
                }),
                _ => return Err(FilterError::MissingSalt),
            }
        };
        Ok(Self {
            table_include: Pattern::parse_all("table-include", &options.table_include, 2)?,
            table_exclude: Pattern::parse_all("table-exclude", &options.table_exclude, 2)?,
            column_include: Pattern::parse_all("column-include", &options.column_include, 3)?,
            column_exclude: Pattern::parse_all("column-exclude", &options.column_exclude, 3)?,
            mask,
            mask_keep_last: usize::from(options.mask_keep_last),
            hashing,
        })
    }

    /// Whether changes of `table` (`schema.table`) are published.
    pub fn includes_table(&self, table: &str) -> bool {
        (self.table_include.is_empty() || any_matches(&self.table_include, table))
            && !any_matches(&self.table_exclude, table)
    }

    /// What happens to column `column` of `table`; `is_key` for a column of the change's key.
    pub fn column_treatment(
        &self,
        table: &str,
        column: &str,
        is_key: bool,
    ) -> Result<ColumnTreatment, FilterError> {
        Ok(
            match self.treatment(&format!("{table}.{column}"), is_key)? {
                Treatment::Drop => ColumnTreatment::Dropped,
                Treatment::Keep => ColumnTreatment::Kept,
                Treatment::Mask | Treatment::Hash(_) => ColumnTreatment::Rewritten,
            },
        )
    }

    /// Filters, masks and hashes the columns of `event`'s key, old and new row. An error is a
    /// configuration that cannot be applied to this table (a masked key column, a column both
    /// masked and hashed); `event` must then not be published.
    pub fn apply(&self, event: &mut ChangeEvent) -> Result<(), FilterError> {
        if self.column_include.is_empty()
            && self.column_exclude.is_empty()
            && self.mask.is_empty()
            && self.hashing.is_none()
        {
            return Ok(());
        }
        let keys: Vec<std::sync::Arc<str>> = event
            .primary_key
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let table = &*event.table;
        self.apply_to(table, &mut event.primary_key, &keys)?;
        if let Some(before) = &mut event.before {
            self.apply_to(table, before, &keys)?;
        }
        if let Some(after) = &mut event.after {
            self.apply_to(table, after, &keys)?;
        }
        Ok(())
    }

    fn apply_to(
        &self,
        table: &str,
        columns: &mut Columns,
        keys: &[std::sync::Arc<str>],
    ) -> Result<(), FilterError> {
        let mut qualified = String::with_capacity(table.len() + 32);
        for (name, mut value) in std::mem::take(columns) {
            qualified.clear();
            qualified.push_str(table);
            qualified.push('.');
            qualified.push_str(&name);
            match self.treatment(&qualified, keys.contains(&name))? {
                Treatment::Drop => continue,
                Treatment::Keep => {}
                Treatment::Mask => mask(&mut value, self.mask_keep_last),
                Treatment::Hash(salt) => hash(&mut value, salt),
            }
            columns.push((name, value));
        }
        Ok(())
    }

    fn treatment(&self, column: &str, is_key: bool) -> Result<Treatment<'_>, FilterError> {
        let kept = is_key
            || ((self.column_include.is_empty() || any_matches(&self.column_include, column))
                && !any_matches(&self.column_exclude, column));
        if !kept {
            return Ok(Treatment::Drop);
        }
        let masked = any_matches(&self.mask, column);
        let hashed = self
            .hashing
            .as_ref()
            .filter(|hashing| any_matches(&hashing.patterns, column));
        Ok(match (masked, hashed) {
            (true, Some(_)) => {
                return Err(FilterError::MaskedAndHashed {
                    column: column.to_owned(),
                });
            }
            (true, None) if is_key => {
                return Err(FilterError::MaskedKey {
                    column: column.to_owned(),
                });
            }
            (true, None) => Treatment::Mask,
            (false, Some(hashing)) => Treatment::Hash(&hashing.salt),
            (false, None) => Treatment::Keep,
        })
    }
}

/// `MASK` followed by the last `keep_last` characters of the value's text, or `MASK` alone when
/// the value is not longer than that. NULL and values PostgreSQL did not send stay as they are.
fn mask(value: &mut ColumnValue, keep_last: usize) {
    if let ColumnValue::Value(typed) = value {
        let text = typed.canonical_text();
        let length = text.chars().count();
        let mut masked = String::from(MASK);
        if keep_last > 0 && length > keep_last {
            masked.extend(text.chars().skip(length - keep_last));
        }
        *typed = TypedValue::Text(masked);
    }
}

/// Lower-case hex SHA-256 of the salt followed by the value's text. NULL and values PostgreSQL
/// did not send stay as they are.
fn hash(value: &mut ColumnValue, salt: &HashSalt) {
    if let ColumnValue::Value(typed) = value {
        let digest = Sha256::new()
            .chain_update(salt.0.as_bytes())
            .chain_update(typed.canonical_text().as_bytes())
            .finalize();
        *typed = TypedValue::Text(format!("{digest:x}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::Parser;
    use proptest::prelude::*;

    use super::*;
    use crate::changes::{Operation, Position};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        filter: FilterOptions,
    }

    fn options(args: &[&str]) -> FilterOptions {
        Cli::try_parse_from(std::iter::once("cdc-connector").chain(args.iter().copied()))
            .unwrap()
            .filter
    }

    fn filter(args: &[&str]) -> ChangeFilter {
        ChangeFilter::new(&options(args)).unwrap()
    }

    fn error(args: &[&str]) -> FilterError {
        ChangeFilter::new(&options(args)).unwrap_err()
    }

    fn text(value: &str) -> ColumnValue {
        ColumnValue::Value(TypedValue::Text(value.into()))
    }

    fn sha256_hex(input: &str) -> String {
        format!("{:x}", Sha256::digest(input.as_bytes()))
    }

    fn event(
        table: &str,
        key: Columns,
        before: Option<Columns>,
        after: Option<Columns>,
    ) -> ChangeEvent {
        ChangeEvent {
            table: Arc::from(table),
            operation: Operation::Update,
            primary_key: key,
            before,
            after,
            position: Position {
                commit_lsn: 1,
                event_lsn: 1,
                xid: 1,
                sequence: 0,
                commit_time_unix_micros: 0,
            },
            table_schema: None,
        }
    }

    fn user_row(id: i64, email: &str, phone: ColumnValue) -> Columns {
        vec![
            ("user_id".into(), ColumnValue::Value(TypedValue::Long(id))),
            ("email".into(), text(email)),
            ("phone".into(), phone),
            (
                "preferences".into(),
                ColumnValue::Value(TypedValue::Json("{}".into())),
            ),
        ]
    }

    fn user_event(email: &str, phone: ColumnValue) -> ChangeEvent {
        let after = user_row(7, email, phone);
        event("public.users", vec![after[0].clone()], None, Some(after))
    }

    fn names(columns: &Columns) -> Vec<&str> {
        columns.iter().map(|(name, _)| &**name).collect()
    }

    fn value<'a>(columns: &'a Columns, name: &str) -> &'a ColumnValue {
        &columns
            .iter()
            .find(|(n, _)| **n == *name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .1
    }

    #[test]
    fn globs_match_whole_names_with_star_as_any_run() {
        let pattern = |p: &str| Pattern(p.into());
        assert!(pattern("public.users").matches("public.users"));
        assert!(!pattern("public.users").matches("public.users2"));
        assert!(!pattern("public.users").matches("xpublic.users"));
        assert!(pattern("public.*").matches("public.users"));
        assert!(
            pattern("public.*").matches("public.users.email"),
            "* crosses dots"
        );
        assert!(!pattern("public.*").matches("audit.users"));
        assert!(pattern("*.email").matches("public.users.email"));
        assert!(!pattern("*.email").matches("public.users.email_verified"));
        assert!(pattern("*").matches(""));
        assert!(pattern("p*l*c.u*s").matches("public.users"));
        assert!(pattern("*a*a*").matches("banana"));
        assert!(!pattern("*a*a*a*a").matches("banana"));
        assert!(
            pattern("*.név").matches("public.users.név"),
            "multi-byte names"
        );
        assert!(!pattern("*.né").matches("public.users.név"));
    }

    #[test]
    fn table_include_and_exclude() {
        let all = filter(&[]);
        assert!(all.includes_table("public.users") && all.includes_table("audit.log"));

        let only_public = filter(&[
            "--table-include",
            "public.*",
            "--table-exclude",
            "public.payments",
        ]);
        assert!(only_public.includes_table("public.users"));
        assert!(
            !only_public.includes_table("public.payments"),
            "exclude wins over include"
        );
        assert!(!only_public.includes_table("audit.log"), "not included");

        let excluded = filter(&["--table-exclude", "public.payments, public.bookings"]);
        assert!(excluded.includes_table("public.users"));
        assert!(
            !excluded.includes_table("public.bookings"),
            "blanks around list items are ignored"
        );
        assert!(!excluded.includes_table("public.payments"));
    }

    #[test]
    fn unqualified_or_empty_patterns_are_config_errors() {
        assert!(matches!(
            error(&["--table-exclude", "payments"]),
            FilterError::InvalidPattern { option: "table-exclude", ref pattern, .. } if pattern == "payments"
        ));
        let message = error(&["--column-exclude", "users.email"]).to_string();
        assert!(
            message.contains("--column-exclude") && message.contains("schema.table.column"),
            "{message}"
        );
        assert!(matches!(
            error(&["--mask-columns", "public.users.phone,"]),
            FilterError::InvalidPattern {
                reason: "is empty",
                ..
            }
        ));
        assert!(matches!(
            error(&["--hash-columns", " ", "--hash-salt", "s"]),
            FilterError::InvalidPattern { .. }
        ));
        // With a wildcard, any shape is allowed.
        assert!(
            ChangeFilter::new(&options(&[
                "--column-exclude",
                "*email",
                "--table-include",
                "*"
            ]))
            .is_ok()
        );
    }

    #[test]
    fn hashing_needs_a_non_empty_salt() {
        assert_eq!(
            error(&["--hash-columns", "*.email"]),
            FilterError::MissingSalt
        );
        assert_eq!(
            error(&["--hash-columns", "*.email", "--hash-salt", ""]),
            FilterError::MissingSalt
        );
        assert!(
            error(&["--hash-columns", "*.email"])
                .to_string()
                .contains("CDC_HASH_SALT")
        );
        assert!(
            ChangeFilter::new(&options(&[
                "--hash-columns",
                "*.email",
                "--hash-salt",
                "pepper"
            ]))
            .is_ok()
        );
    }

    #[test]
    fn the_salt_never_shows_in_debug_output() {
        let options = options(&[
            "--hash-columns",
            "*.email",
            "--hash-salt",
            "very-secret-salt",
        ]);
        let filter = ChangeFilter::new(&options).unwrap();
        assert!(!format!("{options:?}").contains("very-secret-salt"));
        assert!(!format!("{filter:?}").contains("very-secret-salt"));
    }

    #[test]
    fn the_same_pattern_masked_and_hashed_is_refused_up_front() {
        assert_eq!(
            error(&[
                "--mask-columns",
                "*.email",
                "--hash-columns",
                "*.email",
                "--hash-salt",
                "s"
            ]),
            FilterError::MaskedAndHashed {
                column: "*.email".into()
            }
        );
    }

    #[test]
    fn overlapping_mask_and_hash_patterns_are_refused_per_column() {
        let both = filter(&[
            "--mask-columns",
            "public.users.e*",
            "--hash-columns",
            "*.email",
            "--hash-salt",
            "s",
        ]);
        let mut change = user_event("an@example.vn", ColumnValue::Null);
        assert_eq!(
            both.apply(&mut change),
            Err(FilterError::MaskedAndHashed {
                column: "public.users.email".into()
            })
        );
    }

    #[test]
    fn without_column_options_events_are_untouched() {
        let untouched = user_event("an@example.vn", text("+84 90 111 2222"));
        let mut change = untouched.clone();
        filter(&["--table-exclude", "public.payments"])
            .apply(&mut change)
            .unwrap();
        assert_eq!(change, untouched);
    }

    #[test]
    fn excluded_columns_are_removed_from_both_images_but_keys_stay() {
        let exclude = filter(&[
            "--column-exclude",
            "*.preferences,public.users.phone,public.users.user_id",
        ]);
        let before = user_row(7, "old@example.vn", ColumnValue::NotInReplicaIdentity);
        let after = user_row(7, "new@example.vn", text("+84"));
        let mut change = event(
            "public.users",
            vec![after[0].clone()],
            Some(before),
            Some(after),
        );
        exclude.apply(&mut change).unwrap();
        assert_eq!(names(change.before.as_ref().unwrap()), ["user_id", "email"]);
        assert_eq!(
            names(change.after.as_ref().unwrap()),
            ["user_id", "email"],
            "order kept, key kept although excluded"
        );
        assert_eq!(
            change.primary_key,
            vec![("user_id".into(), ColumnValue::Value(TypedValue::Long(7)))]
        );
        assert_eq!(
            value(change.after.as_ref().unwrap(), "email"),
            &text("new@example.vn")
        );
    }

    #[test]
    fn column_include_keeps_only_matching_columns_and_the_key() {
        let include = filter(&[
            "--column-include",
            "public.users.email,public.bookings.*",
            "--column-exclude",
            "public.bookings.details",
        ]);
        let mut change = user_event("an@example.vn", text("+84"));
        include.apply(&mut change).unwrap();
        assert_eq!(names(change.after.as_ref().unwrap()), ["user_id", "email"]);

        let booking = vec![
            ("booking_id".into(), ColumnValue::Value(TypedValue::Long(1))),
            (
                "status".into(),
                ColumnValue::Value(TypedValue::Other {
                    type_name: "public.booking_status".into(),
                    text: "pending".into(),
                }),
            ),
            (
                "details".into(),
                ColumnValue::Value(TypedValue::Json("{}".into())),
            ),
        ];
        let mut change = event(
            "public.bookings",
            vec![booking[0].clone()],
            None,
            Some(booking),
        );
        include.apply(&mut change).unwrap();
        assert_eq!(
            names(change.after.as_ref().unwrap()),
            ["booking_id", "status"],
            "exclude wins over include"
        );

        // A table without a key keeps only the included columns.
        let mut keyless = event(
            "public.audit",
            Vec::new(),
            None,
            Some(vec![("note".into(), text("x"))]),
        );
        include.apply(&mut keyless).unwrap();
        assert_eq!(keyless.after, Some(Vec::new()));
    }

    #[test]
    fn masking_keeps_at_most_the_last_characters_and_never_a_whole_value() {
        let masking = filter(&[
            "--mask-columns",
            "*.phone,public.payments.card_last4",
            "--mask-keep-last",
            "4",
        ]);
        let mut change = user_event("an@example.vn", text("+84 90 111 2222"));
        masking.apply(&mut change).unwrap();
        assert_eq!(
            value(change.after.as_ref().unwrap(), "phone"),
            &text("****2222")
        );
        assert_eq!(
            value(change.after.as_ref().unwrap(), "email"),
            &text("an@example.vn"),
            "not masked"
        );

        let payment = vec![
            ("payment_id".into(), ColumnValue::Value(TypedValue::Long(1))),
            ("card_last4".into(), text("4242")),
        ];
        let mut change = event(
            "public.payments",
            vec![payment[0].clone()],
            None,
            Some(payment),
        );
        masking.apply(&mut change).unwrap();
        assert_eq!(
            value(change.after.as_ref().unwrap(), "card_last4"),
            &text("****"),
            "a 4-character value is fully masked"
        );

        let mut change = user_event("an@example.vn", text("+84 90 111 2222"));
        filter(&["--mask-columns", "*.phone"])
            .apply(&mut change)
            .unwrap();
        assert_eq!(
            value(change.after.as_ref().unwrap(), "phone"),
            &text("****"),
            "keeps nothing by default"
        );
    }

    #[test]
    fn masking_turns_any_type_into_text_by_characters() {
        let masking = filter(&["--mask-columns", "public.t.*", "--mask-keep-last", "2"]);
        let row: Columns = vec![
            (
                "n".into(),
                ColumnValue::Value(TypedValue::Numeric("12345.67".into())),
            ),
            ("i".into(), ColumnValue::Value(TypedValue::Int(123_456))),
            (
                "b".into(),
                ColumnValue::Value(TypedValue::Bytes(vec![0xde, 0xad])),
            ),
            ("u".into(), text("Trần Nguyễn")),
        ];
        let mut change = event("public.t", Vec::new(), None, Some(row));
        masking.apply(&mut change).unwrap();
        let after = change.after.unwrap();
        assert_eq!(value(&after, "n"), &text("****67"));
        assert_eq!(value(&after, "i"), &text("****56"));
        assert_eq!(value(&after, "b"), &text("****ad"));
        assert_eq!(value(&after, "u"), &text("****ễn"), "characters, not bytes");
    }

    #[test]
    fn null_and_unsent_values_are_neither_masked_nor_hashed() {
        let both = filter(&[
            "--mask-columns",
            "*.phone",
            "--hash-columns",
            "*.email",
            "--hash-salt",
            "s",
        ]);
        let before = vec![
            ("user_id".into(), ColumnValue::Value(TypedValue::Long(7))),
            ("email".into(), ColumnValue::NotInReplicaIdentity),
            ("phone".into(), ColumnValue::NotInReplicaIdentity),
        ];
        let after = vec![
            ("user_id".into(), ColumnValue::Value(TypedValue::Long(7))),
            ("email".into(), ColumnValue::UnchangedToast),
            ("phone".into(), ColumnValue::Null),
        ];
        let mut change = event(
            "public.users",
            vec![after[0].clone()],
            Some(before.clone()),
            Some(after.clone()),
        );
        both.apply(&mut change).unwrap();
        assert_eq!(change.before, Some(before));
        assert_eq!(change.after, Some(after));
    }

    #[test]
    fn hashing_is_salted_sha256_of_the_text() {
        let hashing = filter(&["--hash-columns", "*.email", "--hash-salt", "pepper"]);
        let mut change = user_event("an@example.vn", ColumnValue::Null);
        hashing.apply(&mut change).unwrap();
        // `echo -n 'pepperan@example.vn' | sha256sum`
        assert_eq!(
            value(change.after.as_ref().unwrap(), "email"),
            &text("cf68f92189a60769bd285d18faf4bed049d5f0f43c55bcbf37e842a3d5724b74")
        );
    }

    #[test]
    fn hashing_a_key_column_hashes_it_in_the_key_and_both_images() {
        let hashing = filter(&[
            "--hash-columns",
            "public.users.user_id",
            "--hash-salt",
            "pepper",
        ]);
        let before = user_row(7, "old@example.vn", ColumnValue::Null);
        let after = user_row(7, "new@example.vn", ColumnValue::Null);
        let mut change = event(
            "public.users",
            vec![after[0].clone()],
            Some(before),
            Some(after),
        );
        hashing.apply(&mut change).unwrap();
        let hashed = text(&sha256_hex("pepper7"));
        assert_eq!(change.primary_key, vec![("user_id".into(), hashed.clone())]);
        assert_eq!(value(change.before.as_ref().unwrap(), "user_id"), &hashed);
        assert_eq!(value(change.after.as_ref().unwrap(), "user_id"), &hashed);
        assert_eq!(
            value(change.after.as_ref().unwrap(), "email"),
            &text("new@example.vn")
        );
    }

    #[test]
    fn masking_a_key_column_is_refused() {
        let masking = filter(&["--mask-columns", "public.users.user_id"]);
        let mut change = user_event("an@example.vn", ColumnValue::Null);
        let refused = masking.apply(&mut change).unwrap_err();
        assert_eq!(
            refused,
            FilterError::MaskedKey {
                column: "public.users.user_id".into()
            }
        );
        assert!(refused.to_string().contains("--hash-columns"), "{refused}");
    }

    #[test]
    fn value_texts_follow_postgres_spelling() {
        let cases = [
            (TypedValue::Bool(true), "true"),
            (TypedValue::Long(-5), "-5"),
            (TypedValue::Double(f64::NAN), "NaN"),
            (TypedValue::Float(f32::NEG_INFINITY), "-Infinity"),
            (TypedValue::Double(1.5), "1.5"),
            (TypedValue::Bytes(vec![0x0a, 0xff]), "\\x0aff"),
            (
                TypedValue::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ),
            (
                TypedValue::Other {
                    type_name: "inet".into(),
                    text: "10.0.0.1".into(),
                },
                "10.0.0.1",
            ),
            (TypedValue::Date(19_000), "19000"),
        ];
        for (value, expected) in cases {
            assert_eq!(value.canonical_text(), expected, "{value:?}");
        }
    }

    #[test]
    fn options_read_comma_separated_lists_and_bound_keep_last() {
        let parsed = options(&[
            "--table-include",
            "public.users,public.payments",
            "--mask-keep-last",
            "4",
        ]);
        assert_eq!(parsed.table_include, ["public.users", "public.payments"]);
        assert_eq!(parsed.mask_keep_last, 4);
        assert!(Cli::try_parse_from(["cdc-connector", "--mask-keep-last", "65"]).is_err());
    }

    proptest! {
        #[test]
        fn hashing_is_deterministic_and_depends_on_salt_and_value(value in ".*", salt in ".+", other in ".*") {
            let salt = HashSalt(salt);
            let hashed = |text: &str| {
                let mut column = ColumnValue::Value(TypedValue::Text(text.to_owned()));
                hash(&mut column, &salt);
                column
            };
            prop_assert_eq!(hashed(&value), hashed(&value));
            prop_assert_eq!(hashed(&value), text(&sha256_hex(&format!("{}{value}", salt.0))));
            if other != value {
                prop_assert_ne!(hashed(&value), hashed(&other));
            }
        }

        #[test]
        fn masking_reveals_at_most_a_proper_suffix_of_keep_last_characters(value in ".*", keep_last in 0usize..8) {
            let mut column = ColumnValue::Value(TypedValue::Text(value.clone()));
            mask(&mut column, keep_last);
            let ColumnValue::Value(TypedValue::Text(masked)) = column else {
                return Err(TestCaseError::fail("masking gives text"));
            };
            let revealed = masked.strip_prefix(MASK).expect("starts with the mask");
            prop_assert!(value.ends_with(revealed));
            prop_assert!(revealed.chars().count() <= keep_last);
            prop_assert!(revealed.is_empty() || revealed.len() < value.len(), "never the whole value");
        }
    }
}
