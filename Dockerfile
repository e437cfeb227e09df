# syntax=docker/dockerfile:1
#
# gcore-iam-bulk in a container: built with the official Rust image, run as a
# non-root user on a minimal base that holds CA certificates.
#
#   docker build -t gcore-iam-bulk:0.1.0 .                      # distroless (default)
#   docker build --target scratch -t gcore-iam-bulk:0.1.0-scratch .   # static, FROM scratch
#   docker run --rm -e GCORE_API_KEY -v "$PWD:/work" -w /work \
#       gcore-iam-bulk:0.1.0 run moves.csv -o results.csv --dry-run
#
# Podman and Buildah read this file as it is (`podman build .`).

ARG RUST_VERSION=1.90

# ---- build: the release binary, from the locked dependencies ----------------
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# git is in the image: --version names the commit when .git is in the context.
# The cache mounts keep the registry and target between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/gcore-iam-bulk /usr/local/bin/gcore-iam-bulk

# ---- build-static: the same, linked statically (glibc), for FROM scratch -----
FROM build AS build-static
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target-static \
    RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
        --target-dir /src/target-static \
    && cp /src/target-static/x86_64-unknown-linux-gnu/release/gcore-iam-bulk \
        /usr/local/bin/gcore-iam-bulk-static

# ---- scratch: the static binary and CA certificates, nothing else ------------
FROM scratch AS scratch
COPY --from=build-static /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build-static /usr/local/bin/gcore-iam-bulk-static /gcore-iam-bulk
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["/gcore-iam-bulk"]
CMD ["--help"]

# ---- runtime (default): glibc, libgcc, CA certificates, user nonroot (65532) --
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /usr/local/bin/gcore-iam-bulk /usr/local/bin/gcore-iam-bulk
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/gcore-iam-bulk"]
CMD ["--help"]
