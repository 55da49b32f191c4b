package bench

import (
	"context"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// NodeCPU is one Redis node's CPU over an e2e drain, from INFO cpu
// (used_cpu_sys + used_cpu_user of the whole process: on a shared server it
// includes other clients' work).
type NodeCPU struct {
	Addr       string  `json:"addr"`
	Role       string  `json:"role"` // master or replica (of Master)
	Master     string  `json:"master,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	// Events routed to this shard: the drain's messages in the share of its
	// subscriptions' unique events (by their key slot); a replica counts its
	// master's.
	Events int64 `json:"events"`
	// UsPerEvent is CPU per event routed to the shard: the per-shard cost,
	// which stays put as shards are added. UsPerEventAll divides by every
	// event of the drain: this node's part of the deployment's cost.
	UsPerEvent    float64 `json:"us_per_event"`
	UsPerEventAll float64 `json:"us_per_event_all"`
	Util          float64 `json:"util"` // CPU seconds / drain seconds (1 = a whole core)
	// Restarted: another process answered at the end of the drain (a crash
	// or a failover test): its CPU over the drain is not known, and it adds
	// nothing to the per-event sums.
	Restarted bool `json:"restarted,omitempty"`
}

type cpuSample struct {
	role, master string
	cpu          float64
	runID        string // INFO server: tells a restarted process apart
}

// redisCPU reads INFO cpu and replication of every node (a cluster's
// masters and replicas, or the one server).
func redisCPU(ctx context.Context, rc redis.UniversalClient) map[string]cpuSample {
	var mu sync.Mutex
	out := map[string]cpuSample{}
	one := func(ctx context.Context, c *redis.Client) error {
		s, err := c.Info(ctx, "server", "cpu", "replication").Result()
		if err != nil {
			return err
		}
		var x cpuSample
		var host, port string
		for _, l := range strings.Split(s, "\r\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			switch k {
			case "used_cpu_sys", "used_cpu_user":
				f, _ := strconv.ParseFloat(v, 64)
				x.cpu += f
			case "role":
				x.role = v
			case "run_id":
				x.runID = v
			case "master_host":
				host = v
			case "master_port":
				port = v
			}
		}
		if x.role == "slave" {
			x.role, x.master = "replica", host+":"+port
		}
		mu.Lock()
		out[c.Options().Addr] = x
		mu.Unlock()
		return nil
	}
	switch c := rc.(type) {
	case *redis.ClusterClient:
		_ = c.ForEachShard(ctx, one)
	case *redis.Client:
		_ = one(ctx, c)
		// A standalone master's replicas (slaveN:ip=…,port=…), read directly.
		s, err := c.Info(ctx, "replication").Result()
		if err != nil {
			break
		}
		for _, l := range strings.Split(s, "\r\n") {
			k, v, _ := strings.Cut(l, ":")
			if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "ip=") {
				continue
			}
			var ip, port string
			for _, f := range strings.Split(v, ",") {
				if a, ok := strings.CutPrefix(f, "ip="); ok {
					ip = a
				} else if a, ok := strings.CutPrefix(f, "port="); ok {
					port = a
				}
			}
			opt := *c.Options()
			opt.Addr = net.JoinHostPort(ip, port)
			r := redis.NewClient(&opt)
			_ = one(ctx, r)
			r.Close()
		}
	}
	return out
}

// shardEvents spreads events over the masters by the key slots of the
// subscriptions (weights: their unique events); standalone: all on one.
func shardEvents(ctx context.Context, rc redis.UniversalClient, subs []string, want []Usage, events int64) map[string]int64 {
	out := map[string]int64{}
	cc, ok := rc.(*redis.ClusterClient)
	if !ok {
		if c, ok := rc.(*redis.Client); ok {
			out[c.Options().Addr] = events
		}
		return out
	}
	//lint:ignore SA1019 CLUSTER SLOTS gives slot ranges with their master, all this needs, on every Redis 7 (CLUSTER SHARDS would change the code path, not the answer)
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return out
	}
	owner := make([]string, 16384)
	for _, r := range slots {
		if len(r.Nodes) > 0 {
			for s := r.Start; s <= r.End && s < len(owner); s++ {
				owner[s] = r.Nodes[0].Addr
			}
		}
	}
	var total int64
	per := map[string]int64{}
	for i, s := range subs {
		// Every key of a subscription carries the hash tag {subscription}.
		per[owner[crc16([]byte(s))%16384]] += want[i].Events
		total += want[i].Events
	}
	if total == 0 {
		return out
	}
	for a, n := range per {
		out[a] = events * n / total
	}
	return out
}

// cpuDelta is each node's CPU between two samples, sorted masters first.
func cpuDelta(before, after map[string]cpuSample, routed map[string]int64, events int64, seconds float64) []NodeCPU {
	var out []NodeCPU
	for addr, a := range after {
		b, ok := before[addr]
		if !ok {
			continue
		}
		n := NodeCPU{Addr: addr, Role: a.role, Master: a.master, CPUSeconds: a.cpu - b.cpu}
		if a.runID != b.runID {
			n.CPUSeconds, n.Restarted = 0, true
		}
		if n.Role == "master" {
			n.Events = routed[addr]
		} else {
			n.Events = routed[a.master]
		}
		if n.Restarted {
			out = append(out, n)
			continue
		}
		if n.Events > 0 {
			n.UsPerEvent = n.CPUSeconds * 1e6 / float64(n.Events)
		}
		if events > 0 {
			n.UsPerEventAll = n.CPUSeconds * 1e6 / float64(events)
		}
		if seconds > 0 {
			n.Util = n.CPUSeconds / seconds
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Role == "master") != (out[j].Role == "master") {
			return out[i].Role == "master"
		}
		return out[i].Addr < out[j].Addr
	})
	return out
}

// crc16 is Redis Cluster's key hash (CRC-16/XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
