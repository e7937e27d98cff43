//! PostgreSQL: initdb, `pg_ctl` start/stop/status (as the `postgres` user, through `runuser`,
//! when we run as root), creating the database, and `psql`. Every PostgreSQL process the stack
//! runs goes through [`pg_command_std`], so root handling lives in one place.

use crate::Stack;
use crate::containers::Backend;
use crate::options::{INSTALL_HINT, StackOptions, is_root};
use crate::probes::check_port_free;
use crate::processes::{log_stdio, tail_msg};
use anyhow::{Context, Result, anyhow, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

impl Stack {
    /// Runs `psql -X -A -t -v ON_ERROR_STOP=1 -c SQL` against the stack's database; returns
    /// stdout. The error carries psql's stderr.
    pub async fn psql(&self, sql: &str) -> Result<String> {
        self.psql_in(&self.opts.database, sql).await
    }

    /// Like [`Stack::psql`], in another database.
    pub async fn psql_in(&self, database: &str, sql: &str) -> Result<String> {
        run_psql(&self.opts, database, &["-c", sql]).await
    }

    /// Applies a SQL file with `psql -v ON_ERROR_STOP=1 -f FILE`.
    pub async fn psql_file(&self, file: &Path) -> Result<String> {
        let f = file.to_string_lossy().into_owned();
        run_psql(&self.opts, &self.opts.database, &["-q", "-f", &f]).await
    }

    /// Stops PostgreSQL (`pg_ctl stop -m fast`); the other services keep running and see it go
    /// away. Start it again with [`Stack::start_postgres`]. Native back-end only.
    pub async fn stop_postgres(&mut self) -> Result<()> {
        self.stop_postgres_with(ShutdownMode::Fast).await
    }

    /// Stops PostgreSQL with the given `pg_ctl` shutdown mode: `Immediate` is a crash as far
    /// as the data is concerned (recovery replays WAL at the next start).
    pub async fn stop_postgres_with(&mut self, mode: ShutdownMode) -> Result<()> {
        self.native_postgres("stop")?;
        if !self.pg_running {
            bail!("PostgreSQL is not running");
        }
        pg_stop(&self.opts, mode).await?;
        self.pg_running = false;
        Ok(())
    }

    /// Stops and starts PostgreSQL again with the same data directory, ports and settings
    /// (settings changed with `ALTER SYSTEM` take effect). Native back-end only.
    pub async fn restart_postgres(&mut self) -> Result<()> {
        self.stop_postgres().await?;
        self.start_postgres().await
    }

    fn native_postgres(&self, what: &str) -> Result<()> {
        if self.opts.backend != Backend::Native {
            bail!("cannot {what} PostgreSQL of the container back-end (native back-end only)");
        }
        Ok(())
    }

    /// Starts PostgreSQL: `initdb` when the data directory is new, `pg_ctl start` with the
    /// stack's port and socket, then the database (created, with the init SQL, when missing).
    /// Native back-end only.
    pub async fn start_postgres(&mut self) -> Result<()> {
        self.native_postgres("start")?;
        let o = self.opts.clone();
        let pg_dir = o.pg_dir();
        let data = o.pg_data_dir();
        let sock = o.pg_socket_dir();
        let log = o.log_file("postgres");
        for d in [&pg_dir, &sock] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        if !log.exists() {
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        }
        if is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or_else(|| {
                    anyhow!("running as root but there is no `postgres` user: {INSTALL_HINT}")
                })?;
            for p in [&pg_dir, &sock, &log] {
                nix::unistd::chown(p.as_path(), Some(user.uid), Some(user.gid))
                    .with_context(|| format!("chown postgres {}", p.display()))?;
            }
            if !pg_dir.starts_with(&o.root) {
                eprintln!(
                    "local-stack: the postgres user cannot reach {}; PostgreSQL data lives in {}",
                    o.root.display(),
                    pg_dir.display()
                );
            }
        }

        if pg_ctl_status(&o).await {
            bail!(
                "PostgreSQL is already running on data directory {} (a stack left running? run `local-stack down`)",
                data.display()
            );
        }

        if !data.join("PG_VERSION").exists() {
            let initdb_log = o.log_file("initdb");
            let status = pg_command(&o, "initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ])
                .stdin(Stdio::null())
                .stdout(log_stdio(&initdb_log)?)
                .stderr(log_stdio(&initdb_log)?)
                .status()
                .await
                .context("running initdb")?;
            if !status.success() {
                bail!("initdb failed ({status}); {}", tail_msg(&initdb_log));
            }
            let conf = data.join("postgresql.conf");
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&conf)
                .with_context(|| format!("opening {}", conf.display()))?;
            writeln!(
                f,
                "\n# added by local-stack\ninclude_if_exists = 'local-stack.conf'"
            )?;
        }
        // Rewritten at each start so ports/socket follow the options.
        let stack_conf = data.join("local-stack.conf");
        std::fs::write(
            &stack_conf,
            format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n",
                o.ports.postgres,
                sock.to_string_lossy().replace('\'', "''")
            ),
        )
        .with_context(|| format!("writing {}", stack_conf.display()))?;
        if is_root()
            && let Ok(Some(user)) = nix::unistd::User::from_name("postgres")
        {
            nix::unistd::chown(stack_conf.as_path(), Some(user.uid), Some(user.gid))?;
        }

        check_port_free(o.ports.postgres, "postgres")?;
        // No `pg_ctl -l`: the server inherits pg_ctl's stdout/stderr, a log file we open
        // ourselves, so the log can live under <root>/logs whoever owns that directory.
        let status = pg_command(&o, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args([
                "-w",
                "-t",
                &o.ready_timeout.as_secs().max(1).to_string(),
                "start",
            ])
            .stdin(Stdio::null())
            .stdout(log_stdio(&log)?)
            .stderr(log_stdio(&log)?)
            .process_group(0)
            .status()
            .await
            .context("running pg_ctl start")?;
        if !status.success() {
            // pg_ctl -w may leave a half-started server behind.
            self.pg_running = true;
            bail!("PostgreSQL failed to start ({status}); {}", tail_msg(&log));
        }
        self.pg_running = true;
        self.ensure_database().await
    }

    /// Waits until PostgreSQL answers a query over TCP (a container's server restarts once
    /// after its first initialisation).
    pub(crate) async fn wait_for_postgres(&self) -> Result<()> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            match self.psql_in("postgres", "SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!(
                        "PostgreSQL did not answer within {:?}",
                        self.opts.ready_timeout
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Creates the database and applies the init SQL when the database does not exist yet.
    pub(crate) async fn ensure_database(&self) -> Result<()> {
        let o = &self.opts;
        let exists = self
            .psql_in(
                "postgres",
                &format!(
                    "SELECT 1 FROM pg_database WHERE datname = {}",
                    quote_literal(&o.database)
                ),
            )
            .await?;
        if exists.trim() != "1" {
            self.psql_in(
                "postgres",
                &format!("CREATE DATABASE {}", quote_ident(&o.database)),
            )
            .await?;
            if let Some(init) = &o.init_sql {
                if !init.is_file() {
                    bail!("init SQL file {} not found", init.display());
                }
                self.psql_file(init)
                    .await
                    .with_context(|| format!("applying {}", init.display()))?;
            }
        }
        // The roles grant on init.sql's tables; roles.sql is idempotent, so an existing
        // developer's cluster gets them too.
        if let (Some(_), Some(roles)) = (&o.init_sql, &o.roles_sql) {
            let file = roles.to_string_lossy().into_owned();
            let db = format!("db={}", o.database);
            run_psql(o, &o.database, &["-q", "-v", &db, "-f", &file])
                .await
                .with_context(|| format!("applying {}", roles.display()))?;
        }
        Ok(())
    }
}

pub(crate) fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// A command running a PostgreSQL server binary, as the postgres user when we are root.
fn pg_command(o: &StackOptions, prog: &str) -> Command {
    Command::from(pg_command_std(o, prog))
}

/// [`pg_command`] for code that cannot await (dropping a [`Stack`]).
pub(crate) fn pg_command_std(o: &StackOptions, prog: &str) -> std::process::Command {
    let bin = o.pg_bin_dir.join(prog);
    if is_root() {
        let runuser = find_in_path("runuser").unwrap_or_else(|| PathBuf::from("runuser"));
        let mut c = std::process::Command::new(runuser);
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    }
}

pub(crate) async fn pg_ctl_status(o: &StackOptions) -> bool {
    let data = o.pg_data_dir();
    if !data.join("postmaster.pid").exists() {
        return false;
    }
    pg_command(o, "pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("status")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `pg_ctl stop -m fast`, waiting up to `timeout` for the server to go away.
/// `pg_ctl stop -m MODE`: how PostgreSQL shuts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Disconnects clients, checkpoints, stops.
    Fast,
    /// Kills every server process at once, no checkpoint: the next start runs crash recovery.
    Immediate,
}

impl ShutdownMode {
    fn pg_ctl_name(self) -> &'static str {
        match self {
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

pub(crate) fn pg_stop_command(
    o: &StackOptions,
    mode: ShutdownMode,
    timeout: Duration,
) -> std::process::Command {
    let mut c = pg_command_std(o, "pg_ctl");
    c.arg("-D")
        .arg(o.pg_data_dir())
        .args([
            "-m",
            mode.pg_ctl_name(),
            "-w",
            "-t",
            &timeout.as_secs().to_string(),
            "stop",
        ])
        .stdin(Stdio::null());
    c
}

/// Stops PostgreSQL ([`pg_stop_command`], 60 s); the error carries `pg_ctl`'s output.
pub(crate) async fn pg_stop(o: &StackOptions, mode: ShutdownMode) -> Result<()> {
    let out = Command::from(pg_stop_command(o, mode, Duration::from_secs(60)))
        .output()
        .await
        .context("running pg_ctl stop")?;
    if !out.status.success() {
        bail!(
            "pg_ctl stop failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

async fn run_psql(o: &StackOptions, database: &str, extra: &[&str]) -> Result<String> {
    let psql = o.pg_bin_dir.join("psql");
    let out = Command::new(&psql)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &o.ports.postgres.to_string(),
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .args(extra)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", psql.display()))?;
    if !out.status.success() {
        bail!(
            "psql {:?} failed ({}): {}",
            extra,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
