"""DAGs generated from the pipelines file: adding a [[pipeline]] table adds its tasks, no code.

`config_driven_pipeline` (hourly) holds every hourly pipeline without a DAG of its own (social
media, market data and news in the shipped file), one task group each; an hourly run at HH:00
runs each pipeline's HH:MM slot. A pipeline on another schedule (e.g. travel-trends, every 3 h)
gets `external_<name>_ingestion` on its own schedule.
"""

from airflow import DAG  # noqa: F401 (Airflow's safe mode looks for DAG files by these words)
from airflow.utils.task_group import TaskGroup

from workload_pipelines import DEDICATED, add_pipeline_tasks, is_hourly, load_pipelines, new_dag, single_pipeline_dag

pipelines = load_pipelines()
hourly = [p for name, p in pipelines.items() if name not in DEDICATED and is_hourly(p)]

with new_dag(
    "config_driven_pipeline",
    "@hourly",
    "Hourly pipelines from the pipelines file: " + ", ".join(p["name"] for p in hourly),
    ["config-driven"],
) as config_driven_pipeline:
    for pipeline in hourly:
        with TaskGroup(group_id=pipeline["name"]) as group:
            add_pipeline_tasks(pipeline, task_group=group)

for name, pipeline in pipelines.items():
    if name in DEDICATED or is_hourly(pipeline):
        continue
    dag_id = "external_" + name.replace("-", "_") + "_ingestion"
    globals()[dag_id] = single_pipeline_dag(dag_id, name)
