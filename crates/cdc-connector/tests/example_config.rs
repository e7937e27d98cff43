//! The shipped example configuration is accepted, and a typo in a config file is named.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_cdc-connector");

#[test]
fn example_config_parses() {
    // `--help` after a config file still validates the file first; use an invalid extra flag
    // to stop before connecting while proving the file itself was accepted.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/cdc-connector.example.toml");
    let output = Command::new(BINARY)
        .args(["--config", example, "--status-interval-secs", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--status-interval-secs"),
        "only the flag is rejected, not the file: {stderr}"
    );
}

#[test]
fn unknown_config_key_is_named() {
    let dir = std::env::temp_dir().join(format!("cdc-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.toml");
    std::fs::write(&file, "slot_nmae = \"x\"\n").unwrap();
    let output = Command::new(BINARY)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown option `slot_nmae`"), "{stderr}");
}
