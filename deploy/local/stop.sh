#!/usr/bin/env bash
# Stops the development services that start.sh started, by their pid files.
# Usage: stop.sh [redis|clickhouse|prometheus|broker]...
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

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

services=("$@")
((${#services[@]})) || services=(broker prometheus clickhouse redis)
for s in "${services[@]}"; do
	case "$s" in
	redis) stop_pidfile redis "$STATE/redis/redis.pid" ;;
	clickhouse) stop_pidfile clickhouse /var/run/clickhouse-server/clickhouse-server.pid ;;
	prometheus) stop_pidfile prometheus "$STATE/prometheus/prometheus.pid" ;;
	broker) stop_pidfile broker "$STATE/broker/broker.pid" ;;
	*) die "unknown service '$s' (want redis, clickhouse, prometheus or broker)" ;;
	esac
done
