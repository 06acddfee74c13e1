# syntax=docker/dockerfile:1
# The gateway's container image: a release build of the onboarding-gateway binary on a minimal, shell-less
# runtime that runs as UID 65532. Build from the repository's root:
#
#   docker build -t registry.bank.internal/onboarding-gateway:0.1.0 .
#
# Nothing else is needed: the API is compiled from proto/ without protoc, SQLite is built in, TLS is rustls.

# Bookworm, like the runtime below: the binary links the glibc it was built against. Rust 1.95.0, the
# toolchain the tests run with (the crate needs 1.89 or newer); pinned, so a rebuild gets the same compiler.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the build between builds on one machine; the binary is copied out
# of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin onboarding-gateway \
    && install -D -m 0755 target/release/onboarding-gateway /out/onboarding-gateway

# glibc, libgcc and CA certificates (trusted beside rustls's own roots), no shell, no package manager; the
# nonroot variant's user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="onboarding-gateway" \
      org.opencontainers.image.description="gRPC gateway to ConnectPay's Banking-as-a-Service onboarding API" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/onboarding-gateway /usr/local/bin/onboarding-gateway
USER 65532:65532
# gRPC, webhooks, metrics, plaintext health.
EXPOSE 50051 8080 9090 8081
ENTRYPOINT ["/usr/local/bin/onboarding-gateway"]
CMD ["serve"]
