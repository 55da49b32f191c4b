# creditmeter as a static binary on distroless (no shell, no libc, non-root).
#   docker build --build-arg VERSION=$(git describe --tags --always) --build-arg REVISION=$(git rev-parse HEAD) -t creditmeter .
#   docker run --env-file deploy/systemd/creditmeter.env.example -p 8080:8080 creditmeter
# deploy/deploy_test.go runs this file's go build line and checks the binary is static.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/creditmeter ./cmd/creditmeter

# static-debian12 carries CA certificates (TLS to Kafka, Redis, ClickHouse) and tzdata.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/creditmeter /usr/local/bin/creditmeter
# In a container the listeners must not be loopback; keep 9464 (/metrics) off public networks.
ENV CREDITMETER_HTTP_ADDR=0.0.0.0:8080 \
    CREDITMETER_METRICS_ADDR=0.0.0.0:9464 \
    CREDITMETER_LOG_FORMAT=json
EXPOSE 8080 9464
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/creditmeter"]
CMD ["serve"]
