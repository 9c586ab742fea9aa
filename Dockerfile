# hcgw container image (minimal; hardened further in the shipping work).
# Build stage: compile on Debian 12 with the project's own install script.
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh
COPY . .
RUN cmake --preset release -DHCGW_TESTS=OFF >/dev/null && cmake --build --preset release -j"$(nproc)"

# Runtime stage: the binaries, their runtime libraries, CA certificates and the default config.
FROM debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libmicrohttpd12 libcurl4 libjson-c5 libconfig9 ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/release/hcgw /src/build/release/hcgw-sim /usr/local/bin/
COPY conf/hcgw.conf /etc/hcgw/hcgw.conf
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# The key comes from HCGW_API_KEY or a mounted file named by HCGW_API_KEY_FILE; never baked in.
ENTRYPOINT ["/usr/local/bin/hcgw", "-c", "/etc/hcgw/hcgw.conf"]
