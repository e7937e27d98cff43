//! Confluent's own Python client (confluent-kafka) against the real binary.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::RunningRegistry;

/// `PLATFORM_PYTHON`, else the venv `scripts/install-deps.sh` creates in the workspace.
fn python_interpreter() -> PathBuf {
    if let Some(python) = std::env::var_os("PLATFORM_PYTHON") {
        let python = PathBuf::from(python);
        assert!(
            python.exists(),
            "PLATFORM_PYTHON={} does not exist; point it at a Python with \
             confluent-kafka[avro,schemaregistry] or run scripts/install-deps.sh",
            python.display()
        );
        return python;
    }
    let workspace_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv_python = workspace_root.join(".stack/venv/bin/python");
    assert!(
        venv_python.exists(),
        "no Python client environment: {} is missing and PLATFORM_PYTHON is unset; \
         run scripts/install-deps.sh to create it",
        venv_python.display()
    );
    venv_python
}

#[tokio::test]
async fn confluent_python_client_round_trips_through_the_registry() {
    let python = python_interpreter();
    let dir = tempfile::tempdir().unwrap();
    let registry = RunningRegistry::start(&dir.path().join("data")).await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/registry_client_check.py");

    let output = tokio::process::Command::from(Command::new(&python))
        .arg(&script)
        .arg(&registry.url)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nregistry stderr:\n{}",
        script.display(),
        output.status,
        registry.stderr()
    );
    assert!(stdout.contains("registry client check passed"), "{stdout}");
}
