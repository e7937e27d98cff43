//! The short form of the fault suite (`e2e::faults`), one test per fault so each runs on its
//! own stack and within its own time limit: under continuous OLTP load, nothing PostgreSQL
//! committed is missing from the topic, nothing it did not commit is there, every key stays in
//! commit order, and each fault's own checks hold. `./dev faults` runs the full suite.

use e2e::faults::{Fault, SuiteOptions, run_fault};

async fn survives(fault: Fault) {
    let outcome = run_fault(fault, &SuiteOptions::short())
        .await
        .unwrap_or_else(|e| panic!("{fault}: {e:#}"));
    eprintln!("{outcome:#?}");
    assert!(outcome.tally.committed > 0, "the load committed nothing");
    assert!(outcome.passed(), "{fault} failed: {outcome:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_killed_at_random_moments() {
    survives(Fault::ConnectorKill).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_frozen() {
    survives(Fault::BrokerFrozen).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn network_to_broker_cut_silently() {
    survives(Fault::NetworkCutToBroker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_fast_restart() {
    survives(Fault::PostgresFastRestart).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_immediate_restart() {
    survives(Fault::PostgresImmediateRestart).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn network_to_postgres_cut_silently() {
    survives(Fault::NetworkCutToPostgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_down_at_start_and_during_the_run() {
    survives(Fault::RegistryDown).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spill_directory_full_mid_transaction() {
    survives(Fault::SpillFull).await;
}
