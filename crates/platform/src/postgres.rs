//! What a PostgreSQL error means for the caller: whether retrying the same request later can
//! succeed. Classified once, by SQLSTATE class, so every service that talks to PostgreSQL
//! retries the same errors (Materialize's transient vs definite replication errors).

/// Whether an error with this SQLSTATE can heal by itself, so a retry after a pause may succeed:
/// the connection was lost, the server is short of resources or shutting down, a replication slot
/// is still held by a dying walsender, a transaction lost a serialization conflict or deadlock.
/// Everything else (privileges, missing objects, bad SQL, invalid configuration) needs a person.
pub fn sqlstate_is_transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
        || code == "55006" // object in use: a slot still held by a dying walsender
        || code == "55P03" // lock not available
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock detected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_heal_and_refusals_do_not() {
        for transient in [
            "08006", "08001", "53100", "53300", "57P01", "57P03", "55006", "40001",
        ] {
            assert!(sqlstate_is_transient(transient), "{transient}");
        }
        for definite in [
            "42501", "42704", "42P01", "28P01", "3D000", "22P02", "55000",
        ] {
            assert!(!sqlstate_is_transient(definite), "{definite}");
        }
    }
}
