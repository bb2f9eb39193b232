# keygate: API-key authorization sidecar.
#
#   docker build -t keygate .
#   docker run --rm -p 9001:9001 -p 9002:9002 \
#     -v "$PWD/deploy/keygate.yaml:/etc/keygate/keygate.yaml:ro" keygate
#
# The config is read from /etc/keygate/keygate.yaml (KEYGATE_CONFIG); the file store keeps its
# state in /var/lib/keygate (mount a volume there, or use the Redis backend). Set
# KEYGATE_ADMIN_TOKEN to start the admin listener.
#
# Where no registry can be reached, the two images this file pulls can be replaced (this is
# how tests/container.rs builds it; docs/operations.md has the details):
#   --build-context build=DIR      a directory holding a built binary at
#                                  DIR/src/target/release/keygate stands in for the build stage
#   --build-arg BASE=IMAGE         a local Debian bookworm image (e.g. a debootstrap root
#                                  filesystem, `podman import`ed) stands in for bookworm-slim

ARG BASE=debian:bookworm-slim

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY crates ./crates
RUN cargo build --release --locked --bin keygate \
    && strip target/release/keygate

FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/keygate --create-home keygate
COPY --from=build /src/target/release/keygate /usr/local/bin/keygate
COPY deploy/keygate.yaml /etc/keygate/keygate.yaml
ENV KEYGATE_CONFIG=/etc/keygate/keygate.yaml
# The heap on transparent huge pages: lookups in tables of millions of keys stay near their
# cache-hot cost instead of missing the TLB (docs/scale.md).
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
USER keygate
WORKDIR /var/lib/keygate
# 9001 Envoy ext_authz gRPC, 9002 HTTP (/auth, /ext_authz, /healthz, /readyz, /metrics),
# 9003 admin API (only with KEYGATE_ADMIN_TOKEN).
EXPOSE 9001 9002 9003
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["keygate", "health"]
ENTRYPOINT ["keygate"]
CMD ["serve"]
