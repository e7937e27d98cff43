//! The container back-end: PostgreSQL, the Kafka broker and the schema registry as containers
//! (the `testcontainers` crate), instead of native processes. The project's own services
//! (connector, gateway, processor, simulators) stay native either way, so tests can kill and
//! restart them exactly as before.
//!
//! Chosen with `STACK_BACKEND=containers` (default `native`). Images come from
//! `STACK_POSTGRES_IMAGE`, `STACK_KAFKA_IMAGE` and `STACK_REGISTRY_IMAGE` and default to the
//! official ones; testcontainers pulls an image only when it is missing, so locally built
//! images (`scripts/docker-offline.sh`) work without a registry. What an image is decides how
//! it is started: a Kafka image whose name contains `tansu` runs the tansu broker, any other
//! Apache Kafka in KRaft mode; a registry image whose name contains `cp-schema-registry` runs
//! Confluent's (which needs the broker's in-network listener), any other the project's image
//! (`schema-registry` command).
//!
//! Every container joins one network per stack; its ports are published on 127.0.0.1 only, at
//! the stack's [`Ports`], so everything else addresses them exactly like native services.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, bail};
use testcontainers::{
    ContainerAsync, GenericImage, ImageExt,
    core::{IntoContainerPort, WaitFor},
    runners::AsyncRunner,
};

use crate::{Ports, http_get_status, kafka_api_versions_probe};

/// Which back-end runs the infrastructure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Native,
    Containers,
}

impl Backend {
    /// From `STACK_BACKEND` (`native`, the default, or `containers`).
    pub fn from_env() -> Result<Backend> {
        match std::env::var("STACK_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("native") => Ok(Backend::Native),
            Ok("containers") => Ok(Backend::Containers),
            Ok(other) => {
                bail!("STACK_BACKEND={other}: expected `native` or `containers`")
            }
        }
    }
}

/// The images of the container back-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    pub postgres: String,
    pub kafka: String,
    pub registry: String,
}

impl Images {
    pub const DEFAULT_POSTGRES: &str = "postgres:15";
    pub const DEFAULT_KAFKA: &str = "apache/kafka:3.9.1";
    pub const DEFAULT_REGISTRY: &str = "confluentinc/cp-schema-registry:7.9.0";

    /// `STACK_POSTGRES_IMAGE`, `STACK_KAFKA_IMAGE`, `STACK_REGISTRY_IMAGE`, or the official
    /// images.
    pub fn from_env() -> Images {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Images {
            postgres: var("STACK_POSTGRES_IMAGE", Self::DEFAULT_POSTGRES),
            kafka: var("STACK_KAFKA_IMAGE", Self::DEFAULT_KAFKA),
            registry: var("STACK_REGISTRY_IMAGE", Self::DEFAULT_REGISTRY),
        }
    }
}

/// `name[:tag]` split into name and tag (`latest` when none); a `:` inside a registry host
/// (`host:5000/name`) is not a tag.
fn name_and_tag(image: &str) -> (String, String) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(colon) => (
            image[..slash + colon].to_string(),
            image[slash + colon + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// Publishes every mapped port on 127.0.0.1 only (Docker's default is every interface).
fn loopback_only(host: &mut testcontainers::bollard::models::HostConfig) {
    if let Some(bindings) = host.port_bindings.as_mut() {
        for binding in bindings.values_mut().flatten().flatten() {
            binding.host_ip = Some("127.0.0.1".into());
        }
    }
}

/// Lets replication connections in from the Docker network (the image's own rules cover
/// ordinary connections only). Runs from `/docker-entrypoint-initdb.d` on first start.
const REPLICATION_HBA: &str =
    "#!/bin/sh\necho 'host replication all all trust' >> \"$PGDATA/pg_hba.conf\"\n";

/// The running infrastructure containers; removed by [`Containers::remove`] (or, failing
/// that, when dropped).
pub struct Containers {
    pub images: Images,
    postgres: Option<ContainerAsync<GenericImage>>,
    kafka: Option<ContainerAsync<GenericImage>>,
    registry: Option<ContainerAsync<GenericImage>>,
}

async fn wait_until(what: &str, timeout: Duration, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !ready() {
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not become ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

impl Containers {
    /// Starts PostgreSQL, the broker and (when `registry`) the registry, each ready to use.
    /// `prefix` names the network and containers (unique per stack).
    pub async fn start(
        images: Images,
        prefix: &str,
        ports: &Ports,
        registry: bool,
        ready_timeout: Duration,
    ) -> Result<Containers> {
        let network = format!("{prefix}-net");
        let mut running = Containers {
            images,
            postgres: None,
            kafka: None,
            registry: None,
        };
        running.postgres = Some(running.start_postgres(prefix, &network, ports).await?);
        let kafka_name = format!("{prefix}-kafka");
        running.kafka = Some(
            running
                .start_kafka(&kafka_name, &network, ports, ready_timeout)
                .await?,
        );
        if registry {
            running.registry = Some(
                running
                    .start_registry(prefix, &kafka_name, &network, ports, ready_timeout)
                    .await?,
            );
        }
        Ok(running)
    }

    async fn start_postgres(
        &self,
        prefix: &str,
        network: &str,
        ports: &Ports,
    ) -> Result<ContainerAsync<GenericImage>> {
        let (name, tag) = name_and_tag(&self.images.postgres);
        GenericImage::new(name, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_mapped_port(ports.postgres, 5432.tcp())
            .with_network(network)
            .with_container_name(format!("{prefix}-postgres"))
            .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
            .with_copy_to(
                "/docker-entrypoint-initdb.d/replication-hba.sh",
                REPLICATION_HBA.as_bytes().to_vec(),
            )
            .with_cmd([
                "postgres",
                "-c",
                "wal_level=logical",
                "-c",
                "max_replication_slots=10",
                "-c",
                "max_wal_senders=10",
            ])
            .with_host_config_modifier(loopback_only)
            .start()
            .await
            .with_context(|| {
                format!(
                    "starting the PostgreSQL container ({})",
                    self.images.postgres
                )
            })
    }

    async fn start_kafka(
        &self,
        container_name: &str,
        network: &str,
        ports: &Ports,
        ready_timeout: Duration,
    ) -> Result<ContainerAsync<GenericImage>> {
        let (name, tag) = name_and_tag(&self.images.kafka);
        let advertised = format!("127.0.0.1:{}", ports.kafka);
        let image = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_mapped_port(ports.kafka, 9092.tcp())
            .with_network(network)
            .with_container_name(container_name)
            .with_host_config_modifier(loopback_only);
        let image = if self.images.kafka.contains("tansu") {
            image.with_env_var("RUST_LOG", "warn").with_cmd([
                "tansu".to_string(),
                "broker".into(),
                "--listener-url".into(),
                "tcp://0.0.0.0:9092".into(),
                "--advertised-listener-url".into(),
                format!("tcp://{advertised}"),
                "--storage-engine".into(),
                "memory://tansu/".into(),
            ])
        } else {
            // KRaft, one node; HOST is what the host (tests, native services) uses, INTERNAL
            // what other containers (Confluent's registry) use.
            image
                .with_env_var("KAFKA_NODE_ID", "1")
                .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
                .with_env_var(
                    "KAFKA_LISTENERS",
                    "HOST://0.0.0.0:9092,INTERNAL://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093",
                )
                .with_env_var(
                    "KAFKA_ADVERTISED_LISTENERS",
                    format!("HOST://{advertised},INTERNAL://{container_name}:19092"),
                )
                .with_env_var(
                    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                    "HOST:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                )
                .with_env_var("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL")
                .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
                .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
                .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
                .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
                .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
                .with_env_var("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        };
        let container = image
            .start()
            .await
            .with_context(|| format!("starting the Kafka container ({})", self.images.kafka))?;
        let addr: SocketAddr = ([127, 0, 0, 1], ports.kafka).into();
        wait_until("the Kafka container", ready_timeout, || {
            kafka_api_versions_probe(addr).is_ok()
        })
        .await?;
        Ok(container)
    }

    async fn start_registry(
        &self,
        prefix: &str,
        kafka_name: &str,
        network: &str,
        ports: &Ports,
        ready_timeout: Duration,
    ) -> Result<ContainerAsync<GenericImage>> {
        let (name, tag) = name_and_tag(&self.images.registry);
        let container_name = format!("{prefix}-registry");
        let image = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_mapped_port(ports.registry, 8081.tcp())
            .with_network(network)
            .with_container_name(&container_name)
            .with_host_config_modifier(loopback_only);
        let image = if self.images.registry.contains("cp-schema-registry") {
            if self.images.kafka.contains("tansu") {
                bail!(
                    "Confluent's registry ({}) needs a broker listener inside the container network, which the tansu image ({}) does not have: use the project's registry image with tansu",
                    self.images.registry,
                    self.images.kafka
                );
            }
            image
                .with_env_var("SCHEMA_REGISTRY_HOST_NAME", &container_name)
                .with_env_var("SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081")
                .with_env_var(
                    "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS",
                    format!("PLAINTEXT://{kafka_name}:19092"),
                )
        } else {
            image.with_cmd([
                "schema-registry",
                "--listen",
                "0.0.0.0:8081",
                "--data-dir",
                "/tmp/schema-registry",
            ])
        };
        let container = image.start().await.with_context(|| {
            format!("starting the registry container ({})", self.images.registry)
        })?;
        let addr: SocketAddr = ([127, 0, 0, 1], ports.registry).into();
        wait_until("the registry container", ready_timeout, || {
            http_get_status(addr, "/subjects").is_ok_and(|s| s == 200)
        })
        .await?;
        Ok(container)
    }

    /// Stops and removes the broker (as if it crashed: its data is lost).
    pub async fn remove_kafka(&mut self) -> Result<()> {
        if let Some(kafka) = self.kafka.take() {
            kafka.rm().await.context("removing the Kafka container")?;
        }
        Ok(())
    }

    /// Removes every container (registry, broker, then PostgreSQL).
    pub async fn remove(mut self) -> Result<()> {
        let mut errors = Vec::new();
        for container in [
            self.registry.take(),
            self.kafka.take(),
            self.postgres.take(),
        ]
        .into_iter()
        .flatten()
        {
            let id = container.id().to_string();
            if let Err(e) = container.rm().await {
                errors.push(format!("removing container {id}: {e}"));
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_at_the_tag_not_at_a_registry_port() {
        assert_eq!(
            name_and_tag("postgres:15"),
            ("postgres".into(), "15".into())
        );
        assert_eq!(
            name_and_tag("local/tansu:0.1.2"),
            ("local/tansu".into(), "0.1.2".into())
        );
        assert_eq!(
            name_and_tag("host:5000/team/registry"),
            ("host:5000/team/registry".into(), "latest".into())
        );
        assert_eq!(
            name_and_tag("apache/kafka"),
            ("apache/kafka".into(), "latest".into())
        );
    }
}
