#!/usr/bin/env bash
# Starts the development services on loopback, idempotently, and waits until each
# answers: Redis (AOF on), ClickHouse (native port), Prometheus, and the embedded
# Kafka-protocol broker (creditmeter broker). Usage: start.sh [redis|clickhouse|prometheus|broker]...
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

start_redis() {
	local dir="$STATE/redis"
	mkdir -p "$dir"
	if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
		log "redis already answers on 127.0.0.1:$REDIS_PORT"
		return
	fi
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" \
		--appendonly yes --appendfsync everysec --save '' \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
	wait_until "redis (127.0.0.1:$REDIS_PORT)" "$dir/redis.log" 30 \
		bash -c "redis-cli -h 127.0.0.1 -p $REDIS_PORT ping | grep -q PONG"
}

start_clickhouse() {
	local log=/var/log/clickhouse-server/clickhouse-server.err.log
	if clickhouse-client --port "$CLICKHOUSE_PORT" --query 'SELECT 1' >/dev/null 2>&1; then
		log "clickhouse already answers on 127.0.0.1:$CLICKHOUSE_PORT"
		return
	fi
	mkdir -p /var/lib/clickhouse /var/log/clickhouse-server /var/run/clickhouse-server
	chown -R clickhouse: /var/lib/clickhouse /var/log/clickhouse-server /var/run/clickhouse-server
	runuser -u clickhouse -- clickhouse-server --config-file=/etc/clickhouse-server/config.xml \
		--daemon --pid-file=/var/run/clickhouse-server/clickhouse-server.pid
	wait_until "clickhouse (127.0.0.1:$CLICKHOUSE_PORT)" "$log" 60 \
		clickhouse-client --port "$CLICKHOUSE_PORT" --query 'SELECT 1'
}

start_prometheus() {
	local dir="$STATE/prometheus"
	mkdir -p "$dir/data"
	if curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" >/dev/null 2>&1; then
		log "prometheus already answers on 127.0.0.1:$PROMETHEUS_PORT"
		return
	fi
	local cfg="${CREDITMETER_PROMETHEUS_CONFIG:-$ROOT/deploy/prometheus/prometheus.yml}"
	nohup prometheus --config.file="$cfg" --storage.tsdb.path="$dir/data" \
		--web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle \
		>"$dir/prometheus.log" 2>&1 &
	echo $! >"$dir/prometheus.pid"
	wait_until "prometheus (127.0.0.1:$PROMETHEUS_PORT)" "$dir/prometheus.log" 60 \
		curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
}

start_broker() {
	local dir="$STATE/broker"
	mkdir -p "$dir"
	build_bin
	if "$BIN" doctor --only kafka --kafka-brokers "127.0.0.1:$BROKER_PORT" >/dev/null 2>&1; then
		log "kafka broker already answers on 127.0.0.1:$BROKER_PORT"
		return
	fi
	nohup "$BIN" broker --listen "127.0.0.1:$BROKER_PORT" --data-dir "$dir/data" \
		--partitions "$BROKER_PARTITIONS" >"$dir/broker.log" 2>&1 &
	echo $! >"$dir/broker.pid"
	wait_until "kafka broker (127.0.0.1:$BROKER_PORT)" "$dir/broker.log" 30 \
		"$BIN" doctor --only kafka --kafka-brokers "127.0.0.1:$BROKER_PORT"
}

services=("$@")
((${#services[@]})) || services=(redis clickhouse prometheus broker)
for s in "${services[@]}"; do
	case "$s" in
	redis | clickhouse | prometheus | broker) "start_$s" ;;
	*) die "unknown service '$s' (want redis, clickhouse, prometheus or broker)" ;;
	esac
done
