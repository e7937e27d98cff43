//! TLS to PostgreSQL with libpq's `sslmode` semantics: the server gets a certificate for
//! `localhost` (DNS name only) signed by a test CA, and the connector, pointed at it with
//! `sslmode` and `sslrootcert` in `--pg-url`, streams over TLS on every connection (the
//! replication one included) when the certificate checks out, and stops with an error naming
//! the certificate problem when it does not.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    time::Duration,
};

use e2e::{
    cdc_records,
    certificates::{make_ca, make_server_certificate},
    connector_args_with, connector_command, eventually, run_sql, stack_without_connector,
    wait_for_health_status,
};
use local_stack::{Stack, containers::Backend};

/// Gives the server its certificate and key (in its data directory, owned like it, the key
/// 0600) and turns TLS on with a configuration reload; returns once a TLS connection works.
async fn enable_server_tls(stack: &Stack, certificates: &Path) {
    let data = stack.options().pg_data_dir();
    let owner = std::fs::metadata(&data).expect("the data directory").uid();
    let group = std::fs::metadata(&data).unwrap().gid();
    for (file, mode) in [("server.crt", 0o644), ("server.key", 0o600)] {
        let target = data.join(format!("tls-test-{file}"));
        std::fs::copy(certificates.join(file), &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&target, Some(owner), Some(group)).unwrap();
    }
    // ALTER SYSTEM cannot run in a transaction block, so one statement per psql.
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'tls-test-server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'tls-test-server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        run_sql(stack, sql).await;
    }
    // The stack's psql connects over TCP with libpq's default sslmode=prefer.
    eventually(
        "PostgreSQL accepts TLS",
        Duration::from_secs(30),
        || async {
            let ssl = stack
                .psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .await?;
            Ok((ssl.trim() == "t").then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\npostgres log:\n{}", stack.log_tail("postgres", 20)));
}

fn pg_url(stack: &Stack, host: &str, query: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/{}?{query}",
        stack.ports().postgres,
        stack.options().database
    )
}

/// A connector on `url` stops with an error saying each of `needles`.
async fn fails_with(stack: &Stack, url: &str, needles: &[&str]) {
    let (args, _) = connector_args_with(stack, &[("--pg-url", url)]);
    let stderr = e2e::connector_stderr_after_failure(stack, &args).await;
    for needle in needles {
        assert!(stderr.contains(needle), "{url}: no {needle:?} in {stderr}");
    }
}

/// The connector's connections as (all, over TLS, replication connections over TLS).
async fn connector_connections(stack: &Stack) -> (i64, i64, i64) {
    let row = stack
        .psql(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl), \
                    count(*) FILTER (WHERE s.ssl AND a.backend_type = 'walsender') \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'cdc-connector'",
        )
        .await
        .unwrap();
    let numbers: Vec<i64> = row.trim().split('|').map(|n| n.parse().unwrap()).collect();
    (numbers[0], numbers[1], numbers[2])
}

/// Runs a connector with `url` until it streams, checks that all its connections (at least the
/// replication one and the catalog one) use TLS, and stops it.
async fn streams_over_tls(stack: &Stack, url: &str) {
    let (args, health) = connector_args_with(stack, &[("--pg-url", url)]);
    let mut child = connector_command(stack, &args).spawn().unwrap();
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let (all, tls, replication) = eventually(
        "the connector's connections",
        Duration::from_secs(20),
        || async {
            let counts = connector_connections(stack).await;
            Ok((counts.0 >= 2 && counts.2 >= 1).then_some(counts))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(all, tls, "{url}: every connection uses TLS");
    assert_eq!(replication, 1, "{url}: the replication connection uses TLS");
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    // The slot is released when the walsender notices; wait so the next run starts clean.
    eventually("the connector is gone", Duration::from_secs(20), || async {
        Ok((connector_connections(stack).await.0 == 0).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_and_sslrootcert_are_honoured_on_every_connection() {
    let stack = stack_without_connector("postgres-tls").await;
    if stack.options().backend != Backend::Native {
        eprintln!("skipped: the test places certificates in a native PostgreSQL's data directory");
        stack.shutdown().await.unwrap();
        return;
    }
    let certificates = tempfile::tempdir().unwrap();
    let ca = make_ca(certificates.path(), "test-ca");
    let other_ca = make_ca(certificates.path(), "other-ca");
    make_server_certificate(certificates.path(), "test-ca", "DNS:localhost");
    let ca = ca.display().to_string();
    let other_ca = other_ca.display().to_string();

    // Before TLS is on: require refuses a server that does not offer it.
    let url = pg_url(&stack, "127.0.0.1", "sslmode=require");
    fails_with(&stack, &url, &["TLS", "does not accept TLS"]).await;

    // A verifying mode without its CA file is a configuration error at start.
    let url = pg_url(&stack, "localhost", "sslmode=verify-full");
    fails_with(
        &stack,
        &url,
        &["--pg-url", "sslmode=verify-full needs sslrootcert"],
    )
    .await;

    enable_server_tls(&stack, certificates.path()).await;

    // verify-full with the certificate's name: streams a change end to end over TLS.
    let url = pg_url(
        &stack,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let (args, health) = connector_args_with(&stack, &[("--pg-url", &url)]);
    let mut child = connector_command(&stack, &args).spawn().unwrap();
    wait_for_health_status(&health, "streaming", Duration::from_secs(60))
        .await
        .unwrap();
    run_sql(
        &stack,
        "INSERT INTO users (email, full_name) VALUES ('tls@example.com', 'Over TLS')",
    )
    .await;
    let records = cdc_records(&stack, Duration::from_secs(60), |records| {
        records
            .iter()
            .any(|r| r.value.to_string().contains("tls@example.com"))
    })
    .await;
    assert!(
        records
            .iter()
            .any(|r| r.table() == "public.users" && r.operation() == "INSERT")
    );
    let (all, tls, replication) = connector_connections(&stack).await;
    assert!(all >= 2, "replication and catalog connections: {all}");
    assert_eq!(all, tls, "every connection uses TLS");
    assert_eq!(replication, 1, "the replication connection uses TLS");
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    eventually("the connector is gone", Duration::from_secs(20), || async {
        Ok((connector_connections(&stack).await.0 == 0).then_some(()))
    })
    .await
    .unwrap();

    // verify-full by IP address: the certificate names only localhost.
    let url = pg_url(
        &stack,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    fails_with(
        &stack,
        &url,
        &["TLS", "certificate not valid for name \"127.0.0.1\""],
    )
    .await;

    // verify-ca does not check the name; require checks nothing.
    streams_over_tls(
        &stack,
        &pg_url(
            &stack,
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
    )
    .await;
    streams_over_tls(&stack, &pg_url(&stack, "127.0.0.1", "sslmode=require")).await;

    // A CA that did not sign the server's certificate.
    let url = pg_url(
        &stack,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    );
    fails_with(&stack, &url, &["TLS", "not signed by a CA in sslrootcert"]).await;

    stack.shutdown().await.unwrap();
}
