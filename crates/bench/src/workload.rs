//! The source side: SQL that builds the backlogs the consumers read, and the slots they read it
//! from. Everything runs server-side (set-returning INSERTs, a procedure committing in a loop), so
//! generating a backlog costs no client round trips.

use anyhow::{Context, Result};
use tokio_postgres::Client;

/// A backlog in the WAL: how many row changes it holds and the position just past its last
/// change, which each consumer must reach.
#[derive(Debug, Clone)]
pub struct Backlog {
    pub events: u64,
    /// `pg_lsn` text; the last transaction's changes lie before it and its commit at or after it.
    pub end_lsn: String,
    pub generate_secs: f64,
}

pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("bench: PostgreSQL connection ended: {error}");
        }
    });
    Ok(client)
}

/// Settings for a quiet, repeatable source: autovacuum would write WAL and burn CPU at random
/// moments between runs.
pub async fn prepare_database(sql: &Client) -> Result<()> {
    // Two calls: ALTER SYSTEM may not share the implicit transaction of a multi-statement query.
    sql.batch_execute("ALTER SYSTEM SET autovacuum = off")
        .await
        .context("turning autovacuum off")?;
    sql.batch_execute("SELECT pg_reload_conf()").await?;
    sql.batch_execute(SMALL_TRANSACTIONS_PROCEDURE)
        .await
        .context("creating the small-transactions procedure")
}

pub async fn create_slot(sql: &Client, slot: &str) -> Result<()> {
    sql.execute(
        "SELECT pg_create_logical_replication_slot($1::text::name, 'pgoutput')",
        &[&slot],
    )
    .await
    .with_context(|| format!("creating slot {slot}"))?;
    Ok(())
}

/// Drops the slot if it exists; retried for a few seconds because the walsender of a consumer
/// that just stopped may still hold it.
pub async fn drop_slot(sql: &Client, slot: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let dropped = sql
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1::text::name",
                &[&slot],
            )
            .await;
        match dropped {
            Ok(_) => return Ok(()),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(error) => return Err(error).with_context(|| format!("dropping slot {slot}")),
        }
    }
}

/// Drops every slot the bench created (`bench_*`).
pub async fn drop_bench_slots(sql: &Client) -> Result<()> {
    let slots = sql
        .query(
            "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'bench\\_%'",
            &[],
        )
        .await
        .context("listing slots")?;
    for row in slots {
        drop_slot(sql, row.get(0)).await?;
    }
    Ok(())
}

/// Whether the slot's confirmed position reached `end_lsn`, and the pid of the walsender
/// serving it (None when no consumer is attached).
pub async fn slot_progress(sql: &Client, slot: &str, end_lsn: &str) -> Result<(bool, Option<i32>)> {
    let row = sql
        .query_opt(
            "SELECT coalesce(confirmed_flush_lsn >= $2::text::pg_lsn, false), active_pid \
             FROM pg_replication_slots WHERE slot_name = $1::text::name",
            &[&slot, &end_lsn],
        )
        .await
        .with_context(|| format!("reading slot {slot}"))?
        .with_context(|| format!("slot {slot} does not exist"))?;
    Ok((row.get(0), row.get(1)))
}

/// `rows` new users in one INSERT, so one transaction.
pub async fn one_transaction(sql: &Client, rows: u64, tag: &str) -> Result<Backlog> {
    let started = std::time::Instant::now();
    insert_users(sql, rows, tag).await?;
    finish(sql, rows, tag, started).await
}

/// `transactions` small transactions of one to three changes each over the three tables.
pub async fn small_transactions(sql: &Client, transactions: u64, tag: &str) -> Result<Backlog> {
    let started = std::time::Instant::now();
    // Committing each transaction with an fsync would measure the disk, not the backlog.
    sql.batch_execute("SET synchronous_commit = off").await?;
    let count = i32::try_from(transactions).context("too many transactions")?;
    // The simple protocol: a procedure may only COMMIT when called outside any transaction block,
    // which the extended protocol's implicit one is not guaranteed to be.
    let messages = sql
        .simple_query(&format!(
            "CALL bench_small_transactions({count}, '{}', NULL)",
            tag.replace('\'', "''")
        ))
        .await
        .context("generating small transactions")?;
    sql.batch_execute("RESET synchronous_commit").await?;
    let events = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                row.get(0).and_then(|v| v.parse::<u64>().ok())
            }
            _ => None,
        })
        .context("the procedure returned no change count")?;
    finish(sql, events, tag, started).await
}

/// Fills `users` (for the snapshot): no slot reads these rows as changes.
pub async fn insert_users(sql: &Client, rows: u64, tag: &str) -> Result<()> {
    let rows = i64::try_from(rows)?;
    sql.execute(
        "INSERT INTO users (email, full_name, phone, preferences) \
         SELECT format('bench-%s-%s@example.vn', $2::text, g), 'Nguyễn Văn ' || g, '+84 9' || lpad(g::text, 8, '0'), \
                jsonb_build_object('seat', 'aisle', 'newsletter', g % 2 = 0) \
         FROM generate_series(1, $1::bigint) g",
        &[&rows, &tag],
    )
    .await
    .with_context(|| format!("inserting {rows} users"))?;
    Ok(())
}

/// Ends a backlog with a one-row transaction whose insert position is read before its commit:
/// every change of the backlog lies before that position, the commit after it. pg_recvlogical
/// stops at the first message at or past it (`--endpos`), the connector's confirmed position
/// passes it only once Kafka acknowledged everything before.
async fn finish(
    sql: &Client,
    events: u64,
    tag: &str,
    started: std::time::Instant,
) -> Result<Backlog> {
    sql.batch_execute("BEGIN").await?;
    sql.execute(
        "INSERT INTO users (email, full_name) VALUES (format('marker-%s@example.vn', $1::text), 'marker')",
        &[&tag],
    )
    .await
    .context("writing the end marker")?;
    // + 1: a keepalive may report exactly the position after the last record read, which could
    // be the marker's insert position itself, before the commit is decoded.
    let end_lsn: String = sql
        .query_one("SELECT (pg_current_wal_insert_lsn() + 1)::text", &[])
        .await?
        .get(0);
    sql.batch_execute("COMMIT")
        .await
        .context("committing the end marker")?;
    // The consumers should not compete with the checkpoint of the backlog's WAL.
    sql.batch_execute("CHECKPOINT").await?;
    Ok(Backlog {
        events: events + 1,
        end_lsn,
        generate_secs: started.elapsed().as_secs_f64(),
    })
}

/// `TRUNCATE` the captured tables (between phases, while no slot exists).
pub async fn truncate(sql: &Client) -> Result<()> {
    sql.batch_execute("TRUNCATE users, bookings, payments CASCADE")
        .await
        .context("truncating")
}

/// Transactions of 3, 2, 1 and 3 (or 1) changes in turn: a booking is made (user, booking,
/// payment), confirmed and paid, the user promoted, and then either everything is deleted again
/// or the payment reconciled, so the tables both churn and grow. Returns the number of changes.
const SMALL_TRANSACTIONS_PROCEDURE: &str = r#"
CREATE OR REPLACE PROCEDURE bench_small_transactions(n integer, tag text, INOUT changes bigint)
LANGUAGE plpgsql AS $$
DECLARE
    u bigint;
    b bigint;
    p bigint;
BEGIN
    changes := 0;
    FOR i IN 0 .. n - 1 LOOP
        CASE i % 4
        WHEN 0 THEN
            INSERT INTO users (email, full_name) VALUES (format('small-%s-%s@example.vn', tag, i), 'Trần Thị ' || i)
                RETURNING user_id INTO u;
            INSERT INTO bookings (user_id, destination, hotel_name, check_in_date, check_out_date, guests, total_amount)
                VALUES (u, 'Đà Nẵng', 'Bench Hotel', DATE '2025-07-01', DATE '2025-07-04', 2, 4200000.00)
                RETURNING booking_id INTO b;
            INSERT INTO payments (booking_id, amount, method, card_last4) VALUES (b, 4200000.00, 'card', '4242')
                RETURNING payment_id INTO p;
            changes := changes + 3;
        WHEN 1 THEN
            UPDATE bookings SET status = 'confirmed' WHERE booking_id = b;
            UPDATE payments SET status = 'captured', provider_ref = 'ref-' || i WHERE payment_id = p;
            changes := changes + 2;
        WHEN 2 THEN
            UPDATE users SET loyalty_tier = 'silver' WHERE user_id = u;
            changes := changes + 1;
        ELSE
            IF (i / 4) % 2 = 0 THEN
                DELETE FROM payments WHERE payment_id = p;
                DELETE FROM bookings WHERE booking_id = b;
                DELETE FROM users WHERE user_id = u;
                changes := changes + 3;
            ELSE
                UPDATE payments SET status = 'reconciled' WHERE payment_id = p;
                changes := changes + 1;
            END IF;
        END CASE;
        COMMIT;
    END LOOP;
END
$$;
"#;
