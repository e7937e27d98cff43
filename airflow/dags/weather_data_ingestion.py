"""Weather every 6 hours: fetch -> transform/enrich -> validate -> publish (pipeline `weather`)."""

from airflow import DAG  # noqa: F401 (Airflow's safe mode looks for DAG files by these words)

from workload_pipelines import single_pipeline_dag

dag = single_pipeline_dag("weather_data_ingestion", "weather")
