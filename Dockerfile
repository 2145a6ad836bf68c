# One image runs any of the three services (pick with the command) and holds qingling-admin.
#
# Two ways to fill it, chosen with the build target (docker-compose.yml: QINGLING_BUILD_TARGET):
#   runtime   (the default, the last stage) builds the binaries from source with cargo, in a
#             rust:1-bookworm stage: `docker compose up --build`, with internet.
#   prebuilt  copies the release binaries built on the host (target/release/qingling-*, the only
#             files of target/ that .dockerignore lets through); no Rust toolchain image is
#             needed, nothing is compiled. scripts/compose-test uses it offline, with
#             QINGLING_BASE_IMAGE=localhost/debian:bookworm (a debootstrapped Debian).
# Both run as the unprivileged user qingling (uid 10001) and keep nothing on their own disk: they
# work with a read-only root filesystem and a tmpfs on /tmp.
ARG QINGLING_BASE_IMAGE=debian:bookworm-slim

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bins

# What both targets share: CA certificates (reqwest with the system's roots, for an identity
# provider or S3), the user, the entrypoint (secrets from *_FILE, the log key) and the health probe.
FROM ${QINGLING_BASE_IMAGE} AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 qingling \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin qingling
COPY deploy/images/qingling-entrypoint deploy/images/qingling-healthcheck /usr/local/bin/
ENV RUST_LOG=info
USER 10001:10001
ENTRYPOINT ["qingling-entrypoint"]
CMD ["qingling-intake"]

FROM runtime-base AS prebuilt
COPY target/release/qingling-intake \
     target/release/qingling-ledger \
     target/release/qingling-closure \
     target/release/qingling-admin \
     /usr/local/bin/

FROM runtime-base AS runtime
COPY --from=build /src/target/release/qingling-intake \
                  /src/target/release/qingling-ledger \
                  /src/target/release/qingling-closure \
                  /src/target/release/qingling-admin \
                  /usr/local/bin/
