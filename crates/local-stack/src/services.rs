//! The project's own services: the CDC connector, the ingestion gateway, the stream processor
//! and the simulators (workload). Their command lines ([`Stack::connector_args`] and the like,
//! which tests reuse to run extra instances), their URLs, and starting and stopping them.

use crate::Stack;
use crate::options::BUILD_HINT;
use crate::probes::{check_port_free, http_get_status, wait_ready};
use crate::processes::{Service, kill_and_reap, terminate};
use anyhow::{Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Command;

impl Stack {
    /// HTTP base of the connector's metrics/health listener, `http://127.0.0.1:PORT`.
    pub fn connector_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.connector)
    }

    /// Arguments the connector is started with (tests may append their own and spawn it),
    /// [`StackOptions::connector_extra_args`](crate::StackOptions::connector_extra_args) last.
    pub fn connector_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--pg-url".into(),
            self.connector_pg_url(),
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
        ];
        args.extend(self.opts.connector_extra_args.iter().cloned());
        args
    }

    /// The database URL the connector is given: as its role, through its proxy if it has one.
    fn connector_pg_url(&self) -> String {
        let role = self.opts.connector_role.as_deref().unwrap_or("postgres");
        self.pg_url_at(
            role,
            self.opts
                .connector_pg_port
                .unwrap_or(self.opts.ports.postgres),
        )
    }

    /// Path of the `cdc-connector` binary used by [`Stack::start_connector`].
    pub fn connector_binary(&self) -> PathBuf {
        self.opts.bin_dir.join("cdc-connector")
    }

    pub fn connector_running(&self) -> bool {
        self.connector.is_some()
    }

    /// Whether the connector the stack started is still alive (it has not exited by itself).
    pub fn connector_running_process(&mut self) -> bool {
        self.connector
            .as_mut()
            .is_some_and(|c| matches!(c.child.try_wait(), Ok(None)))
    }

    /// Starts `cdc-connector` with [`Stack::connector_args`] and waits for `GET /health` = 200.
    pub async fn start_connector(&mut self) -> Result<()> {
        not_running(&mut self.connector, "connector")?;
        self.require_registry("connector")?;
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

    /// Starts `cdc-connector` with [`Stack::connector_args`] without waiting for it to be ready:
    /// for starting it while something it needs is down.
    pub fn spawn_connector(&mut self) -> Result<()> {
        not_running(&mut self.connector, "connector")?;
        let service = self.spawn_http_service(
            "connector",
            self.connector_binary(),
            self.connector_args(),
            self.opts.ports.connector,
        )?;
        self.connector = Some(service);
        Ok(())
    }

    fn require_registry(&self, service: &str) -> Result<()> {
        if !self.registry_started() {
            bail!("the {service} needs the schema registry, which this stack did not start");
        }
        Ok(())
    }

    /// Spawns a service that will listen on `port`, once its binary and the port are checked.
    fn spawn_http_service(
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
        self.spawn(name, cmd)
    }

    /// Spawns a service that serves `GET /health` on `port` and waits until it answers 200; a
    /// service that does not get there is killed, and the error carries its log.
    pub(crate) async fn start_http_service(
        &self,
        name: &'static str,
        bin: PathBuf,
        args: Vec<String>,
        port: u16,
    ) -> Result<Service> {
        let mut service = self.spawn_http_service(name, bin, args, port)?;
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

    /// HTTP base of the ingestion gateway, `http://127.0.0.1:PORT`.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.gateway)
    }

    /// Arguments the gateway is started with, before [`StackOptions::gateway_extra_args`](crate::StackOptions::gateway_extra_args).
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

    /// The gateway's process id (native process), for measuring it.
    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateway.as_ref().and_then(|g| g.child.id())
    }

    pub fn gateway_running(&self) -> bool {
        self.gateway.is_some()
    }

    /// Starts `gateway` with [`Stack::gateway_args`] and the extra arguments, and waits for
    /// `GET /health` = 200 (topics provisioned, schemas registered, broker and registry reachable).
    pub async fn start_gateway(&mut self) -> Result<()> {
        not_running(&mut self.gateway, "gateway")?;
        self.require_registry("gateway")?;
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
        let Some(s) = self.gateway.take() else {
            bail!("the gateway is not running");
        };
        terminate(s, &self.opts, Duration::from_secs(30)).await
    }

    pub fn processor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.processor)
    }

    /// The processor's SQL port on 127.0.0.1.
    pub fn sql_port(&self) -> u16 {
        self.opts.ports.sql
    }

    /// Arguments the processor is started with, before [`StackOptions::processor_extra_args`](crate::StackOptions::processor_extra_args).
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

    /// Starts `processor` with [`Stack::processor_args`] and the extra arguments, and waits for
    /// `GET /health` = 200 (topics provisioned, schemas registered, partitions assigned and
    /// their state restored).
    pub async fn start_processor(&mut self) -> Result<()> {
        self.require_registry("processor")?;
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
    /// [`StackOptions::simulator_extra_args`](crate::StackOptions::simulator_extra_args): every source at the workload's default (the
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
}

/// Fails when `service` still runs; forgets it when it has exited.
fn not_running(service: &mut Option<Service>, name: &str) -> Result<()> {
    if let Some(s) = service.as_mut()
        && let Ok(None) = s.child.try_wait()
    {
        bail!("the {name} is already running");
    }
    *service = None;
    Ok(())
}
