# Offline stand-in for apache/airflow:2.10.5: Airflow 2.10.5 from PyPI (pinned by
# airflow/constraints-2.10.5.txt) in a venv on the local debootstrap base, with the official
# image's interface: user 50000 (group 0), AIRFLOW_HOME=/opt/airflow, `webserver` / `scheduler`
# / `bash -c ...` as the command. Built by `scripts/docker-offline.sh --with-airflow`; its
# context holds this file, airflow-entrypoint.sh and the constraints file.
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends python3 python3-venv ca-certificates curl tini \
        zlib1g libgcc-s1; \
    rm -rf /var/lib/apt/lists/*
COPY constraints-2.10.5.txt /opt/airflow-constraints.txt
RUN set -eux; \
    python3 -m venv /opt/airflow-venv; \
    /opt/airflow-venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        "apache-airflow==2.10.5" apache-airflow-providers-postgres -c /opt/airflow-constraints.txt; \
    /opt/airflow-venv/bin/airflow version; \
    useradd --uid 50000 --gid 0 --home-dir /opt/airflow --no-create-home --shell /bin/bash airflow; \
    install -d -o 50000 -g 0 -m 0775 /opt/airflow /opt/airflow/logs /opt/airflow/dags /opt/workload /opt/workload/bin
COPY airflow-entrypoint.sh /usr/local/bin/airflow-entrypoint
ENV PATH=/opt/airflow-venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    LANG=C.UTF-8
WORKDIR /opt/airflow
USER 50000
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/airflow-entrypoint"]
CMD ["version"]
