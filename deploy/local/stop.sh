#!/usr/bin/env bash
# Stops the development services that start.sh started, by their pid files.
# Usage: stop.sh [redis|redis-cluster|clickhouse|prometheus|broker]...
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

services=("$@")
((${#services[@]})) || services=(broker prometheus clickhouse redis-cluster redis)
for s in "${services[@]}"; do
	case "$s" in
	redis) stop_pidfile redis "$STATE/redis/redis.pid" ;;
	redis-cluster) stop_cluster_nodes ;;
	clickhouse) stop_pidfile clickhouse /var/run/clickhouse-server/clickhouse-server.pid ;;
	prometheus) stop_pidfile prometheus "$STATE/prometheus/prometheus.pid" ;;
	broker) stop_pidfile broker "$STATE/broker/broker.pid" ;;
	*) die "unknown service '$s' (want redis, redis-cluster, clickhouse, prometheus or broker)" ;;
	esac
done
