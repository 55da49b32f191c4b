package balance

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// WaitReplicas returns once n replicas of every master hold every write
// made so far (Redis WAIT), or fails with ErrUnavailable when fewer
// acknowledged within timeout. A caller that commits Kafka offsets only
// after it keeps a failover from losing what was committed. n <= 0 waits
// for nothing.
//
// WAIT covers the writes of its own connection, so each master gets a
// small write of its own (a key in one of its slots) followed by WAIT on the
// same connection: the replication stream is ordered, so that write's
// offset is past every earlier write on the master.
func (s *Store) WaitReplicas(ctx context.Context, n int, timeout time.Duration) error {
	if n <= 0 {
		return nil
	}
	one := func(ctx context.Context, c *redis.Client, key string) error {
		pipe := c.Pipeline()
		pipe.Set(ctx, key, s.nowMs(), time.Hour)
		w := pipe.Do(ctx, "WAIT", n, timeout.Milliseconds())
		if _, err := pipe.Exec(ctx); err != nil {
			return classify(err)
		}
		got, err := w.Int()
		if err != nil {
			return classify(err)
		}
		if got < n {
			return fmt.Errorf("%w: %d of %d replicas of %s acknowledged within %s", ErrUnavailable, got, n, c.Options().Addr, timeout)
		}
		return nil
	}
	switch c := s.rc.(type) {
	case *redis.ClusterClient:
		//lint:ignore SA1019 CLUSTER SLOTS gives slot ranges with their master, all this needs, on every Redis 7 (CLUSTER SHARDS would change the code path, not the answer)
		slots, err := c.ClusterSlots(ctx).Result()
		if err != nil {
			return classify(err)
		}
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			addr := m.Options().Addr
			for _, r := range slots {
				if len(r.Nodes) > 0 && r.Nodes[0].Addr == addr {
					return one(ctx, m, s.prefix+"{"+slotTag(r.Start)+"}:wait")
				}
			}
			return nil // a master without slots holds no balances
		})
	case *redis.Client:
		return one(ctx, c, s.prefix+"{wait}")
	}
	return fmt.Errorf("%w: WAIT on a %T", ErrInvalid, s.rc)
}

// slotTag is a hash tag whose key slot is slot.
func slotTag(slot int) string {
	for i := 0; ; i++ {
		t := "w" + strconv.Itoa(i)
		if int(crc16([]byte(t))%16384) == slot {
			return t
		}
	}
}

// crc16 is Redis Cluster's key hash (CRC-16/XMODEM).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
