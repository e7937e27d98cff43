//! SQL against the stack's PostgreSQL: statements that must succeed, rows read back as JSON,
//! and `psql` as a separate process (a writer racing the connector).

use local_stack::Stack;
use serde_json::Value;

/// Runs `sql` with `psql`; panics with the statement and psql's error when it fails.
pub async fn run_sql(stack: &Stack, sql: &str) {
    stack
        .psql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs a query returning one JSON value (e.g. `SELECT json_build_object(...) FROM t WHERE
/// ...`): what PostgreSQL itself holds, in the shape a record should have.
pub async fn json_row(stack: &Stack, sql: &str) -> Value {
    let text = stack
        .psql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `psql` running `sql` against the stack's database (e.g. a writer racing the connector),
/// stopping at the first error, killed when dropped.
pub fn psql_command(stack: &Stack, sql: &str) -> tokio::process::Command {
    psql_command_as(stack, "postgres", sql)
}

/// [`psql_command`] logged in as `role`.
pub fn psql_command_as(stack: &Stack, role: &str, sql: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("psql");
    command
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &stack.pg_url_as(role),
            "-c",
            sql,
        ])
        .kill_on_drop(true);
    command
}
