//! Start-up checks and idempotent setup over an ordinary SQL connection.

use pgoutput::copy::{Lsn, parse_lsn};
use tokio_postgres::Client;

use super::{PgTarget, connect, replication::ReplicationConnection};
use crate::error::{ConnectorError, ErrorKind};

#[derive(Clone)]
pub struct SourceSettings {
    pub slot_name: String,
    pub publication_name: String,
    /// Tables for a publication the connector creates itself (`schema.table`).
    pub tables: Vec<String>,
}

pub struct PreparedSource {
    pub server_version_num: i32,
    /// The connector's slot as the server has it.
    pub slot: ExistingSlot,
    /// The SQL connection the checks ran on, for whatever setup follows.
    pub client: Client,
}

/// The connector's slot before streaming starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingSlot {
    /// No slot of that name.
    Missing,
    /// Streaming resumes from its confirmed position: everything before it was acknowledged
    /// by Kafka.
    Usable(Lsn),
    /// The server invalidated it (`wal_status = 'lost'`): it fell behind
    /// `max_slot_wal_keep_size` and the WAL it needed is gone.
    Invalidated,
}

/// A slot just created at its consistent point, with the snapshot it exported when asked for
/// one. The snapshot stays valid while `exporter` stays open and idle.
pub struct CreatedSlot {
    pub consistent_point: Lsn,
    pub exported_snapshot: Option<(ReplicationConnection, String)>,
}

/// Checks that logical replication can work, creates the publication if missing, and looks
/// the slot up.
pub async fn prepare(
    target: &PgTarget,
    settings: &SourceSettings,
) -> Result<PreparedSource, ConnectorError> {
    let client = connect(target).await?;
    let query = |context: &'static str, sql: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .map_err(|e| ConnectorError::postgres(context, &e))
        }
    };
    let wal_level: String = query("checking wal_level", "SHOW wal_level").await?.get(0);
    if wal_level != "logical" {
        return Err(ConnectorError::new(
            ErrorKind::SourceRejected,
            "checking wal_level",
            format!(
                "wal_level is '{wal_level}', logical replication needs 'logical': set wal_level = logical in postgresql.conf and restart PostgreSQL"
            ),
        ));
    }
    let can_replicate: bool = query(
        "checking privileges",
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .await?
    .get(0);
    if !can_replicate {
        return Err(ConnectorError::new(
            ErrorKind::SourceRejected,
            "checking privileges",
            format!(
                "role {} lacks the REPLICATION attribute: ALTER ROLE {} REPLICATION",
                target.user, target.user
            ),
        ));
    }
    let server_version_num: i32 = query(
        "reading server version",
        "SELECT current_setting('server_version_num')::int",
    )
    .await?
    .get(0);
    ensure_publication(&client, settings).await?;
    let slot = existing_slot(&client, target, settings).await?;
    Ok(PreparedSource {
        server_version_num,
        slot,
        client,
    })
}

async fn ensure_publication(
    client: &Client,
    settings: &SourceSettings,
) -> Result<(), ConnectorError> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&settings.publication_name],
        )
        .await
        .map_err(|e| ConnectorError::postgres("looking up the publication", &e))?
        .is_some();
    if exists {
        return Ok(());
    }
    let tables = settings
        .tables
        .iter()
        .map(|table| match table.split_once('.') {
            Some((schema, name)) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
            None => quote_ident(table),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "CREATE PUBLICATION {} FOR TABLE {tables}",
        quote_ident(&settings.publication_name)
    );
    client.batch_execute(&sql).await.map_err(|e| {
        let error = ConnectorError::postgres("creating the publication", &e);
        if error.is_transient() {
            error
        } else {
            ConnectorError::new(
                error.kind(),
                "creating the publication",
                format!("{e}; a table owner can create it: {sql}"),
            )
        }
    })?;
    tracing::info!(
        publication = settings.publication_name,
        tables,
        "created publication"
    );
    Ok(())
}

async fn existing_slot(
    client: &Client,
    target: &PgTarget,
    settings: &SourceSettings,
) -> Result<ExistingSlot, ConnectorError> {
    let slot = client
        .query_opt(
            "SELECT plugin, database, active_pid, confirmed_flush_lsn::text, wal_status \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&settings.slot_name],
        )
        .await
        .map_err(|e| ConnectorError::postgres("looking up the replication slot", &e))?;
    let definite = |message: String| {
        ConnectorError::new(
            ErrorKind::SourceRejected,
            format!("replication slot {}", settings.slot_name),
            message,
        )
    };
    if let Some(row) = slot {
        let plugin: Option<String> = row.get(0);
        let database: Option<String> = row.get(1);
        let active_pid: Option<i32> = row.get(2);
        let confirmed: Option<String> = row.get(3);
        let wal_status: Option<String> = row.get(4);
        if plugin.as_deref() != Some("pgoutput") {
            return Err(definite(format!(
                "it uses plugin {plugin:?}, not pgoutput; drop it or choose another --slot-name"
            )));
        }
        if database.as_deref() != Some(target.database.as_str()) {
            return Err(definite(format!(
                "it belongs to database {database:?}, not {}",
                target.database
            )));
        }
        if let Some(pid) = active_pid {
            return Err(ConnectorError::new(
                ErrorKind::SlotInUse,
                format!("replication slot {}", settings.slot_name),
                format!("in use by another process (PID {pid})"),
            ));
        }
        if wal_status.as_deref() == Some("lost") {
            return Ok(ExistingSlot::Invalidated);
        }
        let confirmed = confirmed.ok_or_else(|| definite("it has no confirmed position".into()))?;
        let lsn = parse_lsn(&confirmed)
            .map_err(|e| definite(format!("bad confirmed_flush_lsn {confirmed}: {e}")))?;
        return Ok(ExistingSlot::Usable(lsn));
    }
    Ok(ExistingSlot::Missing)
}

/// Creates the slot; with `export_snapshot` it also exports the snapshot of its consistent
/// point, for an initial snapshot that meets the stream exactly.
pub async fn create_slot(
    target: &PgTarget,
    slot_name: &str,
    export_snapshot: bool,
) -> Result<CreatedSlot, ConnectorError> {
    let definite = |message: String| {
        ConnectorError::new(
            ErrorKind::SourceRejected,
            format!("creating replication slot {slot_name}"),
            message,
        )
    };
    let mut replication = ReplicationConnection::connect(target).await?;
    let rows = replication
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}",
            quote_ident(slot_name),
            if export_snapshot {
                "EXPORT_SNAPSHOT"
            } else {
                "NOEXPORT_SNAPSHOT"
            }
        ))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| definite("CREATE_REPLICATION_SLOT returned nothing".into()))?;
    let consistent_point =
        row.get(1).cloned().flatten().ok_or_else(|| {
            definite("CREATE_REPLICATION_SLOT returned no consistent point".into())
        })?;
    let lsn = parse_lsn(&consistent_point)
        .map_err(|e| definite(format!("bad consistent point {consistent_point}: {e}")))?;
    tracing::info!(
        slot = slot_name,
        consistent_point,
        export_snapshot,
        "created replication slot"
    );
    let exported_snapshot = if export_snapshot {
        let name = row
            .get(2)
            .cloned()
            .flatten()
            .ok_or_else(|| definite("CREATE_REPLICATION_SLOT exported no snapshot".into()))?;
        Some((replication, name))
    } else {
        None
    };
    Ok(CreatedSlot {
        consistent_point: lsn,
        exported_snapshot,
    })
}

/// Drops the slot, e.g. to redo a snapshot that was interrupted.
pub async fn drop_slot(client: &Client, slot_name: &str) -> Result<(), ConnectorError> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot_name])
        .await
        .map(|_| ())
        .map_err(|e| ConnectorError::postgres("dropping the replication slot", &e))
}

/// Writes a non-transactional logical message so the slot sees WAL (and can advance) even when
/// the captured tables are idle while other databases write.
pub async fn emit_heartbeat(client: &Client, prefix: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_logical_emit_message(false, $1, '')", &[&prefix])
        .await
        .map(|_| ())
}

pub fn quote_ident(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
