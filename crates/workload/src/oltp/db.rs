//! Runs planned operations against PostgreSQL, one transaction each, and returns the rows they
//! changed as PostgreSQL reports them.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};

use super::journal::RowChange;
use super::model::{BookingHandle, Operation, PaymentHandle, ProfileChange, UserHandle};

/// A table with its key column and the SQL expression of its row image (see `journal`).
pub struct Table {
    pub name: &'static str,
    pub relation: &'static str,
    pub key: &'static str,
    pub image: &'static str,
}

pub const USERS: Table = Table {
    name: "public.users",
    relation: "users",
    key: "user_id",
    image: "jsonb_build_object('user_id', user_id, 'external_id', external_id::text, 'email', email, \
            'full_name', full_name, 'phone', phone, 'country_code', country_code, 'loyalty_tier', loyalty_tier, \
            'is_active', is_active, 'preferences', preferences::text, \
            'created_at', (extract(epoch FROM created_at) * 1000000)::bigint, \
            'updated_at', (extract(epoch FROM updated_at) * 1000000)::bigint)::text",
};

pub const BOOKINGS: Table = Table {
    name: "public.bookings",
    relation: "bookings",
    key: "booking_id",
    image: "jsonb_build_object('booking_id', booking_id, 'booking_ref', booking_ref::text, 'user_id', user_id, \
            'destination', destination, 'hotel_name', hotel_name, \
            'check_in_date', check_in_date - DATE '1970-01-01', 'check_out_date', check_out_date - DATE '1970-01-01', \
            'guests', guests, 'total_amount', total_amount::text, 'currency', currency, 'status', status::text, \
            'details', details::text, \
            'created_at', (extract(epoch FROM created_at) * 1000000)::bigint, \
            'updated_at', (extract(epoch FROM updated_at) * 1000000)::bigint)::text",
};

pub const PAYMENTS: Table = Table {
    name: "public.payments",
    relation: "payments",
    key: "payment_id",
    image: "jsonb_build_object('payment_id', payment_id, 'booking_id', booking_id, 'amount', amount::text, \
            'currency', currency, 'method', method, 'card_last4', card_last4, 'status', status::text, \
            'provider_ref', provider_ref, 'metadata', metadata::text, \
            'created_at', (extract(epoch FROM created_at) * 1000000)::bigint, \
            'updated_at', (extract(epoch FROM updated_at) * 1000000)::bigint)::text",
};

pub const TABLES: [&Table; 3] = [&USERS, &BOOKINGS, &PAYMENTS];

/// The 32-bit transaction id CDC records carry (`pg_current_xact_id` adds the epoch).
const XID: &str = "(pg_current_xact_id()::text::bigint % 4294967296)";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the database disagrees with the plan: {0}")]
    Diverged(String),
    #[error("bad row image from PostgreSQL: {0}")]
    Image(#[from] serde_json::Error),
}

/// Database keys of the entities one worker created: the plan speaks in handles.
#[derive(Debug, Default)]
pub struct Keys {
    users: HashMap<UserHandle, i64>,
    bookings: HashMap<BookingHandle, i64>,
    payments: HashMap<PaymentHandle, i64>,
}

/// What an operation did.
pub enum Executed {
    Changed(Vec<RowChange>),
    /// The operation concerns an entity whose creation failed earlier: nothing to do.
    Skipped,
}

impl Keys {
    /// Records the keys an operation created or removed, once its transaction committed.
    pub fn remember(&mut self, op: &Operation, changes: &[RowChange]) {
        let created = changes
            .first()
            .and_then(|c| c.row.as_ref())
            .and_then(|row| row.get(key_column(op)?))
            .and_then(Value::as_i64);
        match op {
            Operation::SignUp { user, .. } => {
                if let Some(key) = created {
                    self.users.insert(*user, key);
                }
            }
            Operation::CreateBooking { booking, .. } => {
                if let Some(key) = created {
                    self.bookings.insert(*booking, key);
                }
            }
            Operation::CreatePayment { payment, .. } => {
                if let Some(key) = created {
                    self.payments.insert(*payment, key);
                }
            }
            Operation::DeleteAccount { user } => {
                self.users.remove(user);
            }
            _ => {}
        }
    }
}

fn key_column(op: &Operation) -> Option<&'static str> {
    match op {
        Operation::SignUp { .. } => Some(USERS.key),
        Operation::CreateBooking { .. } => Some(BOOKINGS.key),
        Operation::CreatePayment { .. } => Some(PAYMENTS.key),
        _ => None,
    }
}

fn change(
    table: &Table,
    operation: &'static str,
    xid: i64,
    key: i64,
    image: Option<&str>,
) -> Result<RowChange, ExecError> {
    let mut key_map = Map::new();
    key_map.insert(table.key.to_string(), Value::from(key));
    Ok(RowChange {
        xid,
        table: table.name,
        operation,
        key: key_map,
        row: image.map(serde_json::from_str).transpose()?,
    })
}

/// Runs a statement returning `(key, image, xid)` rows.
async fn returning(
    conn: &mut PgConnection,
    table: &Table,
    operation: &'static str,
    query: sqlx::query::QueryAs<'_, Postgres, (i64, String, i64), sqlx::postgres::PgArguments>,
) -> Result<Vec<RowChange>, ExecError> {
    let rows = query.fetch_all(conn).await?;
    rows.into_iter()
        .map(|(key, image, xid)| {
            change(
                table,
                operation,
                xid,
                key,
                (operation != "DELETE").then_some(image.as_str()),
            )
        })
        .collect()
}

fn one(
    mut changes: Vec<RowChange>,
    what: impl FnOnce() -> String,
) -> Result<Vec<RowChange>, ExecError> {
    if changes.len() == 1 {
        Ok(vec![changes.remove(0)])
    } else {
        Err(ExecError::Diverged(what()))
    }
}

/// Runs `op` inside `tx` (not committed here: the caller orders commits).
pub async fn execute(
    tx: &mut Transaction<'static, Postgres>,
    keys: &Keys,
    op: &Operation,
) -> Result<Executed, ExecError> {
    let conn: &mut PgConnection = tx;
    let user_key = |user: &UserHandle| keys.users.get(user).copied();
    let booking_key = |booking: &BookingHandle| keys.bookings.get(booking).copied();
    let changes = match op {
        Operation::SignUp {
            email,
            full_name,
            phone,
            country_code,
            preferences,
            ..
        } => {
            let sql = format!(
                "INSERT INTO users (email, full_name, phone, country_code, preferences) VALUES ($1, $2, $3, $4, $5::jsonb) \
                 RETURNING user_id, {}, {XID}",
                USERS.image
            );
            let query = sqlx::query_as(AssertSqlSafe(sql))
                .bind(email)
                .bind(full_name)
                .bind(phone)
                .bind(*country_code)
                .bind(preferences);
            one(returning(conn, &USERS, "INSERT", query).await?, || {
                format!("inserting {email} returned no row")
            })?
        }
        Operation::EditProfile { user, change } => {
            let Some(key) = user_key(user) else {
                return Ok(Executed::Skipped);
            };
            let (column, cast) = match change {
                ProfileChange::Phone(_) => ("phone", ""),
                ProfileChange::FullName(_) => ("full_name", ""),
                ProfileChange::LoyaltyTier(_) => ("loyalty_tier", ""),
                ProfileChange::Preferences(_) => ("preferences", "::jsonb"),
                ProfileChange::Active(_) => ("is_active", ""),
            };
            let sql = format!(
                "UPDATE users SET {column} = $2{cast} WHERE user_id = $1 RETURNING user_id, {}, {XID}",
                USERS.image
            );
            let query = sqlx::query_as(AssertSqlSafe(sql)).bind(key);
            let query = match change {
                ProfileChange::Phone(phone) => query.bind(phone.clone()),
                ProfileChange::FullName(name) => query.bind(name.clone()),
                ProfileChange::LoyaltyTier(tier) => query.bind(tier.as_sql()),
                ProfileChange::Preferences(doc) => query.bind(doc.clone()),
                ProfileChange::Active(active) => query.bind(*active),
            };
            one(returning(conn, &USERS, "UPDATE", query).await?, || {
                format!("user {key} is gone")
            })?
        }
        Operation::DeleteAccount { user } => {
            let Some(key) = user_key(user) else {
                return Ok(Executed::Skipped);
            };
            // Children go first, explicitly, so each deleted row is journaled; the cascade
            // would delete them too, but out of the journal's sight.
            let mut changes = Vec::new();
            let sql = format!(
                "DELETE FROM payments WHERE booking_id IN (SELECT booking_id FROM bookings WHERE user_id = $1) \
                 RETURNING payment_id, ''::text, {XID}"
            );
            changes.extend(
                returning(
                    conn,
                    &PAYMENTS,
                    "DELETE",
                    sqlx::query_as(AssertSqlSafe(sql)).bind(key),
                )
                .await?,
            );
            let sql = format!(
                "DELETE FROM bookings WHERE user_id = $1 RETURNING booking_id, ''::text, {XID}"
            );
            changes.extend(
                returning(
                    conn,
                    &BOOKINGS,
                    "DELETE",
                    sqlx::query_as(AssertSqlSafe(sql)).bind(key),
                )
                .await?,
            );
            let sql =
                format!("DELETE FROM users WHERE user_id = $1 RETURNING user_id, ''::text, {XID}");
            let users = returning(
                conn,
                &USERS,
                "DELETE",
                sqlx::query_as(AssertSqlSafe(sql)).bind(key),
            )
            .await?;
            changes.extend(one(users, || format!("user {key} is gone"))?);
            changes
        }
        Operation::CreateBooking {
            user,
            destination,
            hotel_name,
            check_in_in_days,
            nights,
            guests,
            total_cents,
            currency,
            details,
            ..
        } => {
            let Some(key) = user_key(user) else {
                return Ok(Executed::Skipped);
            };
            let sql = format!(
                "INSERT INTO bookings (user_id, destination, hotel_name, check_in_date, check_out_date, guests, total_amount, currency, details) \
                 VALUES ($1, $2, $3, CURRENT_DATE + $4::int, CURRENT_DATE + $4::int + $5::int, $6, $7::numeric, $8, $9::jsonb) \
                 RETURNING booking_id, {}, {XID}",
                BOOKINGS.image
            );
            let query = sqlx::query_as(AssertSqlSafe(sql))
                .bind(key)
                .bind(*destination)
                .bind(*hotel_name)
                .bind(i32::from(*check_in_in_days))
                .bind(i32::from(*nights))
                .bind(*guests)
                .bind(cents_text(*total_cents))
                .bind(*currency)
                .bind(details);
            one(returning(conn, &BOOKINGS, "INSERT", query).await?, || {
                format!("user {key} is gone")
            })?
        }
        Operation::BookingTransition { booking, from, to } => {
            let Some(key) = booking_key(booking) else {
                return Ok(Executed::Skipped);
            };
            // The status guard makes a plan/database disagreement an error, not a silent
            // illegal transition.
            let sql = format!(
                "UPDATE bookings SET status = $2::booking_status WHERE booking_id = $1 AND status = $3::booking_status \
                 RETURNING booking_id, {}, {XID}",
                BOOKINGS.image
            );
            let query = sqlx::query_as(AssertSqlSafe(sql))
                .bind(key)
                .bind(to.as_sql())
                .bind(from.as_sql());
            one(returning(conn, &BOOKINGS, "UPDATE", query).await?, || {
                format!("booking {key} is not {}", from.as_sql())
            })?
        }
        Operation::CreatePayment {
            booking,
            amount_cents,
            currency,
            method,
            card_last4,
            ..
        } => {
            let Some(key) = booking_key(booking) else {
                return Ok(Executed::Skipped);
            };
            // Inserting from the booking row refuses a payment for a booking that is missing or
            // no longer pending, whatever the plan says.
            let sql = format!(
                "INSERT INTO payments (booking_id, amount, currency, method, card_last4) \
                 SELECT booking_id, $2::numeric, $3, $4, $5 FROM bookings WHERE booking_id = $1 AND status = 'pending' \
                 RETURNING payment_id, {}, {XID}",
                PAYMENTS.image
            );
            let query = sqlx::query_as(AssertSqlSafe(sql))
                .bind(key)
                .bind(cents_text(*amount_cents))
                .bind(*currency)
                .bind(*method)
                .bind(card_last4.clone());
            one(returning(conn, &PAYMENTS, "INSERT", query).await?, || {
                format!("booking {key} is not pending")
            })?
        }
        Operation::PaymentTransition {
            payment,
            from,
            to,
            provider_ref,
        } => {
            let Some(key) = keys.payments.get(payment).copied() else {
                return Ok(Executed::Skipped);
            };
            let sql = format!(
                "UPDATE payments SET status = $2::payment_status, provider_ref = COALESCE($4, provider_ref) \
                 WHERE payment_id = $1 AND status = $3::payment_status RETURNING payment_id, {}, {XID}",
                PAYMENTS.image
            );
            let query = sqlx::query_as(AssertSqlSafe(sql))
                .bind(key)
                .bind(to.as_sql())
                .bind(from.as_sql())
                .bind(provider_ref.clone());
            one(returning(conn, &PAYMENTS, "UPDATE", query).await?, || {
                format!("payment {key} is not {}", from.as_sql())
            })?
        }
    };
    Ok(Executed::Changed(changes))
}

/// numeric(12,2) text for an amount in hundredths.
pub fn cents_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Every row of `table` as its image, keyed by primary key: the database side of a
/// journal-versus-database comparison.
pub async fn snapshot(
    conn: &mut PgConnection,
    table: &Table,
) -> Result<HashMap<i64, Value>, ExecError> {
    let sql = format!(
        "SELECT {}, {} FROM {}",
        table.key, table.image, table.relation
    );
    let rows: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(sql)).fetch_all(conn).await?;
    rows.into_iter()
        .map(|(key, image)| Ok((key, serde_json::from_str(&image)?)))
        .collect()
}
