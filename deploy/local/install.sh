#!/usr/bin/env bash
# Installs the development services from Debian's packages: Redis 7, ClickHouse
# 18.16, Prometheus 2.42, ZooKeeper 3.8, and the tools tests use (kcat,
# chromium, systemd-analyze). Idempotent; needs root on Debian 12. The packages' own
# init scripts are not used: start.sh runs each service on loopback.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need=()
command -v redis-server >/dev/null || need+=(redis-server redis-tools)
command -v clickhouse-server >/dev/null || need+=(clickhouse-server clickhouse-client)
command -v prometheus >/dev/null || need+=(prometheus)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium) # browser tests of the console (console/)
command -v kcat >/dev/null || need+=(kcat)          # librdkafka's murmur2 partitions, checked against ours (cmd/creditmeter)
command -v systemd-analyze >/dev/null || need+=(systemd) # verifies deploy/systemd's unit (deploy/); not started
# ClickHouse cluster mode with replicas (archive/README.md): tests start a
# private ZooKeeper from its jar (internal/testenv); the package's own
# service is not started. 45 packages, 33 MB, about 12 s with Java present.
[[ -f /usr/share/java/zookeeper.jar ]] || need+=(zookeeper)
command -v go >/dev/null || die "Go is not installed (expected at /usr/local/go)"

if ((${#need[@]})); then
	[[ $(id -u) == 0 ]] || die "installing ${need[*]} needs root (apt-get); run as root"
	log "installing ${need[*]}"
	apt-get update -qq
	# policy-rc.d keeps the packages from starting their own daemons.
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/creditmeter-apt.log 2>&1 ||
		{ tail -n 40 /tmp/creditmeter-apt.log >&2; die "apt-get install failed"; }
else
	log "redis-server, clickhouse-server, prometheus and zookeeper already installed"
fi

(cd "$ROOT" && go mod download)
build_bin
