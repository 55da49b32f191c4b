# Shared settings and helpers for the deploy/local scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${CREDITMETER_STATE_DIR:-/var/lib/creditmeter-dev}"
BIN="${CREDITMETER_BIN:-$ROOT/bin/creditmeter}"
REDIS_PORT="${CREDITMETER_REDIS_PORT:-6379}"
CLICKHOUSE_PORT="${CREDITMETER_CLICKHOUSE_PORT:-9000}"
PROMETHEUS_PORT="${CREDITMETER_PROMETHEUS_PORT:-9090}"
BROKER_PORT="${CREDITMETER_BROKER_PORT:-9092}"
BROKER_PARTITIONS="${CREDITMETER_PARTITIONS:-8}"
# The Redis Cluster: 3 masters and 3 replicas; each port + 10000 is its bus port.
read -r -a REDIS_CLUSTER_PORTS <<<"${CREDITMETER_REDIS_CLUSTER_PORTS:-7001 7002 7003 7004 7005 7006}"

export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

log() { printf '[deploy] %s\n' "$*" >&2; }

die() { printf '[deploy] FATAL: %s\n' "$*" >&2; exit 1; }

# wait_until NAME LOGFILE TIMEOUT_S CMD...: poll CMD until it succeeds; on timeout
# print the log tail and fail loudly.
wait_until() {
	local name="$1" logfile="$2" timeout="$3"
	shift 3
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "$name did not answer within ${timeout}s; last lines of $logfile:"
			tail -n 40 "$logfile" >&2 2>/dev/null || log "(no log at $logfile)"
			die "$name failed to start"
		fi
		sleep 0.2
	done
	log "$name is up"
}

# build_bin builds the creditmeter binary when it is missing or older than the sources.
build_bin() {
	if [[ ! -x "$BIN" ]] || [[ -n "$(find "$ROOT" -name '*.go' -newer "$BIN" -print -quit)" ]] || [[ "$ROOT/go.mod" -nt "$BIN" ]]; then
		log "building $BIN"
		(cd "$ROOT" && go build -o "$BIN" ./cmd/creditmeter)
	fi
}

# stop_pidfile NAME PIDFILE: SIGTERM the process, SIGKILL it after 10 s.
stop_pidfile() {
	local name="$1" pidfile="$2"
	if [[ ! -f "$pidfile" ]]; then
		log "$name: no pid file at $pidfile"
		return
	fi
	local pid
	pid="$(cat "$pidfile")"
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name (pid $pid) did not stop in 10s; killing"
			kill -9 "$pid" 2>/dev/null || true
		fi
		log "$name stopped"
	else
		log "$name (pid $pid) was not running"
	fi
	rm -f "$pidfile"
}

# stop_cluster_nodes stops the nodes together: each master waits up to 2 s
# for its replica on shutdown.
stop_cluster_nodes() {
	local p
	for p in "${REDIS_CLUSTER_PORTS[@]}"; do
		stop_pidfile "redis cluster node :$p" "$STATE/redis-cluster/$p/redis.pid" &
	done
	wait
}
