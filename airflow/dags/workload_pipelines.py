"""Builds Airflow DAGs from the workload's external-pipelines file (TOML).

One definition drives both orchestrators: the native scheduler (`workload external`) and these
DAGs read the same `[[pipeline]]` tables, and every task runs one step of the same Rust code
(`workload external-step fetch|transform|validate|publish`), handing over through files in a
work directory, so a failed step is retried alone.

Settings (environment at parse time; Airflow Variables of the same lower-case name win at run time):
  WORKLOAD_PIPELINES  the pipelines file (default: crates/workload/config/external-pipelines.toml)
  WORKLOAD_BIN        the workload binary (default: `workload` on PATH, else target/{release,debug})
  WORKLOAD_WORK_DIR   where step files go (default: $AIRFLOW_HOME/workload-runs)
  WORKLOAD_SEED       seed of the synthetic sources (default 42)
The publish step reads the sink from the environment as the binary always does (WORKLOAD_SINK,
WORKLOAD_KAFKA_BROKERS, WORKLOAD_SCHEMA_REGISTRY_URL, WORKLOAD_GATEWAY_URL).
"""

from __future__ import annotations

import os
import shutil
import tomllib
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.utils.task_group import TaskGroup

DAGS_DIR = Path(__file__).resolve().parent
REPO = DAGS_DIR.parent.parent
STEPS = ("fetch", "transform", "validate", "publish")
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def pipelines_file() -> Path:
    configured = os.environ.get("WORKLOAD_PIPELINES")
    if configured:
        return Path(configured)
    return REPO / "crates" / "workload" / "config" / "external-pipelines.toml"


def load_pipelines() -> dict[str, dict]:
    """The enabled pipelines by name, in file order (as `workload` reads them)."""
    with open(pipelines_file(), "rb") as f:
        document = tomllib.load(f)
    return {p["name"]: p for p in document.get("pipeline", []) if p.get("enabled", True)}


def default_binary() -> str:
    configured = os.environ.get("WORKLOAD_BIN")
    if configured:
        return configured
    on_path = shutil.which("workload")
    if on_path:
        return on_path
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / "workload"
        if candidate.exists():
            return str(candidate)
    return "workload"


def default_work_dir() -> str:
    configured = os.environ.get("WORKLOAD_WORK_DIR")
    if configured:
        return configured
    home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return str(Path(home) / "workload-runs")


def airflow_schedule(pipeline: dict) -> str:
    """The pipeline's cron with seconds (`sec min hour dom month dow`) as Airflow's 5 fields."""
    fields = pipeline["schedule"].split()
    if len(fields) not in (6, 7) or fields[0] != "0":
        raise ValueError(
            f"pipeline {pipeline['name']}: schedule {pipeline['schedule']!r} must fire at second 0 "
            "(sec min hour day-of-month month day-of-week) to run on Airflow"
        )
    if len(fields) == 7 and fields[6] != "*":
        raise ValueError(f"pipeline {pipeline['name']}: a year field cannot run on Airflow")
    return " ".join(fields[1:6])


def is_hourly(pipeline: dict) -> bool:
    """Fires once every hour (a fixed minute, every hour, every day)."""
    _sec, minute, hour, dom, month, dow = pipeline["schedule"].split()[:6]
    return minute.isdigit() and hour == "*" and dom == "*" and month == "*" and dow in ("*", "?")


def step_command(pipeline: str, step: str) -> str:
    setting = "var.value.get('{0}', params.{0})".format
    return (
        "set -eu\n"
        f'exec "{{{{ {setting("workload_bin")} }}}}" external-step {step} '
        f"--pipeline {pipeline} "
        f'--pipelines "{{{{ {setting("workload_pipelines")} }}}}" '
        f'--seed "{{{{ {setting("workload_seed")} }}}}" '
        '--logical-date "{{ ts }}" --run-id "{{ run_id }}" '
        f'--work-dir "{{{{ {setting("workload_work_dir")} }}}}"\n'
    )


def add_pipeline_tasks(pipeline: dict, *, task_group: TaskGroup | None = None) -> list[BashOperator]:
    """fetch >> transform >> validate >> publish, retried as the pipeline's file says."""
    backoff = timedelta(milliseconds=pipeline.get("retry_backoff_ms", 500))
    tasks = [
        BashOperator(
            task_id=step,
            task_group=task_group,
            bash_command=step_command(pipeline["name"], step),
            retries=max(pipeline.get("max_attempts", 3), 1) - 1,
            retry_delay=backoff,
            retry_exponential_backoff=True,
            max_retry_delay=timedelta(minutes=10),
            doc_md=f"`workload external-step {step} --pipeline {pipeline['name']}`",
        )
        for step in STEPS
    ]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
    return tasks


def default_params() -> dict:
    return {
        "workload_bin": default_binary(),
        "workload_pipelines": str(pipelines_file()),
        "workload_work_dir": default_work_dir(),
        "workload_seed": os.environ.get("WORKLOAD_SEED", "42"),
    }


def new_dag(dag_id: str, schedule: str, description: str, tags: list[str]) -> DAG:
    return DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        params=default_params(),
        tags=["external-data", *tags],
        doc_md=__doc__,
    )


def single_pipeline_dag(dag_id: str, name: str) -> DAG:
    """A DAG for one pipeline, on that pipeline's schedule."""
    pipeline = load_pipelines()[name]
    with new_dag(
        dag_id,
        airflow_schedule(pipeline),
        f"{name}: fetch -> transform/enrich -> validate -> publish to topic_external_data",
        [name],
    ) as dag:
        add_pipeline_tasks(pipeline)
    return dag


# Pipelines with a DAG of their own; every other one is config-driven.
DEDICATED = {"weather": "weather_data_ingestion", "maps": "maps_data_ingestion"}
