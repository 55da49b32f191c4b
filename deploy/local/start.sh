#!/usr/bin/env bash
# Starts the development services on loopback, idempotently, and waits until each
# answers: Redis (AOF on), ClickHouse (native port), Prometheus, and the embedded
# Kafka-protocol broker (creditmeter broker), and a 3-master, 3-replica Redis
# Cluster (:7001-7006). Usage: start.sh [redis|redis-cluster|clickhouse|prometheus|broker]...
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

# cluster_ok PORT: the node sees a healthy cluster of all our nodes.
cluster_ok() {
	local info
	info="$(redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null)" || return 1
	grep -q '^cluster_state:ok' <<<"$info" &&
		grep -q "^cluster_known_nodes:${#REDIS_CLUSTER_PORTS[@]}" <<<"$info" &&
		grep -q '^cluster_slots_assigned:16384' <<<"$info"
}

all_cluster_ok() {
	local p
	for p in "${REDIS_CLUSTER_PORTS[@]}"; do cluster_ok "$p" || return 1; done
}

all_fresh_nodes() {
	local p info
	for p in "${REDIS_CLUSTER_PORTS[@]}"; do
		info="$(redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null)" || return 1
		grep -q '^cluster_known_nodes:1' <<<"$info" && grep -q '^cluster_slots_assigned:0' <<<"$info" || return 1
	done
}

start_cluster_node() {
	local port="$1" dir="$STATE/redis-cluster/$1"
	mkdir -p "$dir"
	if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
		return
	fi
	# A small node timeout makes failover take about a second.
	redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
		--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
		--appendonly yes --appendfsync everysec --save '' \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
}

start_redis_cluster() {
	local p addrs=()
	if all_cluster_ok; then
		log "redis cluster already answers on 127.0.0.1:${REDIS_CLUSTER_PORTS[*]}"
		return
	fi
	for p in "${REDIS_CLUSTER_PORTS[@]}"; do start_cluster_node "$p"; done
	for p in "${REDIS_CLUSTER_PORTS[@]}"; do
		wait_until "redis cluster node (127.0.0.1:$p)" "$STATE/redis-cluster/$p/redis.log" 30 \
			bash -c "redis-cli -h 127.0.0.1 -p $p ping | grep -q PONG"
		addrs+=("127.0.0.1:$p")
	done
	# Nodes restarted from their nodes.conf rejoin within a few node timeouts;
	# fresh nodes know only themselves and hold no slots.
	if ! all_fresh_nodes; then
		local deadline=$((SECONDS + 5))
		until all_cluster_ok || ((SECONDS >= deadline)); do sleep 0.2; done
		if all_cluster_ok; then
			log "redis cluster rejoined on 127.0.0.1:${REDIS_CLUSTER_PORTS[*]}"
			return
		fi
		log "redis cluster is broken; recreating it (its data is lost)"
		stop_cluster_nodes
		for p in "${REDIS_CLUSTER_PORTS[@]}"; do
			rm -rf "${STATE:?}/redis-cluster/$p"
			# A node without our pid file still answers: empty it in place.
			if redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null | grep -q PONG; then
				redis-cli -h 127.0.0.1 -p "$p" flushall >/dev/null 2>&1 || true
				redis-cli -h 127.0.0.1 -p "$p" cluster reset hard >/dev/null
			fi
			start_cluster_node "$p"
		done
		for p in "${REDIS_CLUSTER_PORTS[@]}"; do
			wait_until "redis cluster node (127.0.0.1:$p)" "$STATE/redis-cluster/$p/redis.log" 30 \
				bash -c "redis-cli -h 127.0.0.1 -p $p ping | grep -q PONG"
		done
	fi
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
		>"$STATE/redis-cluster/create.log" 2>&1 ||
		{ tail -n 40 "$STATE/redis-cluster/create.log" >&2; die "redis-cli --cluster create failed"; }
	wait_until "redis cluster (127.0.0.1:${REDIS_CLUSTER_PORTS[*]})" "$STATE/redis-cluster/create.log" 30 all_cluster_ok
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
((${#services[@]})) || services=(redis redis-cluster clickhouse prometheus broker)
for s in "${services[@]}"; do
	case "$s" in
	redis | clickhouse | prometheus | broker) "start_$s" ;;
	redis-cluster) start_redis_cluster ;;
	*) die "unknown service '$s' (want redis, redis-cluster, clickhouse, prometheus or broker)" ;;
	esac
done
