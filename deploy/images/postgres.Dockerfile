# PostgreSQL 15 from Debian's own package, for scripts/compose-test where no image registry is
# reachable (docker-compose.yml: QINGLING_POSTGRES_IMAGE). It follows the official postgres
# image's contract as far as Qingling uses it: PGDATA=/var/lib/postgresql/data, POSTGRES_PASSWORD
# (or POSTGRES_PASSWORD_FILE), POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD, pg_isready for the health
# check. Runs as the user postgres; a read-only root filesystem with a tmpfs on /tmp (which holds
# the socket: PGHOST=/tmp) is enough.
#   podman build -f deploy/images/postgres.Dockerfile \
#     --build-arg QINGLING_BASE_IMAGE=localhost/debian:bookworm -t localhost/qingling-postgres:15 deploy/images
ARG QINGLING_BASE_IMAGE=localhost/debian:bookworm
FROM ${QINGLING_BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-common \
 && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
 && chmod 0700 /var/lib/postgresql/data \
 && chmod 3777 /var/run/postgresql
COPY postgres-entrypoint /usr/local/bin/
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    PGHOST=/tmp \
    LANG=C.UTF-8
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint"]
CMD ["postgres"]
