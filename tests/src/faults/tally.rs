//! Counting what a fault did to the stream: the ground truth's changes against the records
//! found in the topic. Pure, so every rule has a unit test.
//!
//! - **duplicated**: records whose `change_id` an earlier record already had (a replay after a
//!   restart: allowed, and deduplicated exactly by consumers).
//! - **lost**: committed changes with no record, after deduplication.
//! - **phantom**: records of transactions that committed after the ground truth started but
//!   that PostgreSQL does not list (an aborted transaction published, say).
//! - **out of order**: records that, per Kafka key and after deduplication, come after a record
//!   of a later commit position.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::truth::ChangeIdentity;
use crate::CdcRecord;

/// A change record as the tally needs it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub change_id: String,
    pub key: String,
    pub identity: ChangeIdentity,
    /// Commit LSN and sequence within the transaction.
    pub position: (i64, i64),
}

impl Delivered {
    /// The row changes among `records` (snapshot READs are not changes), in topic order.
    pub fn changes(records: &[CdcRecord]) -> Vec<Delivered> {
        records
            .iter()
            .filter(|r| r.operation() != "READ")
            .map(|r| Delivered {
                change_id: r.change_id().to_string(),
                key: r.key.clone(),
                identity: ChangeIdentity {
                    xid: r.value["source"]["transaction_id"]
                        .as_i64()
                        .unwrap_or_default(),
                    lsn: r.value["source"]["event_lsn"].as_i64().unwrap_or_default(),
                    table: r.table().to_string(),
                    operation: r.operation().to_string(),
                },
                position: r.position(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub committed: usize,
    pub found: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub phantom: usize,
    pub out_of_order: usize,
}

impl Tally {
    /// Nothing lost, invented or reordered.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.phantom == 0 && self.out_of_order == 0
    }
}

/// Compares the ground truth (`truth`, committed after `truth_start`) with what the topic holds.
pub fn tally(truth: &[ChangeIdentity], truth_start: i64, delivered: &[Delivered]) -> Tally {
    let mut seen = HashSet::new();
    let mut first: Vec<&Delivered> = Vec::with_capacity(delivered.len());
    for record in delivered {
        if seen.insert(record.change_id.as_str()) {
            first.push(record);
        }
    }
    let mut expected: HashMap<&ChangeIdentity, usize> = HashMap::new();
    for change in truth {
        *expected.entry(change).or_default() += 1;
    }
    let mut found: HashMap<&ChangeIdentity, usize> = HashMap::new();
    for record in &first {
        *found.entry(&record.identity).or_default() += 1;
    }
    let mut tally = Tally {
        committed: truth.len(),
        duplicated: delivered.len() - first.len(),
        ..Tally::default()
    };
    for (identity, &count) in &expected {
        let present = found.get(identity).copied().unwrap_or(0);
        tally.found += present.min(count);
        tally.lost += count.saturating_sub(present);
    }
    for record in &first {
        let in_truth = expected.get(&record.identity).copied().unwrap_or(0);
        let delivered = found.get(&record.identity).copied().unwrap_or(0);
        // Counted once per surplus record; records older than the ground truth are not its
        // business.
        if record.position.0 > truth_start && delivered > in_truth {
            tally.phantom += 1;
            found.insert(&record.identity, delivered - 1);
        }
    }
    let mut latest: HashMap<&str, (i64, i64)> = HashMap::new();
    for record in &first {
        let newest = latest.entry(record.key.as_str()).or_insert(record.position);
        if record.position < *newest {
            tally.out_of_order += 1;
        } else {
            *newest = record.position;
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(xid: i64, lsn: i64, operation: &str) -> ChangeIdentity {
        ChangeIdentity {
            xid,
            lsn,
            table: "public.users".into(),
            operation: operation.into(),
        }
    }

    fn record(identity: &ChangeIdentity, key: &str, sequence: i64) -> Delivered {
        let commit = identity.lsn + 100;
        Delivered {
            change_id: format!("{commit:016X}-{sequence}"),
            key: key.into(),
            identity: identity.clone(),
            position: (commit, sequence),
        }
    }

    #[test]
    fn every_change_found_once_is_clean() {
        let truth = [change(1, 10, "INSERT"), change(2, 20, "UPDATE")];
        let delivered: Vec<_> = truth.iter().map(|c| record(c, "k", 0)).collect();
        let counted = tally(&truth, 0, &delivered);
        assert_eq!(
            counted,
            Tally {
                committed: 2,
                found: 2,
                ..Tally::default()
            }
        );
        assert!(counted.clean());
    }

    #[test]
    fn a_replayed_change_is_a_duplicate_and_a_missing_one_is_lost() {
        let truth = [
            change(1, 10, "INSERT"),
            change(2, 20, "UPDATE"),
            change(3, 30, "DELETE"),
        ];
        let delivered = vec![
            record(&truth[0], "a", 0),
            record(&truth[0], "a", 0),
            record(&truth[2], "c", 0),
        ];
        let counted = tally(&truth, 0, &delivered);
        assert_eq!((counted.found, counted.lost), (2, 1));
        assert_eq!(counted.duplicated, 1);
        assert!(!counted.clean());
    }

    #[test]
    fn rows_sharing_a_wal_record_are_counted_one_by_one() {
        // A multi-insert: two rows, one WAL record; only one delivered.
        let truth = [change(1, 10, "INSERT"), change(1, 10, "INSERT")];
        let delivered = vec![record(&truth[0], "a", 0)];
        let counted = tally(&truth, 0, &delivered);
        assert_eq!((counted.found, counted.lost), (1, 1));
    }

    #[test]
    fn a_change_postgres_never_committed_is_a_phantom_unless_older_than_the_truth() {
        let truth = [change(1, 10, "INSERT")];
        let aborted = change(9, 500, "INSERT");
        let before_truth = change(0, 1, "INSERT");
        let delivered = vec![
            record(&truth[0], "a", 0),
            record(&aborted, "b", 0),
            record(&before_truth, "c", 0),
        ];
        let counted = tally(&truth, 200, &delivered);
        assert_eq!(counted.phantom, 1);
        assert!(!counted.clean());
    }

    #[test]
    fn a_key_whose_records_go_back_in_commit_order_is_out_of_order() {
        let truth = [change(1, 10, "INSERT"), change(2, 20, "UPDATE")];
        let in_order = vec![record(&truth[0], "a", 0), record(&truth[1], "a", 0)];
        assert_eq!(tally(&truth, 0, &in_order).out_of_order, 0);
        let reversed = vec![record(&truth[1], "a", 0), record(&truth[0], "a", 0)];
        assert_eq!(tally(&truth, 0, &reversed).out_of_order, 1);
        // Different keys have no order between them.
        let two_keys = vec![record(&truth[1], "a", 0), record(&truth[0], "b", 0)];
        assert_eq!(tally(&truth, 0, &two_keys).out_of_order, 0);
        // A replay of older records after newer ones is deduplicated, not reordered.
        let replayed = vec![
            record(&truth[0], "a", 0),
            record(&truth[1], "a", 0),
            record(&truth[0], "a", 0),
        ];
        let counted = tally(&truth, 0, &replayed);
        assert_eq!((counted.out_of_order, counted.duplicated), (0, 1));
    }
}
