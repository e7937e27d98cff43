//! PostgreSQL's own account of what committed, independent of the connector's code and of the
//! workload's journal: a `test_decoding` slot created before the load and read once it is over.
//! Each committed row change is named by its transaction, its WAL position, its table and its
//! operation, which a CDC record carries too (`source.transaction_id`, `source.event_lsn`).

use anyhow::{Context, Result, bail};
use local_stack::Stack;

/// One committed row change, as PostgreSQL and a CDC record both name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChangeIdentity {
    pub xid: i64,
    /// The change's own WAL position (several rows of one multi-insert share it).
    pub lsn: i64,
    pub table: String,
    pub operation: String,
}

/// The ground-truth slot.
pub struct TruthSlot {
    name: String,
    /// Transactions that commit after this position are in the slot's account.
    pub start_lsn: i64,
}

impl TruthSlot {
    /// Creates the slot; every transaction committing from now on is in its account.
    pub async fn create(stack: &Stack, name: &str) -> Result<Self> {
        let start = stack
            .psql(&format!(
                "SELECT (lsn - '0/0'::pg_lsn)::bigint \
                 FROM pg_create_logical_replication_slot('{name}', 'test_decoding')"
            ))
            .await
            .context("creating the ground-truth slot")?;
        Ok(Self {
            name: name.to_string(),
            start_lsn: start.trim().parse().context("the slot's start LSN")?,
        })
    }

    /// Every row change committed since the slot was created to a table of `publication`, in
    /// commit order. The slot is only peeked: it can be read again.
    pub async fn committed(&self, stack: &Stack, publication: &str) -> Result<Vec<ChangeIdentity>> {
        let rows = stack
            .psql(&format!(
                "SELECT c.xid::text, (c.lsn - '0/0'::pg_lsn)::bigint, m[1], m[2] \
                 FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL, 'skip-empty-xacts', '1') c, \
                 LATERAL regexp_match(c.data, '^table ([^:]+): (INSERT|UPDATE|DELETE):') m \
                 WHERE m[1] IN (SELECT schemaname || '.' || tablename FROM pg_publication_tables \
                                WHERE pubname = '{publication}')",
                slot = self.name
            ))
            .await
            .context("reading the ground-truth slot")?;
        rows.lines()
            .filter(|l| !l.is_empty())
            .map(parse_row)
            .collect()
    }
}

/// `xid|lsn|schema.table|OPERATION`, as psql prints a row of [`TruthSlot::committed`].
fn parse_row(line: &str) -> Result<ChangeIdentity> {
    let fields: Vec<&str> = line.split('|').collect();
    let [xid, lsn, table, operation] = fields[..] else {
        bail!("unexpected ground-truth row {line:?}");
    };
    Ok(ChangeIdentity {
        xid: xid.parse().with_context(|| format!("xid in {line:?}"))?,
        lsn: lsn.parse().with_context(|| format!("lsn in {line:?}"))?,
        table: table.to_string(),
        operation: operation.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_read_field_by_field_and_a_malformed_one_is_an_error() {
        assert_eq!(
            parse_row("7421|23599912|public.users|UPDATE").unwrap(),
            ChangeIdentity {
                xid: 7421,
                lsn: 23_599_912,
                table: "public.users".into(),
                operation: "UPDATE".into()
            }
        );
        assert!(parse_row("7421|23599912|public.users").is_err());
        assert!(parse_row("x|1|public.users|INSERT").is_err());
    }
}
