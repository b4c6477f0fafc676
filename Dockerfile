# syntax=docker/dockerfile:1
# The routeguard image the Helm chart runs (manifests/charts/routeguard):
#   docker build -t ghcr.io/routeguard/routeguard:0.1.0 .
# Stage 1 builds the release binary with the Rust toolchain on Debian 12 (bookworm); stage 2 is
# distroless cc (glibc, libgcc, CA certificates; no shell, no package manager), running as the
# image's nonroot user (65532:65532), the same ids the chart's securityContext sets.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the binary is built from (see .dockerignore); the lock file pins every crate.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin routeguard \
 && install -D -m 0755 target/release/routeguard /out/routeguard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/routeguard /usr/local/bin/routeguard
USER 65532:65532
# 8443: HTTPS admission (/validate, /mutate); 8080: admin (/livez, /readyz, /metrics).
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/routeguard"]
CMD ["serve"]
