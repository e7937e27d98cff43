# Offline stand-in for prom/prometheus: Debian's `prometheus` package (2.42) on the local
# debootstrap base, with the official image's entrypoint, data path and a wget for the health
# check. Built by scripts/docker-offline.sh; context = docker/offline.
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    apt-get update; \
    apt-get install -y --no-install-recommends prometheus wget ca-certificates; \
    # 218 MB of time-zone data for the web UI's date pickers; the API and the classic pages
    # do not need it.
    dpkg --purge --force-depends libjs-moment-timezone; \
    rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*; \
    install -d -o prometheus -g prometheus /prometheus
USER prometheus
WORKDIR /prometheus
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
