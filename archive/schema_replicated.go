package archive

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/creditmeter/creditmeter/internal/config"
)

// Cluster mode with ZooKeeper (see README.md "Cluster mode"): when the
// servers have ZooKeeper, the schema is made ON CLUSTER from one host, the
// local tables are Replicated*MergeTree (a shard's replicas hold the same
// rows), and schema_migrations is one replicated table of which every host
// of the cluster is a replica, so every host agrees on what ran.

// clusterHost is one replica of one shard of a cluster.
type clusterHost struct {
	addr  string
	shard uint32
}

func clusterTopology(ctx context.Context, c ConnConfig) ([]clusterHost, error) {
	c.Database = ""
	conn, err := Open(ctx, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT host_address, port, shard_num FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", c.Cluster)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: read system.clusters: %w", c.Addr, err)
	}
	defer rows.Close()
	var hosts []clusterHost
	for rows.Next() {
		var host string
		var port uint16
		var shard uint32
		if err := rows.Scan(&host, &port, &shard); err != nil {
			return nil, fmt.Errorf("clickhouse %s: read system.clusters: %w", c.Addr, err)
		}
		hosts = append(hosts, clusterHost{addr: net.JoinHostPort(host, strconv.Itoa(int(port))), shard: shard})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse %s: read system.clusters: %w", c.Addr, err)
	}
	if len(hosts) == 0 {
		return nil, &config.SettingError{Flag: "clickhouse-cluster",
			Err: fmt.Errorf("%w: the server %s has no cluster %q in its remote_servers", ErrBadCluster, c.Addr, c.Cluster)}
	}
	return hosts, nil
}

// hasZooKeeper tells whether the server has ZooKeeper configured: only
// then does it have the table system.zookeeper.
func hasZooKeeper(ctx context.Context, conn driver.Conn) (bool, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'zookeeper'").Scan(&n)
	return n > 0, err
}

// migrateReplicated is migrateCluster with ZooKeeper. DDL runs ON CLUSTER
// from the first host (the servers' distributed DDL queue runs it on every
// host, a host that is down when it comes back); INSERT … SELECT and
// mutations run on the first replica of each shard (replication copies
// their result to its peers), ALTERs of the Distributed tables on each host
// (18.16 refuses ALTER … ON CLUSTER of a table that is not replicated in
// a replicated shard). Every host is checked before any change.
func migrateReplicated(ctx context.Context, c ConnConfig, hosts []clusterHost, ms []Migration) error {
	db := c.Database
	conns := make([]driver.Conn, 0, len(hosts))
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for _, h := range hosts {
		hc := c
		hc.Addr, hc.Database = h.addr, ""
		conn, err := Open(ctx, hc)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", c.Cluster, err)
		}
		conns = append(conns, conn)
		if err := checkReplicatedHost(ctx, conn, db, c.User, replicated(hosts)); err != nil {
			return fmt.Errorf("cluster %s, host %s: %w", c.Cluster, h.addr, err)
		}
	}
	cl := quote(c.Cluster)
	if err := conns[0].Exec(ctx, fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s ON CLUSTER %s", db, cl)); err != nil {
		return fmt.Errorf("cluster %s: create database %s: %w", c.Cluster, db, err)
	}
	// One ZooKeeper path for the whole cluster: every host is a replica.
	if err := conns[0].Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s.schema_migrations ON CLUSTER %[2]s (
		version UInt32, name String, applied_at DateTime('UTC')
	) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/%[1]s/schema_migrations', '{shard}-{replica}') ORDER BY version`, db, cl)); err != nil {
		return fmt.Errorf("archive: create schema_migrations on cluster %s: %w", c.Cluster, err)
	}
	// Reopen in the database: per-shard statements are unqualified.
	for i, h := range hosts {
		conns[i].Close()
		hc := c
		hc.Addr = h.addr
		conn, err := Open(ctx, hc)
		if err != nil {
			conns = conns[:i]
			return fmt.Errorf("cluster %s: %w", c.Cluster, err)
		}
		conns[i] = conn
	}
	var firsts []driver.Conn // the first replica of each shard
	for i, h := range hosts {
		if i == 0 || hosts[i-1].shard != h.shard {
			firsts = append(firsts, conns[i])
		}
	}
	if err := conns[0].Exec(ctx, "SYSTEM SYNC REPLICA schema_migrations"); err != nil {
		return fmt.Errorf("archive: cluster %s: sync schema_migrations: %w", c.Cluster, err)
	}
	done, err := migrationsDone(ctx, conns[0])
	if err != nil {
		return err
	}
	tables := clusterTableNames(ms)
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		fail := func(err error) error {
			return fmt.Errorf("archive: cluster %s: migration %d (%s): %w", c.Cluster, m.Version, m.Name, err)
		}
		for _, st := range replicatedSteps(m, c.Cluster, db, tables) {
			switch {
			case st.mat != nil:
				for _, conn := range firsts {
					if err := materialize(ctx, conn, *st.mat); err != nil {
						return fail(err)
					}
				}
			case st.perShard:
				for _, conn := range firsts {
					if err := conn.Exec(ctx, st.sql); err != nil {
						return fail(err)
					}
				}
			case st.perHost:
				for i, conn := range conns {
					if st.column != "" {
						has, err := everyHostHas(ctx, conns[i:i+1], st.table, st.column)
						if err != nil {
							return fail(err)
						}
						if has {
							continue
						}
					}
					if err := conn.Exec(ctx, st.sql); err != nil {
						return fail(fmt.Errorf("host %s: %w", hosts[i].addr, err))
					}
				}
			default:
				if st.column != "" {
					has, err := everyHostHas(ctx, conns, st.table, st.column)
					if err != nil {
						return fail(err)
					}
					if has {
						continue
					}
				}
				if err := conns[0].Exec(ctx, st.sql); err != nil {
					return fail(err)
				}
			}
		}
		if err := recordMigration(ctx, conns[0], m); err != nil {
			return err
		}
	}
	// Every host agrees before Migrate returns.
	for i, conn := range conns {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA schema_migrations"); err != nil {
			return fmt.Errorf("archive: cluster %s, host %s: sync schema_migrations: %w", c.Cluster, hosts[i].addr, err)
		}
	}
	return nil
}

// checkReplicatedHost refuses a host without the macros the replicated
// tables' paths use, or whose database was made host by host (without
// ZooKeeper): ON CLUSTER … IF NOT EXISTS would leave its tables unreplicated.
//
// With a shard of several replicas, the user's profile must set
// load_balancing to in_order: a Distributed table then sends a shard's
// writes and reads to its first live replica, so a read sees what was just
// written (with random, it may read a peer that has not replicated it yet).
// 18.16 takes no string settings from a client, so this is the server's.
func checkReplicatedHost(ctx context.Context, conn driver.Conn, db, user string, replicas bool) error {
	zk, err := hasZooKeeper(ctx, conn)
	if err != nil {
		return err
	}
	if !zk {
		return &config.SettingError{Flag: "clickhouse-cluster", Err: fmt.Errorf(
			"%w: this host has no ZooKeeper while the first host of the cluster has: configure it on every host", ErrBadCluster)}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.macros WHERE macro IN ('shard', 'replica')").Scan(&n); err != nil {
		return err
	}
	if n != 2 {
		return &config.SettingError{Flag: "clickhouse-cluster", Err: fmt.Errorf(
			"%w: the host has ZooKeeper but not both macros shard and replica (<macros> in its configuration), which the replicated tables' paths use", ErrBadCluster)}
	}
	if replicas {
		var lb string
		if err := conn.QueryRow(ctx, "SELECT value FROM system.settings WHERE name = 'load_balancing'").Scan(&lb); err != nil {
			return err
		}
		if lb != "in_order" {
			return &config.SettingError{Flag: "clickhouse-cluster", Err: fmt.Errorf(
				"%w: the profile of ClickHouse user %q has load_balancing %s: with replicated shards set <load_balancing>in_order</load_balancing> in it (users.xml), or a read may miss rows just written to another replica", ErrBadCluster, user, lb)}
		}
	}
	var name, engine string
	err = conn.QueryRow(ctx, `SELECT name, engine FROM system.tables WHERE database = ? AND (name IN ('rated_usage', 'credit_ledger', 'usage_daily',
		'usage_daily_done', 'usage_daily_dirty') AND engine != 'Distributed' OR name = 'schema_migrations' AND engine NOT LIKE 'Replicated%') LIMIT 1`, db).Scan(&name, &engine)
	switch {
	case err == nil && name == "schema_migrations":
		return &config.SettingError{Flag: "clickhouse-cluster", Err: fmt.Errorf(
			"%w: database %s was migrated host by host (schema_migrations is %s, not replicated): the servers have ZooKeeper now; cluster mode with ZooKeeper needs a database of its own", ErrBadCluster, db, engine)}
	case err == nil:
		return &config.SettingError{Flag: "clickhouse-cluster", Err: fmt.Errorf(
			"%w: database %s already holds %s as a local table (created without --clickhouse-cluster): cluster mode needs a database of its own", ErrBadCluster, db, name)}
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	return nil
}

// replicated tells whether a shard has more than one replica.
func replicated(hosts []clusterHost) bool {
	for i := 1; i < len(hosts); i++ {
		if hosts[i].shard == hosts[i-1].shard {
			return true
		}
	}
	return false
}

func migrationsDone(ctx context.Context, conn driver.Conn) (map[int]bool, error) {
	done := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations FINAL")
	if err != nil {
		return nil, fmt.Errorf("archive: read schema_migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("archive: read schema_migrations: %w", err)
		}
		done[int(v)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("archive: read schema_migrations: %w", err)
	}
	return done, nil
}

func everyHostHas(ctx context.Context, conns []driver.Conn, table, column string) (bool, error) {
	for _, conn := range conns {
		var n uint64
		if err := conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = ? AND name = ?`,
			table, column).Scan(&n); err != nil {
			return false, err
		}
		if n == 0 {
			return false, nil
		}
	}
	return true, nil
}

// clusterTableNames matches the tables the migrations create (archiveTables
// and any later CREATE TABLE), each becoming <name>_local behind a
// Distributed <name>.
func clusterTableNames(ms []Migration) *regexp.Regexp {
	names := map[string]bool{}
	for _, n := range archiveTables.FindAllString(archiveTables.String(), -1) {
		names[n] = true
	}
	for _, m := range ms {
		for _, s := range m.statements() {
			if t := createTable.FindStringSubmatch(s); t != nil {
				names[t[1]] = true
			}
		}
	}
	var alt []string
	for n := range names {
		alt = append(alt, regexp.QuoteMeta(n))
	}
	return regexp.MustCompile(`\b(` + strings.Join(alt, "|") + `)\b`)
}

var (
	// ddlObject is the object a DDL statement names, after which ON CLUSTER goes.
	ddlObject = regexp.MustCompile(`^((?:CREATE|ATTACH) (?:TABLE|MATERIALIZED VIEW|VIEW)(?: IF NOT EXISTS)?|ALTER TABLE|DROP (?:TABLE|VIEW)(?: IF EXISTS)?|RENAME TABLE)\s+([\w.]+)`)
	// mutation is an ALTER that rewrites rows rather than the schema.
	mutation = regexp.MustCompile(`^ALTER TABLE [\w.]+\s+(UPDATE|DELETE)\b`)
	// mergeTree is a MergeTree engine clause, with or without arguments.
	mergeTree = regexp.MustCompile(`ENGINE = (\w*MergeTree)(?:\(([^)]*)\))?`)
)

// replicatedSteps is m in cluster mode with ZooKeeper: as clusterSteps, but
// DDL is qualified with db (the DDL queue runs it in each host's default
// database otherwise) and ON CLUSTER, MergeTree engines become Replicated
// with the path /clickhouse/tables/{shard}/<db>/<table>, and INSERTs and
// mutations run on each shard (perShard).
func replicatedSteps(m Migration, cluster, db string, tables *regexp.Regexp) []step {
	var steps []step
	for _, mat := range m.Materialize {
		mat.Table += "_local"
		mat.Update = tables.ReplaceAllString(mat.Update, "${1}_local")
		steps = append(steps, step{mat: &mat})
	}
	ddl := func(sql string) string {
		sql = strings.TrimSpace(sql)
		name := ""
		sql = ddlObject.ReplaceAllStringFunc(sql, func(s string) string {
			g := ddlObject.FindStringSubmatch(s)
			name = g[2]
			if !strings.Contains(name, ".") {
				name = db + "." + name
			}
			return g[1] + " " + name + " ON CLUSTER " + quote(cluster)
		})
		table := strings.TrimPrefix(name, db+".")
		return mergeTree.ReplaceAllStringFunc(sql, func(s string) string {
			g := mergeTree.FindStringSubmatch(s)
			args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", db, table)
			if g[2] != "" {
				args += ", " + g[2]
			}
			return "ENGINE = Replicated" + g[1] + "(" + args + ")"
		})
	}
	for i, sql := range m.statements() {
		sql = strings.TrimSpace(sql)
		local := tables.ReplaceAllString(sql, "${1}_local")
		if mutation.MatchString(sql) || strings.HasPrefix(sql, "INSERT") {
			steps = append(steps, step{sql: local, perShard: true})
			continue
		}
		// Names in the statement's body (TO, FROM) qualified too.
		qualified := tables.ReplaceAllString(sql, db+".${1}_local")
		if table, column, ok := strings.Cut(m.AddsColumn, "."); ok && i == 0 {
			steps = append(steps, step{sql: ddl(qualified), table: table + "_local", column: column},
				step{sql: sql, table: table, column: column, perHost: true})
			continue
		}
		steps = append(steps, step{sql: ddl(qualified)})
		if m.Distributed {
			steps = append(steps, step{sql: sql, perHost: true})
		}
		if t := createTable.FindStringSubmatch(sql); t != nil {
			steps = append(steps, step{sql: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[3]s.%[1]s ON CLUSTER %[2]s AS %[3]s.%[1]s_local ENGINE = Distributed(%[2]s, %[4]s, %[5]s, cityHash64(subscription_id))",
				t[1], quote(cluster), db, quote(db), quote(t[1]+"_local"))})
		}
	}
	return steps
}
