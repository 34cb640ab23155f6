# The cfgd server and cfgd-agent, in one image. Built by docker-compose.yml;
# also `docker build -t cfgd:0.1.0 .`, the tag deploy/kubernetes/ names.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cfgd-server --bin cfgd -p cfgd-agent --bin cfgd-agent

FROM debian:bookworm-slim
# curl: for the container health check. The snapshot directory exists (owned by
# cfgd) so that a named volume mounted there starts out writable. A fixed
# uid, which deploy/kubernetes/ runs as (runAsUser) with a read-only root.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/cfgd cfgd \
    && mkdir -p /var/lib/cfgd/snapshots && chown -R cfgd /var/lib/cfgd
COPY --from=build /src/target/release/cfgd /usr/local/bin/cfgd
COPY --from=build /src/target/release/cfgd-agent /usr/local/bin/cfgd-agent
USER cfgd
EXPOSE 8080
ENV CFGD_LISTEN=0.0.0.0:8080 CFGD_LOG_FORMAT=json CFGD_SNAPSHOT=/var/lib/cfgd/snapshots/snapshot.json
ENTRYPOINT ["cfgd"]
CMD ["serve"]
