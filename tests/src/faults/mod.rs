//! The fault suite: each common production failure run as a repeatable experiment under
//! continuous OLTP load (the workload driver), counting what reached the topic against
//! PostgreSQL's own account of what committed ([`truth`]).
//!
//! Every fault gets a fresh stack, a ground-truth `test_decoding` slot created before the load,
//! then its cycles; after the last one the load stops, the connector catches up, the topic is
//! read back and [`tally`] counts committed, found, lost, duplicated, phantom and out-of-order
//! changes. Faults also carry their own checks (the slot does not advance while the broker is
//! frozen, the gateway refuses with 503 what it cannot store, the connector notices a silent
//! network cut). `faults` (the binary, `./dev faults`) runs the full suite and writes a report;
//! `tests/fault_suite.rs` runs a short form of each fault in CI.

pub mod proxy;
pub mod report;
pub mod tally;
pub mod truth;

mod gateway_traffic;
mod load;

use std::{
    fmt,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use local_stack::{ShutdownMode, Stack, StackOptions};
use serde::Serialize;

use crate::{
    connector::wait_until_slot_confirms_current_wal, disk::SmallDisk, records::read_cdc_until,
};
use gateway_traffic::GatewayTraffic;
use load::Load;
use proxy::CutProxy;
use tally::{Delivered, Tally};
use truth::TruthSlot;

/// The faults, in the order the suite runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The connector killed with SIGKILL at random moments, restarted at once.
    ConnectorKill,
    /// The broker frozen with SIGSTOP for the outage, then SIGCONT.
    BrokerFrozen,
    /// The network between every client and the broker silently cut for the outage.
    NetworkCutToBroker,
    /// PostgreSQL stopped with `pg_ctl -m fast` and started again while streaming.
    PostgresFastRestart,
    /// PostgreSQL stopped with `pg_ctl -m immediate` (a crash; recovery at start) and started.
    PostgresImmediateRestart,
    /// The network between the connector and PostgreSQL silently cut for the outage.
    NetworkCutToPostgres,
    /// The schema registry down when the connector starts, and again during the run.
    RegistryDown,
    /// The spill directory full in the middle of a large streamed transaction, then freed.
    SpillFull,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::ConnectorKill,
        Fault::BrokerFrozen,
        Fault::NetworkCutToBroker,
        Fault::PostgresFastRestart,
        Fault::PostgresImmediateRestart,
        Fault::NetworkCutToPostgres,
        Fault::RegistryDown,
        Fault::SpillFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::ConnectorKill => "connector-kill",
            Fault::BrokerFrozen => "broker-frozen",
            Fault::NetworkCutToBroker => "network-cut-to-broker",
            Fault::PostgresFastRestart => "postgres-fast-restart",
            Fault::PostgresImmediateRestart => "postgres-immediate-restart",
            Fault::NetworkCutToPostgres => "network-cut-to-postgres",
            Fault::RegistryDown => "registry-down",
            Fault::SpillFull => "spill-full",
        }
    }

    /// What one cycle does, for the report.
    pub fn describe(self, options: &SuiteOptions) -> String {
        let outage = options.outage.as_secs();
        match self {
            Fault::ConnectorKill => {
                "SIGKILL at a random moment 0.2-2 s after the last recovery, restart at once".into()
            }
            Fault::BrokerFrozen => format!(
                "broker SIGSTOP for {outage} s, then SIGCONT; the gateway takes events meanwhile"
            ),
            Fault::NetworkCutToBroker => format!(
                "a proxy in front of the broker (its advertised address) forwards nothing for \
                 {outage} s; the gateway takes events meanwhile"
            ),
            Fault::PostgresFastRestart => "pg_ctl stop -m fast, start".into(),
            Fault::PostgresImmediateRestart => {
                "pg_ctl stop -m immediate (crash recovery at start), start".into()
            }
            Fault::NetworkCutToPostgres => format!(
                "a proxy between connector and PostgreSQL forwards nothing for {outage} s (no FIN, no RST)"
            ),
            Fault::RegistryDown => format!(
                "registry down {outage} s while the connector starts, then {outage} s during the run"
            ),
            Fault::SpillFull => format!(
                "a {SPILL_ROWS}-row transaction (about 2 MB, streamed before its commit) into a \
                 256 KiB --spill-dir; the disk grown to 64 MiB once /health says spill_full"
            ),
        }
    }

    fn cycles(self, options: &SuiteOptions) -> usize {
        match self {
            Fault::ConnectorKill => options.kill_cycles,
            Fault::RegistryDown => 1,
            _ => options.outage_cycles,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How hard the suite pushes.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteOptions {
    /// SIGKILL cycles of the connector.
    pub kill_cycles: usize,
    /// Cycles of every other fault (broker frozen, PostgreSQL restarts, network cuts).
    pub outage_cycles: usize,
    /// How long the broker stays frozen, the network cut, the registry down.
    #[serde(serialize_with = "as_seconds")]
    pub outage: Duration,
    /// OLTP operations per second of the load.
    pub load_rate: u32,
    /// Seed of the load and of the random kill moments.
    pub seed: u64,
}

fn as_seconds<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(duration.as_secs_f64())
}

impl SuiteOptions {
    /// What the issue asks of a full run: 50 kills, 30 s outages.
    pub fn full() -> Self {
        Self {
            kill_cycles: 50,
            outage_cycles: 3,
            outage: Duration::from_secs(30),
            load_rate: 150,
            seed: 20_261_201,
        }
    }

    /// A few cycles of each fault, for CI.
    pub fn short() -> Self {
        Self {
            kill_cycles: 4,
            outage_cycles: 1,
            outage: Duration::from_secs(12),
            load_rate: 100,
            seed: 4711,
        }
    }
}

/// A fault's own check beside the tally.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(what: &str, passed: bool, detail: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            passed,
            detail: detail.into(),
        }
    }
}

/// What one fault did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultOutcome {
    pub fault: Fault,
    pub description: String,
    pub cycles: usize,
    pub tally: Tally,
    /// From the end of a fault until the slot confirmed everything written at that moment.
    #[serde(serialize_with = "as_seconds")]
    pub longest_recovery: Duration,
    pub checks: Vec<Check>,
}

impl FaultOutcome {
    pub fn passed(&self) -> bool {
        self.tally.clean() && self.checks.iter().all(|c| c.passed)
    }
}

/// The connector's settings in the suite: a 6 s source timeout (the default 60 s would make
/// each network cut a minute), at most 3 s between retries, and frequent heartbeats and status
/// updates so recovery is seen at once even between transactions.
const CONNECTOR_ARGS: [&str; 8] = [
    "--source-timeout-secs",
    "6",
    "--max-retry-backoff-secs",
    "3",
    "--heartbeat-interval-secs",
    "2",
    "--status-interval-secs",
    "1",
];

/// Rows of the large transaction of [`Fault::SpillFull`].
const SPILL_ROWS: usize = 8_000;

/// Runs every fault in `faults`, one fresh stack each.
pub async fn run_suite(faults: &[Fault], options: &SuiteOptions) -> Result<Vec<FaultOutcome>> {
    let mut outcomes = Vec::new();
    for &fault in faults {
        eprintln!("faults: {fault}: {}", fault.describe(options));
        let outcome = run_fault(fault, options)
            .await
            .with_context(|| format!("fault {fault}"))?;
        eprintln!(
            "faults: {fault}: {} ({:?})",
            if outcome.passed() { "passed" } else { "FAILED" },
            outcome.tally
        );
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// One fault on a fresh stack, under load, tallied against the ground truth.
pub async fn run_fault(fault: Fault, options: &SuiteOptions) -> Result<FaultOutcome> {
    let mut stack_options = StackOptions::for_tests(&format!("faults-{fault}"));
    stack_options
        .connector_extra_args
        .extend(CONNECTOR_ARGS.map(String::from));
    let proxy = match fault {
        Fault::NetworkCutToPostgres => {
            let postgres: SocketAddr = ([127, 0, 0, 1], stack_options.ports.postgres).into();
            let proxy = CutProxy::start(postgres).await?;
            stack_options.connector_pg_port = Some(proxy.port());
            Some(proxy)
        }
        Fault::NetworkCutToBroker => {
            let broker: SocketAddr = ([127, 0, 0, 1], stack_options.ports.kafka).into();
            let proxy = CutProxy::start(broker).await?;
            stack_options.kafka_advertised_port = Some(proxy.port());
            Some(proxy)
        }
        _ => None,
    };
    let with_gateway = matches!(fault, Fault::BrokerFrozen | Fault::NetworkCutToBroker);
    if with_gateway {
        stack_options.start_gateway = true;
        stack_options
            .gateway_extra_args
            .extend(["--produce-timeout-ms", "2000", "--retry-after-secs", "1"].map(String::from));
    }
    let spill_disk = if fault == Fault::SpillFull {
        let disk = SmallDisk::mount("256k")
            .context("the spill-full fault mounts a tmpfs, which needs root")?;
        stack_options.connector_extra_args.extend([
            "--spill-dir".to_string(),
            disk.path().to_string_lossy().into_owned(),
        ]);
        Some(disk)
    } else {
        None
    };
    // The registry fault starts the connector itself, with the registry down.
    stack_options.start_connector = fault != Fault::RegistryDown;
    let mut stack = Stack::start(stack_options).await?;
    if spill_disk.is_some() {
        prepare_spilling(&stack).await?;
    }
    let mut run = Run {
        slot: stack.options().slot_name.clone(),
        spilled: 0,
        rng: XorShift::new(options.seed ^ fault as u64),
        recoveries: Vec::new(),
        checks: Vec::new(),
    };
    if fault == Fault::RegistryDown {
        run.registry_down_at_start(&mut stack, options).await?;
    }
    let truth = TruthSlot::create(&stack, "fault_suite_truth").await?;
    let load = Load::start(&stack, options.load_rate, options.seed)?;
    let gateway = with_gateway.then(|| GatewayTraffic::start(&stack));
    // Some load before the first fault, so it strikes a stream in motion.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cycles = fault.cycles(options);
    for _ in 0..cycles {
        match fault {
            Fault::ConnectorKill => run.kill_connector(&mut stack).await?,
            Fault::BrokerFrozen => {
                let outage = BrokerOutage {
                    begin: &|| stack.freeze_broker(true),
                    end: &|| stack.freeze_broker(false),
                };
                run.broker_outage(&stack, options, outage).await?
            }
            Fault::NetworkCutToBroker => {
                let proxy = proxy.as_ref().expect("the proxy of the network fault");
                let outage = BrokerOutage {
                    begin: &|| {
                        proxy.cut();
                        Ok(())
                    },
                    end: &|| {
                        proxy.heal();
                        Ok(())
                    },
                };
                run.broker_outage(&stack, options, outage).await?
            }
            Fault::PostgresFastRestart => {
                run.restart_postgres(&mut stack, ShutdownMode::Fast).await?
            }
            Fault::PostgresImmediateRestart => {
                run.restart_postgres(&mut stack, ShutdownMode::Immediate)
                    .await?
            }
            Fault::NetworkCutToPostgres => {
                let proxy = proxy.as_ref().expect("the proxy of the network fault");
                run.cut_network(&stack, proxy, options).await?
            }
            Fault::RegistryDown => run.registry_down_while_running(&mut stack, options).await?,
            Fault::SpillFull => {
                let disk = spill_disk.as_ref().expect("the disk of the spill fault");
                run.fill_spill_directory(&mut stack, disk).await?
            }
        }
    }
    // More load after the last fault: the stream goes on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop().await?;
    if let Some(gateway) = gateway {
        run.checks.extend(gateway.stop_and_check(&stack).await?);
    }
    wait_until_slot_confirms_current_wal(&stack, &run.slot, Duration::from_secs(180))
        .await
        .with_context(|| {
            format!(
                "the connector did not catch up\nconnector log:\n{}",
                stack.log_tail("connector", 30)
            )
        })?;
    let publication = stack.options().publication_name.clone();
    let committed = truth.committed(&stack, &publication).await?;
    let delivered = read_changes(&stack, committed.len()).await?;
    let tally = tally::tally(&committed, truth.start_lsn, &delivered);
    if committed.is_empty() {
        bail!("the load committed nothing: the experiment measured nothing");
    }
    let outcome = FaultOutcome {
        fault,
        description: fault.describe(options),
        cycles,
        tally,
        longest_recovery: run.recoveries.iter().copied().max().unwrap_or_default(),
        checks: run.checks,
    };
    stack.shutdown().await?;
    drop(proxy);
    drop(spill_disk);
    Ok(outcome)
}

/// Streams any transaction over 64 kB before its commit (so the connector stages it in
/// `--spill-dir`), and adds a table of its own for the large transactions to the publication.
async fn prepare_spilling(stack: &Stack) -> Result<()> {
    let publication = &stack.options().publication_name;
    for sql in [
        "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'".to_string(),
        "SELECT pg_reload_conf()".to_string(),
        "CREATE TABLE public.fault_spill (id bigint PRIMARY KEY, payload text)".to_string(),
        format!("ALTER PUBLICATION {publication} ADD TABLE public.fault_spill"),
    ] {
        stack.psql(&sql).await?;
    }
    Ok(())
}

/// Reads the change topic until it holds at least `expected` distinct changes, or until it
/// has been quiet long enough to say the rest is not coming.
async fn read_changes(stack: &Stack, expected: usize) -> Result<Vec<Delivered>> {
    let mut distinct = std::collections::HashSet::new();
    let mut counted = 0;
    let read = read_cdc_until(
        &stack.kafka_brokers(),
        &stack.registry_url(),
        Duration::from_secs(60),
        |records| {
            for record in &records[counted..] {
                if record.operation() != "READ" {
                    distinct.insert(record.change_id().to_string());
                }
            }
            counted = records.len();
            distinct.len() >= expected
        },
    )
    .await;
    match read {
        Ok(records) => Ok(Delivered::changes(&records)),
        // Fewer than expected: read whatever is there, and let the tally say what is missing.
        Err(_) => {
            let all = crate::records::read_topic_all(
                &stack.kafka_brokers(),
                &stack.registry_url(),
                platform::topics::CDC_CHANGES.name,
                Duration::from_secs(10),
            )
            .await?;
            Ok(Delivered::changes(&all))
        }
    }
}

/// How a broker outage begins and ends (SIGSTOP and SIGCONT, or a cut and its healing).
struct BrokerOutage<'a> {
    begin: &'a dyn Fn() -> Result<()>,
    end: &'a dyn Fn() -> Result<()>,
}

/// The state of one fault's run.
struct Run {
    slot: String,
    /// Large transactions written so far (spill fault).
    spilled: usize,
    rng: XorShift,
    recoveries: Vec<Duration>,
    checks: Vec<Check>,
}

impl Run {
    /// Waits until the slot confirms everything written by now, and records how long that took
    /// since `since` (when the fault ended).
    async fn recovered(&mut self, stack: &Stack, since: Instant) -> Result<()> {
        wait_until_slot_confirms_current_wal(stack, &self.slot, Duration::from_secs(180))
            .await
            .with_context(|| {
                format!(
                    "no recovery\nconnector log:\n{}",
                    stack.log_tail("connector", 30)
                )
            })?;
        self.recoveries.push(since.elapsed());
        Ok(())
    }

    async fn confirmed_lsn(&self, stack: &Stack) -> Result<String> {
        Ok(stack
            .psql(&format!(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
                self.slot
            ))
            .await?
            .trim()
            .to_string())
    }

    async fn kill_connector(&mut self, stack: &mut Stack) -> Result<()> {
        let pause = self.rng.between(200, 2000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        stack.kill_connector();
        let killed = Instant::now();
        stack.start_connector().await?;
        self.recovered(stack, killed).await
    }

    /// The broker unreachable for the outage: the slot must not advance meanwhile.
    async fn broker_outage(
        &mut self,
        stack: &Stack,
        options: &SuiteOptions,
        outage: BrokerOutage<'_>,
    ) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(self.rng.between(500, 2000))).await;
        (outage.begin)()?;
        let frozen = async {
            // In-flight acknowledgements land within a moment; after that nothing may be
            // confirmed until the broker answers again.
            let settle = Duration::from_secs(3).min(options.outage / 3);
            tokio::time::sleep(settle).await;
            let early = self.confirmed_lsn(stack).await?;
            tokio::time::sleep(options.outage - settle).await;
            let late = self.confirmed_lsn(stack).await?;
            anyhow::Ok((early, late))
        }
        .await;
        (outage.end)()?;
        let thawed = Instant::now();
        let (early, late) = frozen?;
        self.checks.push(Check::new(
            "the slot does not advance while the broker is unreachable",
            early == late,
            format!("confirmed_flush_lsn {early} after the first moments, {late} at the end"),
        ));
        self.recovered(stack, thawed).await
    }

    async fn restart_postgres(&mut self, stack: &mut Stack, mode: ShutdownMode) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(self.rng.between(1000, 3000))).await;
        stack.stop_postgres_with(mode).await?;
        stack.start_postgres().await?;
        let restarted = Instant::now();
        self.recovered(stack, restarted).await
    }

    async fn cut_network(
        &mut self,
        stack: &Stack,
        proxy: &CutProxy,
        options: &SuiteOptions,
    ) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(self.rng.between(1000, 3000))).await;
        proxy.cut();
        let noticed = crate::connector::wait_for_health_status(
            &stack.connector_url(),
            "retrying",
            options.outage,
        )
        .await;
        let cut_for = Instant::now();
        tokio::time::sleep(options.outage.saturating_sub(cut_for.elapsed())).await;
        proxy.heal();
        let healed = Instant::now();
        self.checks.push(Check::new(
            "the connector notices a silent cut within its timeout",
            noticed.is_ok(),
            match &noticed {
                Ok(health) => format!("/health during the cut: {}", health["status"]),
                Err(e) => format!("{e:#}"),
            },
        ));
        self.recovered(stack, healed).await
    }

    async fn registry_down_at_start(
        &mut self,
        stack: &mut Stack,
        options: &SuiteOptions,
    ) -> Result<()> {
        stack.kill_registry();
        stack.spawn_connector()?;
        tokio::time::sleep(options.outage).await;
        let waiting = stack.connector_running_process();
        self.checks.push(Check::new(
            "a connector started without its registry waits for it",
            waiting,
            if waiting {
                "still running at the end of the outage"
            } else {
                "it exited"
            },
        ));
        stack.start_registry().await?;
        let back = Instant::now();
        crate::connector::wait_for_health_status(
            &stack.connector_url(),
            "streaming",
            Duration::from_secs(120),
        )
        .await
        .with_context(|| stack.log_tail("connector", 30))?;
        self.recoveries.push(back.elapsed());
        Ok(())
    }

    async fn registry_down_while_running(
        &mut self,
        stack: &mut Stack,
        options: &SuiteOptions,
    ) -> Result<()> {
        stack.kill_registry();
        tokio::time::sleep(options.outage).await;
        stack.start_registry().await?;
        let back = Instant::now();
        self.recovered(stack, back).await
    }

    async fn fill_spill_directory(&mut self, stack: &mut Stack, disk: &SmallDisk) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(self.rng.between(1000, 3000))).await;
        let first = self.spilled * SPILL_ROWS + 1;
        self.spilled += 1;
        stack
            .psql(&format!(
                "INSERT INTO public.fault_spill \
                 SELECT g, repeat('y', 200) FROM generate_series({first}, {}) g",
                first + SPILL_ROWS - 1
            ))
            .await?;
        let noticed = crate::connector::wait_for_health_status(
            &stack.connector_url(),
            "spill_full",
            Duration::from_secs(60),
        )
        .await;
        let alive = stack.connector_running_process();
        self.checks.push(Check::new(
            "a full spill directory pauses the connector, which says so and waits",
            noticed.is_ok() && alive,
            match &noticed {
                Ok(health) => format!("/health: {}; running: {alive}", health["status"]),
                Err(e) => format!("{e:#}; running: {alive}"),
            },
        ));
        disk.resize("64m")?;
        let freed = Instant::now();
        self.recovered(stack, freed).await?;
        // Small again for the next cycle (the staged file is gone once replayed).
        disk.resize("256k")
    }
}

/// A small deterministic generator for the random moments, so a run can be repeated.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low).max(1)
    }
}
