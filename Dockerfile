# syntax=docker/dockerfile:1
# Container image of imagepipeline-operator: a static (musl) binary on distroless, non-root.
#
#   docker build -t ghcr.io/imagepipeline-operator/imagepipeline-operator:0.1.0 .
#
# The `RUN cargo build` line below is the same command README.md documents between the
# `<!-- docker-build -->` markers; tests/chart.rs fails when the two differ.

FROM rust:1.95 AS build
# musl-tools gives the C compiler `ring` needs for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl
RUN install -D -m 0755 target/x86_64-unknown-linux-musl/release/imagepipeline-operator /out/imagepipeline-operator

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
