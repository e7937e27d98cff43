//! Runs the real `schema-registry` binary for integration tests.
//!
//! Each test binary uses a different subset of these helpers, hence the `dead_code` allowances.

use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running registry process, killed when dropped so a failing test never leaks one.
pub struct RunningRegistry {
    child: Child,
    pub url: String,
    stderr_path: PathBuf,
}

impl RunningRegistry {
    /// Starts the binary on a free port with `data_dir` and waits until `/health` is ready.
    pub async fn start(data_dir: &Path) -> Self {
        match Self::try_start(data_dir).await {
            Ok(registry) => registry,
            Err(message) => panic!("{message}"),
        }
    }

    /// Like [`start`](Self::start), but returns the start-up failure with the process's stderr.
    pub async fn try_start(data_dir: &Path) -> Result<Self, String> {
        let port = free_port();
        let stderr_path = data_dir.with_extension(format!("{port}.stderr"));
        let stderr = File::create(&stderr_path).map_err(|e| format!("stderr file: {e}"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_schema-registry"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("SCHEMA_REGISTRY_CONFIG")
            .env_remove("SCHEMA_REGISTRY_DEFAULT_COMPATIBILITY")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start the schema-registry binary: {e}"))?;
        let mut registry = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stderr_path,
        };
        registry.wait_until_healthy().await?;
        Ok(registry)
    }

    async fn wait_until_healthy(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "schema-registry exited during start-up ({status}); stderr:\n{}",
                    self.stderr()
                ));
            }
            let health = client.get(format!("{}/health", self.url)).send().await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "schema-registry did not become healthy within 30s; stderr:\n{}",
            self.stderr()
        ))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills the process abruptly (no graceful shutdown), as a crash would.
    #[allow(
        dead_code,
        reason = "each test binary uses a different part of these helpers"
    )]
    pub fn kill(mut self) {
        self.kill_and_wait();
    }

    fn kill_and_wait(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RunningRegistry {
    fn drop(&mut self) {
        self.kill_and_wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("an ephemeral port on 127.0.0.1")
}

/// A record schema `name` with the given fields, as JSON text.
#[allow(
    dead_code,
    reason = "each test binary uses a different part of these helpers"
)]
pub fn record_schema(name: &str, fields: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","namespace":"test","fields":[{fields}]}}"#)
}
