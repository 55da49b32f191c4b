package balance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

func TestCRC16IsRedisKeyHash(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Fatalf("crc16 = %#x, want 0x31c3 (Redis Cluster spec)", got)
	}
	for _, slot := range []int{0, 1, 5000, 16383} {
		if got := int(crc16([]byte(slotTag(slot))) % 16384); got != slot {
			t.Fatalf("slotTag(%d) hashes to %d", slot, got)
		}
	}
}

// WaitReplicas returns once the replica holds every write, and fails with
// ErrUnavailable while the replica does not acknowledge (paused).
func TestWaitReplicas(t *testing.T) {
	master := testenv.StartRedis(t)
	replica := testenv.StartRedis(t, "--replicaof", "127.0.0.1", master.Addr[len("127.0.0.1:"):])
	rc := master.Client()
	s, err := New(rc, Options{Prefix: "w:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := rc.Do(ctx, "WAIT", 1, 100).Int()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica never connected")
		}
	}
	if err := s.WaitReplicas(ctx, 0, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReplicas(ctx, 1, 2*time.Second); err != nil {
		t.Fatalf("one healthy replica: %v", err)
	}
	replica.Pause()
	defer replica.Resume()
	start := time.Now()
	err = s.WaitReplicas(ctx, 1, 300*time.Millisecond)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("paused replica: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("WaitReplicas took %s with a 300ms timeout", d)
	}
	replica.Resume()
	if err := s.WaitReplicas(ctx, 1, 5*time.Second); err != nil {
		t.Fatalf("replica resumed: %v", err)
	}
	if err := s.WaitReplicas(ctx, 2, 200*time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("two replicas asked, one there: %v", err)
	}
}
