# syntax=docker/dockerfile:1
#
# The riskwatch image used by docker-compose.yml: one static-ish binary (librdkafka and zlib are
# linked in by rdkafka's build) plus the demo topology, registry and rules under /etc/riskwatch.
#
#   docker build -t riskwatch:local .
#
# Every workspace member is copied explicitly (tests/compose.rs checks the list against the
# root Cargo.toml), so the build context never drags in target/.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Build settings (SQLite with fdatasync: .cargo/config.toml).
COPY .cargo ./.cargo
COPY src ./src
COPY core ./core
COPY ingest ./ingest
COPY rules ./rules
COPY sinks ./sinks
COPY simulators ./simulators
COPY bus ./bus
COPY replay ./replay
COPY service ./service
COPY console ./console
COPY kpi ./kpi
# src/cli/demo.rs embeds the demo registry and rules with include_str!.
COPY config ./config
# sinks/src/questdb_tables.rs embeds the QuestDB schema with include_str!.
COPY deploy/questdb ./deploy/questdb
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p riskwatch \
    && install -m 0755 target/release/riskwatch /usr/local/bin/riskwatch

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin riskwatch \
    && install -d -o riskwatch -g riskwatch -m 0700 /var/lib/riskwatch
# /var/lib/riskwatch is the console's state (console-data volume: users file, SQLite); a new named
# volume takes this folder's owner, so the console can write there.
COPY --from=build /usr/local/bin/riskwatch /usr/local/bin/riskwatch
# /etc/riskwatch/riskwatch.toml names demo/registry.toml and demo/rules.toml, which resolve
# against its own folder to the files copied here.
COPY config/demo /etc/riskwatch/demo
COPY deploy/riskwatch /etc/riskwatch
USER riskwatch
CMD ["riskwatch", "--help"]
