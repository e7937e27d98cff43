"""Maps daily: fetch -> transform/enrich -> validate -> publish (pipeline `maps`)."""

from airflow import DAG  # noqa: F401 (Airflow's safe mode looks for DAG files by these words)

from workload_pipelines import single_pipeline_dag

dag = single_pipeline_dag("maps_data_ingestion", "maps")
