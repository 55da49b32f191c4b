package lease_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/lease"
)

func newPair(t *testing.T, ttl time.Duration) (*lease.Lease, *lease.Lease) {
	t.Helper()
	rc, pfx := testenv.Keyspace(t)
	a, err := lease.New(rc, pfx, "job", ttl)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lease.New(rc, pfx, "job", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// Two holders race for one lease: exactly one wins; the loser cannot renew
// or release it; the winner can.
func TestLeaseOneHolder(t *testing.T) {
	a, b := newPair(t, 2*time.Second)
	ctx := t.Context()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for _, l := range []*lease.Lease{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := l.TryAcquire(ctx); err != nil {
				t.Error(err)
			} else if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || a.Held() == b.Held() {
		t.Fatalf("%d winners (a %v, b %v), want 1", wins.Load(), a.Held(), b.Held())
	}
	win, lose := a, b
	if b.Held() {
		win, lose = b, a
	}
	if ok, err := lose.Renew(ctx); ok || err != nil {
		t.Fatalf("loser renewed: %v %v", ok, err)
	}
	if err := lose.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := lose.TryAcquire(ctx); ok {
		t.Fatal("the loser's release dropped the winner's lease")
	}
	if ok, err := win.TryAcquire(ctx); !ok || err != nil { // re-acquiring one's own lease renews it
		t.Fatalf("winner re-acquire: %v %v", ok, err)
	}
	if err := win.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := lose.TryAcquire(ctx); !ok || err != nil {
		t.Fatalf("after release: %v %v", ok, err)
	}
}

// A lease nobody renews expires after its ttl; a renewed one does not.
func TestLeaseExpiry(t *testing.T) {
	const ttl = time.Second
	a, b := newPair(t, ttl)
	ctx := t.Context()
	if ok, _ := a.TryAcquire(ctx); !ok {
		t.Fatal("not acquired")
	}
	for range 5 { // 5 × ttl/3: alive only because it is renewed
		time.Sleep(ttl / 3)
		if ok, err := a.Renew(ctx); !ok || err != nil {
			t.Fatalf("renew: %v %v", ok, err)
		}
		if ok, _ := b.TryAcquire(ctx); ok {
			t.Fatal("taken while renewed")
		}
	}
	if !a.MayHold() || b.MayHold() {
		t.Fatal("MayHold: want the holder only")
	}
	time.Sleep(ttl + 50*time.Millisecond)
	if a.MayHold() {
		t.Fatal("MayHold past ttl after the last renewal")
	}
	if ok, _ := b.TryAcquire(ctx); !ok {
		t.Fatal("not taken over after expiry")
	}
	if ok, _ := a.Renew(ctx); ok || a.Held() {
		t.Fatal("an expired holder renewed the new holder's lease")
	}
}

// running counts jobs running now and the most ever at once.
type running struct {
	mu        sync.Mutex
	now, most int
	starts    map[string]int
}

func (r *running) job(name string) func(context.Context) {
	return func(ctx context.Context) {
		r.mu.Lock()
		r.now++
		r.most = max(r.most, r.now)
		r.starts[name]++
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		r.now--
		r.mu.Unlock()
	}
}

func (r *running) get() (now, most int, starts map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := map[string]int{}
	for k, v := range r.starts {
		s[k] = v
	}
	return r.now, r.most, s
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Run on two nodes: one runs the job, never both; when it stops (released)
// the other takes over at once; a node that dies (stops renewing, no
// release) is replaced after the ttl.
func TestLeaseRunTakeover(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	a, b := newPair(t, ttl)
	r := &running{starts: map[string]int{}}
	actx, stopA := context.WithCancel(t.Context())
	bctx, stopB := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.Run(actx, r.job("a"), func(err error) { t.Log(err) }) }()
	time.Sleep(50 * time.Millisecond)
	go func() { defer wg.Done(); b.Run(bctx, r.job("b"), func(err error) { t.Log(err) }) }()
	waitFor(t, 2*time.Second, "a's job", func() bool { n, _, s := r.get(); return n == 1 && s["a"] == 1 })
	time.Sleep(2 * ttl) // a keeps it by renewing; b waits
	if _, most, s := r.get(); most != 1 || s["b"] != 0 {
		t.Fatalf("most at once %d, starts %v", most, s)
	}
	stopA() // a stops and releases: b takes over within its poll interval
	stopped := time.Now()
	waitFor(t, 3*time.Second, "b's job", func() bool { _, _, s := r.get(); return s["b"] == 1 })
	if d := time.Since(stopped); d > ttl {
		t.Errorf("takeover after a release took %s, want < ttl %s", d, ttl)
	}

	// b "dies": its lease is left unrenewed (taken by a handle that never renews).
	stopB()
	wg.Wait()
	if ok, _ := b.TryAcquire(t.Context()); !ok {
		t.Fatal("b could not re-take the free lease")
	}
	died := time.Now()
	cctx, stopC := context.WithCancel(t.Context())
	defer stopC()
	wg.Add(1)
	go func() { defer wg.Done(); a.Run(cctx, r.job("a2"), nil) }()
	waitFor(t, 3*ttl, "a's takeover after b died", func() bool { _, _, s := r.get(); return s["a2"] == 1 })
	if d := time.Since(died); d < ttl-50*time.Millisecond {
		t.Errorf("took over %s after the holder died, before its ttl %s", d, ttl)
	}
	if _, most, _ := r.get(); most != 1 {
		t.Fatalf("%d jobs at once", most)
	}
	stopC()
	wg.Wait()
	if n, _, _ := r.get(); n != 0 {
		t.Fatalf("%d jobs still running after Run returned", n)
	}
}

// When the lease is lost (here: taken over by force, as after a long pause
// past its expiry), the running job's context is cancelled at the next
// renewal.
func TestLeaseLostCancelsJob(t *testing.T) {
	const ttl = 900 * time.Millisecond
	rc, pfx := testenv.Keyspace(t)
	a, err := lease.New(rc, pfx, "job", ttl)
	if err != nil {
		t.Fatal(err)
	}
	started, cancelled := make(chan struct{}), make(chan time.Time, 1)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx, func(jctx context.Context) {
			close(started)
			<-jctx.Done()
			cancelled <- time.Now()
			stop() // do not re-acquire
		}, nil)
	}()
	<-started
	stolen := time.Now()
	if err := rc.Set(t.Context(), a.Key(), "another-node", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-cancelled:
		if d := at.Sub(stolen); d > ttl/3+100*time.Millisecond {
			t.Errorf("job cancelled %s after the lease was lost, want within ttl/3", d)
		}
	case <-time.After(2 * ttl):
		t.Fatal("job still running after its lease was lost")
	}
	<-done
	if v, _ := rc.Get(t.Context(), a.Key()).Result(); v != "another-node" {
		t.Fatalf("the other node's lease was released: %q", v)
	}
}
