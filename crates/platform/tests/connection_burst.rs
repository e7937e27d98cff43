//! Every service's listener (`telemetry::listen_on`, used by `telemetry::serve*`) queues a
//! burst of connecting clients larger than tokio's default backlog of 1,024, instead of the
//! kernel dropping the handshakes beyond it (each of those clients would retry only after a
//! second: a fleet reconnecting after a deploy saw its first requests take a second or more).

use std::time::Duration;

use tokio::net::TcpStream;

/// More than tokio's default backlog (1,024), within the kernel's default cap (4,096).
const CLIENTS: usize = 2000;

/// Lets this process hold `wanted` open files (the soft limit is often 1,024).
fn allow_open_files(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < wanted {
        assert!(
            hard >= wanted,
            "this test opens {wanted} sockets; the hard limit on open files is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("setrlimit");
    }
}

#[tokio::test]
async fn a_burst_of_connections_beyond_tokios_default_backlog_is_queued_not_dropped() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("net.core.somaxconn")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        somaxconn > CLIENTS,
        "the kernel caps every listen backlog at net.core.somaxconn = {somaxconn}; this test \
         needs more than {CLIENTS} (`sysctl net.core.somaxconn=4096`, Linux's default since 5.4)"
    );
    allow_open_files(CLIENTS as u64 + 256);
    // Nothing accepts: every handshake must wait in the listener's queue.
    let listener = platform::telemetry::listen_on("127.0.0.1:0".parse().unwrap()).expect("listen");
    let address = listener.local_addr().unwrap();

    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        // On loopback a queued handshake completes at once. A dropped one is retried by the
        // client after 1 s and 3 s, and dropped again while the queue stays full.
        connecting.spawn(tokio::time::timeout(
            Duration::from_millis(2500),
            TcpStream::connect(address),
        ));
    }
    let mut connected = Vec::with_capacity(CLIENTS);
    while let Some(attempt) = connecting.join_next().await {
        if let Ok(Ok(stream)) = attempt.expect("connect task") {
            connected.push(stream);
        }
    }
    assert_eq!(
        connected.len(),
        CLIENTS,
        "only {} of {CLIENTS} handshakes completed before the server accepted any: the kernel \
         dropped the rest (listen backlog too small)",
        connected.len()
    );
    drop(listener);
}
