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
//!
//! The crate is split by job: `options` (where things are, ports, [`StackOptions`]),
//! `postgres`, `broker`, `registry`, `services` (the project's own binaries), `processes`
//! (spawning, stopping, `/proc`), `probes` (readiness, ports), `down` (pid files, `local-stack
//! down`) and [`containers`]. This file holds the [`Stack`] itself: starting everything in
//! order and stopping it again.

mod broker;
pub mod containers;
mod down;
mod options;
pub mod perf;
mod postgres;
mod probes;
mod processes;
mod registry;
mod services;

pub use broker::{kafka_api_versions_probe, tansu_broker_args};
pub use down::{down, remove_owner_pid, running_owner, write_owner_pid};
pub use options::{
    DEFAULT_PG_BIN_DIR, DEFAULT_PUBLICATION, DEFAULT_SLOT, Ports, StackOptions, python,
    tansu_binary, test_bin_dir, workspace_root,
};
pub use probes::http_get_status;
pub use processes::{live_children, log_tail, process_alive};

use anyhow::{Context, Result, anyhow, bail};
use containers::{Backend, Containers, Images};
use down::check_no_leftovers;
use options::{BUILD_HINT, INSTALL_HINT, is_root};
pub use postgres::ShutdownMode;
use postgres::{find_in_path, pg_stop, pg_stop_command, postmaster_pid};
use processes::{Service, stop_services, terminate};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The topic the CDC connector writes every change to.
pub const CDC_TOPIC: &str = platform::topics::CDC_CHANGES.name;

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
        self.pg_url_as("postgres")
    }

    /// The database's URL for `role` (the servers trust local connections).
    pub fn pg_url_as(&self, role: &str) -> String {
        self.pg_url_at(role, self.opts.ports.postgres)
    }

    /// The database's URL for `role` on `port` of 127.0.0.1 (PostgreSQL's, or a proxy's).
    pub fn pg_url_at(&self, role: &str, port: u16) -> String {
        format!("postgres://{role}@127.0.0.1:{port}/{}", self.opts.database)
    }

    /// `127.0.0.1:PORT`: the broker's port, or the one it advertises when a proxy stands in
    /// front of it ([`StackOptions::kafka_advertised_port`]), so clients bootstrap through it too.
    pub fn kafka_brokers(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.opts
                .kafka_advertised_port
                .unwrap_or(self.opts.ports.kafka)
        )
    }

    /// `http://127.0.0.1:PORT`
    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.registry)
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

    /// The services that run, in the order they stop (first the ones that feed others),
    /// taken out of the stack. The one list [`Stack::shutdown`] and `Drop` both stop.
    fn take_services(&mut self) -> Vec<Service> {
        [
            self.simulators.take(),
            self.gateway.take(),
            self.processor.take(),
            self.connector.take(),
            self.registry.take(),
            self.broker.take(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Stops simulators, gateway, processor, connector, registry and broker one after the
    /// other (SIGTERM, SIGKILL after 15 s), then PostgreSQL (`pg_ctl stop -m fast`) or the
    /// containers. Removes `root` when `cleanup_root` is set and all went well.
    pub async fn shutdown(mut self) -> Result<()> {
        let mut errors = Vec::new();
        for s in self.take_services() {
            if let Err(e) = terminate(s, &self.opts, Duration::from_secs(15)).await {
                errors.push(format!("{e:#}"));
            }
        }
        if self.pg_running {
            self.pg_running = false;
            if let Err(e) = pg_stop(&self.opts, ShutdownMode::Fast).await {
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

/// Best effort and synchronous (no runtime to await on): the same services in the same order
/// as [`Stack::shutdown`], all signalled at once with 5 s to exit, then PostgreSQL; the
/// containers remove themselves when dropped.
impl Drop for Stack {
    fn drop(&mut self) {
        let services = self.take_services();
        let any = !services.is_empty() || self.pg_running;
        stop_services(services, &self.opts, Duration::from_secs(5));
        if self.pg_running {
            self.pg_running = false;
            let _ = pg_stop_command(&self.opts, ShutdownMode::Fast, Duration::from_secs(30))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if any {
            platform::shutdown::note(format_args!(
                "local-stack: stack dropped without shutdown(); processes stopped, state and logs kept in {}",
                self.opts.root.display()
            ));
        }
    }
}

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
