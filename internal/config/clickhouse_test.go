package config

import (
	"errors"
	"strings"
	"testing"
)

func TestClickHouseClusterSetting(t *testing.T) {
	c, err := parse(t, nil, map[string]string{"CREDITMETER_CLICKHOUSE_CLUSTER": "prod-eu.1"})
	if err != nil || c.ClickHouse.Cluster != "prod-eu.1" {
		t.Fatalf("cluster from the environment: %q, %v", c.ClickHouse.Cluster, err)
	}
	if c, err := parse(t, nil, nil); err != nil || c.ClickHouse.Cluster != "" {
		t.Fatalf("default cluster %q, %v: want none", c.ClickHouse.Cluster, err)
	}
	_, err = parse(t, []string{"--clickhouse-cluster", "two words"}, nil)
	var se *SettingError
	if !errors.As(err, &se) || se.Flag != "clickhouse-cluster" || !strings.Contains(err.Error(), "remote_servers") {
		t.Fatalf("bad cluster name: %v", err)
	}
}
