package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestRedisConnResolves(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want RedisConn
	}{
		{"default", nil, nil, RedisConn{Mode: RedisStandalone, Addrs: []string{"127.0.0.1:6379"}}},
		{"list is a cluster", []string{"--redis-addr", "127.0.0.1:7001, 127.0.0.1:7002,127.0.0.1:7003"}, nil,
			RedisConn{Mode: RedisCluster, Addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}}},
		{"one seed, cluster mode", []string{"--redis-addr", "10.0.0.1:7001", "--redis-mode", "cluster"}, nil,
			RedisConn{Mode: RedisCluster, Addrs: []string{"10.0.0.1:7001"}}},
		{"url with user, password, db", []string{"--redis-addr", "redis://app:s%40cret@redis.internal:6380/3"}, nil,
			RedisConn{Mode: RedisStandalone, Addrs: []string{"redis.internal:6380"}, Username: "app", Password: "s@cret", DB: 3}},
		{"rediss url, cluster with more seeds", []string{"--redis-addr", "rediss://:pw@n1:7001?addr=n2:7002&addr=n3:7003"}, nil,
			RedisConn{Mode: RedisCluster, Addrs: []string{"n1:7001", "n2:7002", "n3:7003"}, Password: "pw", TLS: true}},
		{"url without port", []string{"--redis-addr", "redis://cache"}, nil, RedisConn{Mode: RedisStandalone, Addrs: []string{"cache:6379"}}},
		{"sentinel from env", nil, map[string]string{"CREDITMETER_REDIS_ADDR": "s1:26379,s2:26379", "CREDITMETER_REDIS_MODE": "sentinel",
			"CREDITMETER_REDIS_MASTER_NAME": "mymaster", "CREDITMETER_REDIS_USERNAME": "u", "CREDITMETER_REDIS_PASSWORD": "p", "CREDITMETER_REDIS_DB": "1"},
			RedisConn{Mode: RedisSentinel, Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", Username: "u", Password: "p", DB: 1}},
		{"url mode query", []string{"--redis-addr", "redis://s1:26379?mode=sentinel&master_name=m"}, nil,
			RedisConn{Mode: RedisSentinel, Addrs: []string{"s1:26379"}, MasterName: "m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Redis.Resolve()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRedisConnErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
		msg  string
	}{
		{[]string{"--redis-addr", "127.0.0.1:1,nohost"}, "redis-addr", `want host:port, got "nohost"`},
		{[]string{"--redis-addr", ""}, "redis-addr", "at least one address"},
		{[]string{"--redis-addr", "http://x:1"}, "redis-addr", "redis:// or rediss://"},
		{[]string{"--redis-addr", "redis://x:1/abc"}, "redis-addr", "database"},
		{[]string{"--redis-addr", "redis://x:1?colour=red"}, "redis-addr", `unknown option "colour"`},
		{[]string{"--redis-mode", "ring"}, "redis-mode", "standalone, cluster or sentinel"},
		{[]string{"--redis-addr", "a:1,b:2", "--redis-mode", "standalone"}, "redis-mode", "one address"},
		{[]string{"--redis-mode", "sentinel"}, "redis-master-name", "required"},
		{[]string{"--redis-master-name", "m"}, "redis-master-name", "only with --redis-mode sentinel"},
		{[]string{"--redis-addr", "a:1,b:2", "--redis-db", "2"}, "redis-db", "Redis Cluster has only database 0"},
		{[]string{"--redis-db", "16"}, "redis-db", "between 0 and 15"},
		{[]string{"--redis-addr", "redis://:a@x:1", "--redis-password", "b"}, "redis-password", "differs from the password in --redis-addr"},
	} {
		_, err := parse(t, tc.args, nil)
		var se *SettingError
		if !errors.As(err, &se) || se.Flag != tc.flag || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: want error on --%s containing %q, got %v", tc.args, tc.flag, tc.msg, err)
		}
	}
}

func TestRedisStringHidesPassword(t *testing.T) {
	c := Default()
	c.Redis.Addr = "redis://u:topsecret@h:1"
	rc, err := c.Redis.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if s := rc.String(); strings.Contains(s, "topsecret") || !strings.Contains(s, "h:1") {
		t.Errorf("String() = %q", s)
	}
}

func TestNewRedisClientPicksTheClient(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:6379":                               "*redis.Client",
		"127.0.0.1:7001,127.0.0.1:7002":                "*redis.ClusterClient",
		"redis://s1:26379?mode=sentinel&master_name=m": "*redis.Client", // go-redis's failover client
	} {
		rc, conn, err := NewRedisClient(Redis{Addr: addr}, RedisTuning{})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%T", rc); got != want {
			t.Errorf("%s (%s): %s, want %s", addr, conn, got, want)
		}
		rc.Close()
	}
	if _, _, err := NewRedisClient(Redis{Addr: "x"}, RedisTuning{}); err == nil || !strings.Contains(err.Error(), "--redis-addr") {
		t.Errorf("bad address: %v", err)
	}
}

// A --redis-addr URL that does not parse is named without its password (Go's
// url.Parse error quotes the whole URL).
func TestRedisURLErrorHidesPassword(t *testing.T) {
	for _, addr := range []string{
		"redis://app:Pa55-secret@cache:badport",
		"rediss://app:Pa55-secret@ca che:6379",
		"redis://app:Pa55-secret%zz@cache:6379",
		"redis://:Pa55-secret@cache:6379/x%zz",
		"redis://app:Pa55/secret@cache:6379",
		"redis://app:Pa55?sec#ret@cache:6379",
		"redis://app:Pa55@secret@cache:badport",
		"redis://app:5505/Pa55secret@cache:6379", // parses: host app:5505, path /Pa55secret@cache:6379
	} {
		_, err := Redis{Addr: addr}.Resolve()
		var se *SettingError
		if !errors.As(err, &se) || se.Flag != "redis-addr" {
			t.Errorf("%s: want an error naming --redis-addr, got %v", addr, err)
			continue
		}
		if strings.Contains(err.Error(), "Pa55") || strings.Contains(err.Error(), "secret") {
			t.Errorf("the error prints the password: %v", err)
		}
		t.Logf("%v", err)
	}
}
