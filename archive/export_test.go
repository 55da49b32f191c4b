package archive

import "context"

// MigrateUpTo applies the migrations up to version v only: the schema of an
// older release, for migration tests.
func MigrateUpTo(ctx context.Context, c ConnConfig, v int) error {
	var ms []Migration
	for _, m := range Migrations {
		if m.Version <= v {
			ms = append(ms, m)
		}
	}
	if c.Cluster != "" {
		return migrateCluster(ctx, c, ms)
	}
	if err := EnsureDatabase(ctx, c); err != nil {
		return err
	}
	conn, err := Open(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	return migrateList(ctx, conn, ms, nil)
}
