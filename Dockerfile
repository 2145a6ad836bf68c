# Builds all Qingling binaries; one image runs any of the three services (pick with the command).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home qingling
COPY --from=build /src/target/release/qingling-intake \
                  /src/target/release/qingling-ledger \
                  /src/target/release/qingling-closure \
                  /src/target/release/qingling-admin \
                  /usr/local/bin/
USER qingling
ENV RUST_LOG=info
CMD ["qingling-intake"]
