# syntax=docker/dockerfile:1
# Container image of imagepipeline-operator: a static (musl) binary on distroless, non-root.
#
#   docker build -t ghcr.io/imagepipeline-operator/imagepipeline-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 --sbom=true ...   # what the release does, natively per platform
#
# The build stage compiles for the platform it runs on (`uname -m`: x86_64 or aarch64), so the
# same file builds the amd64 and the arm64 image, natively on each runner or under emulation.
# The `RUN cargo build` line below is the same command README.md documents between the
# `<!-- docker-build -->` markers and hack/offline-image.sh runs; tests/chart.rs fails when they
# differ. This static musl binary is the build BENCHMARKS.md measures.
#
# The toolchain is rust-toolchain.toml's (RUST_VERSION must name the same release;
# tests/release.rs checks it). hack/offline-image.sh assembles the same runtime stage without
# a container engine (tests/release.rs compares the two).

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION} AS build
# `docker buildx build --sbom=true` also scans this stage, so the image's SBOM lists the
# Rust crates of Cargo.lock that the binary is built from (the runtime stage has no package
# database to scan).
ARG BUILDKIT_SBOM_SCAN_STAGE=true
# musl-tools gives the C compiler (musl-gcc) `ring` needs for the musl target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies in a layer of their own: built from the manifests and stub sources, so a
# change to the sources (and not to Cargo.toml/Cargo.lock) reuses this layer from the cache.
COPY rust-toolchain.toml Cargo.toml Cargo.lock ./
COPY crates/ecs/Cargo.toml crates/ecs/Cargo.toml
COPY crates/ecs-sim/Cargo.toml crates/ecs-sim/Cargo.toml
COPY crates/spare-alloc/Cargo.toml crates/spare-alloc/Cargo.toml
RUN rustup target add "$(uname -m)-unknown-linux-musl" \
 && mkdir -p src benches crates/ecs/src crates/ecs-sim/src crates/spare-alloc/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > crates/ecs-sim/src/main.rs \
 && touch src/lib.rs crates/ecs/src/lib.rs crates/ecs-sim/src/lib.rs crates/spare-alloc/src/lib.rs \
 && for bench in listing plan steady_state memory; do echo 'fn main() {}' > "benches/$bench.rs"; done \
 && cargo build --release --locked --target "$(uname -m)-unknown-linux-musl" \
 && rm -rf src benches crates
COPY . .
# The real sources must look newer than the stubs' build, whatever times COPY gave them.
RUN find src benches crates -name '*.rs' -exec touch {} +
RUN cargo build --release --locked --target "$(uname -m)-unknown-linux-musl"
RUN install -D -m 0755 "target/$(uname -m)-unknown-linux-musl/release/imagepipeline-operator" /out/imagepipeline-operator

FROM gcr.io/distroless/static-debian12:nonroot
# The release passes VERSION and REVISION (and sets the same keys as annotations on the
# multi-arch index); a local build says "dev".
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="imagepipeline-operator" \
      org.opencontainers.image.description="Mirrors Alibaba Cloud ECS image pipelines into Kubernetes" \
      org.opencontainers.image.source="https://github.com/imagepipeline-operator/imagepipeline-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/imagepipeline-operator /usr/local/bin/imagepipeline-operator
# distroless "nonroot": UID/GID 65532, the same fixed IDs the Helm chart runs with.
USER 65532:65532
# Admin server: /metrics, /healthz, /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/imagepipeline-operator"]
CMD ["run"]
