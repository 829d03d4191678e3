# syntax=docker/dockerfile:1
# Tollgate's image: a static Go binary on distroless, running as non-root.
# Build: make image (docker build --build-arg VERSION=... -t tollgate:... .)

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change does not re-download them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Pure Go (the embedded SQLite store is modernc.org/sqlite), so the binary
# is static and needs no libc in the final image.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/tollgate ./cmd/tollgate

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="tollgate" \
      org.opencontainers.image.description="API-token gatekeeper for Envoy ext_authz" \
      org.opencontainers.image.source="https://github.com/tollgate/tollgate" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/tollgate /tollgate
# distroless's nonroot user, by number so runAsNonRoot can verify it.
USER 65532:65532
# 9191: gRPC (ext_authz, health). 8181: HTTP (/healthz, /readyz, Tokens API,
# console). 9090: /metrics.
EXPOSE 9191 8181 9090
ENTRYPOINT ["/tollgate"]
CMD ["serve"]
