# syntax=docker/dockerfile:1
# Container image of imagepipeline-operator: a static (musl) binary on distroless, non-root.
#
#   docker build -t ghcr.io/imagepipeline-operator/imagepipeline-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 ...    # what the release does, natively per platform
#
# The build stage compiles for the platform it runs on (`uname -m`: x86_64 or aarch64), so the
# same file builds the amd64 and the arm64 image, natively on each runner or under emulation.
# The `RUN cargo build` line below is the same command README.md documents between the
# `<!-- docker-build -->` markers; tests/chart.rs fails when the two differ.

FROM rust:1.95 AS build
# musl-tools gives the C compiler (musl-gcc) `ring` needs for the musl target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target "$(uname -m)-unknown-linux-musl"
RUN install -D -m 0755 "target/$(uname -m)-unknown-linux-musl/release/imagepipeline-operator" /out/imagepipeline-operator

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="imagepipeline-operator" \
      org.opencontainers.image.description="Mirrors Alibaba Cloud ECS image pipelines into Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/imagepipeline-operator /usr/local/bin/imagepipeline-operator
# distroless "nonroot": UID/GID 65532, the same fixed IDs the Helm chart runs with.
USER 65532:65532
# Admin server: /metrics, /healthz, /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/imagepipeline-operator"]
CMD ["run"]
