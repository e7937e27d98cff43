//! Starts real stacks (PostgreSQL, tansu, schema registry) and checks they come up and go away
//! cleanly. Needs scripts/install-deps.sh and `cargo build --workspace --bins` (for the
//! registry binary; set LOCAL_STACK_TEST_NO_REGISTRY=1 to leave the registry out).

use local_stack::{Stack, StackOptions, kafka_api_versions_probe, live_children, process_alive};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

// Tests in one process (plain `cargo test`) share the child list checked below.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn with_registry() -> bool {
    std::env::var_os("LOCAL_STACK_TEST_NO_REGISTRY").is_none()
}

async fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|p| process_alive(*p as i32))
            .collect();
        let children = live_children();
        if alive.is_empty() && children.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("processes left behind: stack pids {alive:?}, children {children:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stack_without_connector_starts_and_stops_cleanly() {
    let _g = SERIAL.lock().await;
    let mut opts = StackOptions::for_tests("no-connector");
    opts.start_connector = false;
    opts.start_registry = with_registry();
    let root = opts.root.clone();
    let init_sql_present = opts.init_sql.is_some();
    let stack = match Stack::start(opts).await {
        Ok(s) => s,
        Err(e) => panic!("stack failed to start: {e:#}"),
    };

    assert_eq!(
        stack.psql("SHOW wal_level").await.unwrap().trim(),
        "logical"
    );
    assert_eq!(
        stack
            .psql("SELECT current_database()")
            .await
            .unwrap()
            .trim(),
        "travel"
    );
    if init_sql_present {
        let tables = stack
            .psql(
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
                 WHERE schemaname = 'public' AND tablename IN ('users','bookings','payments')",
            )
            .await
            .unwrap();
        assert_eq!(tables.trim(), "bookings,payments,users");
    }
    // psql errors carry stderr.
    let err = stack.psql("SELECT * FROM no_such_table").await.unwrap_err();
    assert!(format!("{err:#}").contains("no_such_table"), "{err:#}");

    let broker: SocketAddr = stack.kafka_brokers().parse().unwrap();
    kafka_api_versions_probe(broker).expect("broker answers ApiVersions");
    if with_registry() {
        let reg: SocketAddr = stack
            .registry_url()
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        assert_eq!(local_stack::http_get_status(reg, "/health").unwrap(), 200);
    }
    assert!(stack.pg_url().starts_with("postgres://postgres@127.0.0.1:"));
    assert!(stack.connector_args().contains(&"--slot-name".to_string()));

    let pids = stack.pids();
    assert!(pids.len() >= 2, "broker and postmaster at least: {pids:?}");
    stack.shutdown().await.expect("clean shutdown");
    assert_all_gone(&pids).await;
    assert!(!root.exists(), "test root removed after shutdown");
}

#[tokio::test]
async fn dropping_a_stack_stops_everything() {
    let _g = SERIAL.lock().await;
    let mut opts = StackOptions::for_tests("drop");
    opts.start_connector = false;
    opts.start_registry = false;
    opts.init_sql = None;
    let root = opts.root.clone();
    let stack = Stack::start(opts).await.unwrap_or_else(|e| panic!("{e:#}"));
    let pids = stack.pids();
    drop(stack);
    assert_all_gone(&pids).await;
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn failing_service_reports_its_log_and_cleans_up() {
    let _g = SERIAL.lock().await;
    use std::os::unix::fs::PermissionsExt;
    let mut opts = StackOptions::for_tests("fail");
    opts.start_connector = false;
    opts.init_sql = None;
    // A fake registry that dies at once.
    let bin = opts.root.with_extension("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("schema-registry");
    std::fs::write(&fake, "#!/bin/sh\necho 'fake registry: boom' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    opts.bin_dir = bin.clone();
    let data = opts.pg_data_dir();
    let root = opts.root.clone();

    let err = Stack::start(opts)
        .await
        .expect_err("the fake registry must fail the start");
    let msg = format!("{err:#}");
    assert!(msg.contains("registry exited during start-up"), "{msg}");
    assert!(
        msg.contains("fake registry: boom"),
        "log tail in the error: {msg}"
    );
    assert!(
        !data.join("postmaster.pid").exists(),
        "PostgreSQL stopped after the failure"
    );
    assert_all_gone(&[]).await;
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(bin);
}

#[tokio::test]
async fn missing_postgres_is_a_clear_error() {
    let mut opts = StackOptions::for_tests("nopg");
    opts.pg_bin_dir = Path::new("/nonexistent/pg/bin").to_path_buf();
    let err = Stack::start(opts).await.expect_err("must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("initdb not found at /nonexistent/pg/bin"),
        "{msg}"
    );
    assert!(msg.contains("install-deps.sh"), "{msg}");
}

/// A stand-in for the registry/connector: serves `GET /health` on `--listen`.
fn fake_http_service(dir: &Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = r#"#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --listen) L="$2"; shift;; esac; shift; done
D=$(mktemp -d); echo ok > "$D/health"
exec python3 -m http.server --bind "${L%:*}" --directory "$D" "${L##*:}"
"#;
    let p = dir.join(name);
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn connector_lifecycle_with_stand_in_binaries() {
    let _g = SERIAL.lock().await;
    let mut opts = StackOptions::for_tests("fake-connector");
    opts.init_sql = None;
    opts.start_connector = true;
    let bin = opts.root.with_extension("bin");
    std::fs::create_dir_all(&bin).unwrap();
    fake_http_service(&bin, "schema-registry");
    fake_http_service(&bin, "cdc-connector");
    opts.bin_dir = bin.clone();
    let mut stack = Stack::start(opts).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert!(stack.connector_running());
    let health: SocketAddr = stack
        .connector_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    assert_eq!(
        local_stack::http_get_status(health, "/health").unwrap(),
        200
    );

    stack.kill_connector();
    assert!(!stack.connector_running());
    assert!(
        local_stack::http_get_status(health, "/health").is_err(),
        "killed connector is gone"
    );
    stack
        .start_connector()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        stack.start_connector().await.is_err(),
        "a second connector is refused"
    );
    stack.stop_connector().await;
    assert!(!stack.connector_running());
    stack
        .start_connector()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    let pids = stack.pids();
    assert_eq!(
        pids.len(),
        4,
        "broker, registry, connector, postmaster: {pids:?}"
    );
    stack.shutdown().await.expect("clean shutdown");
    assert_all_gone(&pids).await;
    let _ = std::fs::remove_dir_all(bin);
}

/// As root, a state directory the postgres user cannot reach (a clone under /root) still works:
/// PostgreSQL's data moves to a directory under $TMPDIR.
#[tokio::test]
async fn root_dir_unreachable_by_postgres() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let _g = SERIAL.lock().await;
    let mut opts = StackOptions::for_tests("private");
    opts.start_connector = false;
    let private = opts.root.with_extension("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    opts.root = private.join("state");
    opts.start_registry = false;
    opts.init_sql = None;
    let pg_dir = opts.pg_dir();
    assert!(!pg_dir.starts_with(&private), "{}", pg_dir.display());
    let stack = Stack::start(opts).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        stack.psql("SHOW wal_level").await.unwrap().trim(),
        "logical"
    );
    let pids = stack.pids();
    stack.shutdown().await.expect("clean shutdown");
    assert_all_gone(&pids).await;
    assert!(!pg_dir.exists(), "fallback pg dir removed");
    let _ = std::fs::remove_dir_all(private);
}

/// The defaults of `for_tests`: init.sql, registry and the real connector (built by
/// `cargo build --workspace --bins`).
#[tokio::test]
async fn default_test_stack_runs_the_real_connector() {
    let _g = SERIAL.lock().await;
    let opts = StackOptions::for_tests("real-connector");
    let mut stack = Stack::start(opts).await.unwrap_or_else(|e| panic!("{e:#}"));
    let health: SocketAddr = stack
        .connector_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    assert_eq!(
        local_stack::http_get_status(health, "/health").unwrap(),
        200
    );
    assert_eq!(
        local_stack::http_get_status(health, "/metrics").unwrap(),
        200
    );
    let slots = stack
        .psql("SELECT slot_name FROM pg_replication_slots WHERE active")
        .await
        .unwrap();
    assert_eq!(slots.trim(), local_stack::DEFAULT_SLOT);
    // Restart after a crash resumes from the slot.
    stack.kill_connector();
    stack
        .start_connector()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pids = stack.pids();
    stack.shutdown().await.expect("clean shutdown");
    assert_all_gone(&pids).await;
}
