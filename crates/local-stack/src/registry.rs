//! The schema registry: the project's `schema-registry` binary with its data under
//! `<root>/registry`, ready once `GET /health` answers 200.

use crate::Stack;
use crate::options::BUILD_HINT;
use crate::probes::{check_port_free, http_get_status, wait_ready};
use crate::processes::kill_and_reap;
use anyhow::{Result, bail};
use std::net::SocketAddr;
use tokio::process::Command;

impl Stack {
    /// Starts the registry (native back-end), with the data the last one left, and waits until
    /// it answers.
    pub async fn start_registry(&mut self) -> Result<()> {
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

    /// SIGKILL the native registry and reap it; its data stays for [`Stack::start_registry`].
    pub fn kill_registry(&mut self) {
        kill_and_reap(self.registry.take(), &self.opts);
    }

    /// Whether a schema registry runs (a native process or a container).
    pub(crate) fn registry_started(&self) -> bool {
        self.registry.is_some() || (self.containers.is_some() && self.opts.start_registry)
    }
}
