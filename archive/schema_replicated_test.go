package archive

import (
	"regexp"
	"strings"
	"testing"
)

// Every migration, in cluster mode with ZooKeeper, is DDL ON CLUSTER on
// names qualified with the database and replicated (or Distributed)
// engines, or a statement run per shard or per host: a later migration
// cannot slip a plain MergeTree or a host-local DDL into a replicated
// cluster.
func TestReplicatedStepsAreOnClusterAndReplicated(t *testing.T) {
	tables := clusterTableNames(Migrations)
	engine := regexp.MustCompile(`ENGINE = (\w+)`)
	for _, m := range Migrations {
		for _, st := range replicatedSteps(m, "c1", "db1", tables) {
			switch {
			case st.mat != nil:
				if !strings.HasSuffix(st.mat.Table, "_local") || !strings.Contains(st.mat.Update, st.mat.Table) {
					t.Errorf("migration %d: materialize %+v not on the local table", m.Version, *st.mat)
				}
			case st.perShard:
				if !strings.HasPrefix(st.sql, "INSERT") && !mutation.MatchString(st.sql) {
					t.Errorf("migration %d: per shard: %s", m.Version, st.sql)
				}
			case st.perHost:
				if !strings.HasPrefix(st.sql, "ALTER TABLE ") || strings.Contains(st.sql, "_local") {
					t.Errorf("migration %d: per host, not an ALTER of a Distributed table: %s", m.Version, st.sql)
				}
			default:
				if !regexp.MustCompile(`^\w+ [A-Z ]*?db1\.\w+ ON CLUSTER 'c1'`).MatchString(st.sql) {
					t.Errorf("migration %d: not qualified ON CLUSTER: %s", m.Version, st.sql)
				}
				for _, e := range engine.FindAllStringSubmatch(st.sql, -1) {
					if !strings.HasPrefix(e[1], "Replicated") && e[1] != "Distributed" {
						t.Errorf("migration %d: engine %s: %s", m.Version, e[1], st.sql)
					}
				}
				if strings.Contains(st.sql, "ReplicatedReplacingMergeTree") &&
					!regexp.MustCompile(`ReplicatedReplacingMergeTree\('/clickhouse/tables/\{shard\}/db1/\w+_local', '\{replica\}', version\)`).MatchString(st.sql) {
					t.Errorf("migration %d: replicated path: %s", m.Version, st.sql)
				}
				// Every archive table named in the body is qualified.
				if loose := regexp.MustCompile(`[^.\w'/](rated_usage|credit_ledger|usage_daily\w*)_local\b`).FindString(st.sql); loose != "" {
					t.Errorf("migration %d: %q not qualified with the database: %s", m.Version, loose, st.sql)
				}
			}
		}
	}
}
