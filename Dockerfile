# tikv-health-exporter container image: a statically linked binary in an empty (`scratch`) image.
#
#   docker build --build-arg GIT_REVISION="$(git rev-parse HEAD)" -t tikv-health-exporter .
#   docker run --rm -p 19180:19180 tikv-health-exporter --pd.endpoints http://pd:2379
#
# The process runs as nobody (uid/gid 65534) and listens on :19180. To read container logs through
# a mounted Docker socket (`logs.docker`), the process also needs the socket's group:
#   docker run --group-add "$(stat -c %g /var/run/docker.sock)" \
#       -v /var/run/docker.sock:/var/run/docker.sock:ro ...
# (`group_add` in docker-compose.yml). A state file (`--state-file`) belongs in
# /var/lib/tikv-health-exporter, which is owned by 65534; mount a volume there to keep it.
#
# Static linking uses glibc with `+crt-static`, not musl (same binary as tests/container.rs builds).
# Host names (`pd:2379`) still resolve inside `scratch`: bookworm's glibc (2.36) has its `files`
# and `dns` NSS modules inside libc.a, and with no /etc/nsswitch.conf it uses just those, so no
# libnss_*.so is needed at run time. tests/container.rs checks both: a container name answered by
# Docker's DNS and an `--add-host` name from /etc/hosts.
#
# Tested: the `runtime` stage below, byte for byte, by tests/container.rs (it replaces only the
# `builder` stage by one holding the binary it built with the same RUSTFLAGS). The builder stage
# itself is not built by the tests: their machine has no registry to pull rust:* from.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what `cargo build` needs (also see .dockerignore).
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# The context has no .git: the revision comes from this argument (build.rs reads GIT_REVISION;
# without it --version and tikv_health_exporter_build_info say revision "unknown").
ARG GIT_REVISION=unknown
# `--target` is required with +crt-static: without it, build scripts and proc macros would be
# linked statically too, which fails. The host triple keeps this working on arm64.
RUN set -eux; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    GIT_REVISION="$GIT_REVISION" RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target"; \
    mkdir -p /out/state; \
    cp "target/$target/release/tikv-health-exporter" /out/; \
    if readelf -l /out/tikv-health-exporter | grep -q 'program interpreter'; then \
        echo 'tikv-health-exporter is dynamically linked' >&2; exit 1; \
    fi; \
    /out/tikv-health-exporter --version

# The runtime stage: from here to the end of the file (tests/container.rs builds exactly this).
FROM scratch AS runtime
# OCI image annotations (github.com/opencontainers/image-spec annotations.md); version is the
# crate's (tests/container.rs checks it against Cargo.toml), revision the build argument.
ARG GIT_REVISION=unknown
LABEL org.opencontainers.image.title="tikv-health-exporter" \
      org.opencontainers.image.description="Prometheus exporter and alert sidecar for TiKV clusters" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${GIT_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/tikv-health-exporter/tikv-health-exporter" \
      org.opencontainers.image.documentation="https://github.com/tikv-health-exporter/tikv-health-exporter#readme"
# System trust roots, used for TLS to PD/Prometheus when no `ca_file` is configured.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/tikv-health-exporter /tikv-health-exporter
COPY --from=builder --chown=65534:65534 /out/state/ /var/lib/tikv-health-exporter/
USER 65534:65534
EXPOSE 19180
ENTRYPOINT ["/tikv-health-exporter"]
