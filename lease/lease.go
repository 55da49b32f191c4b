// Package lease runs background jobs once across a deployment: a job runs
// only on the node holding its lease, a Redis key with a random token.
//
// Acquire is SET key token NX PX ttl; Renew is a compare-and-PEXPIRE script;
// Release a compare-and-DEL script, so a node never extends or drops a lease
// another node holds. The key is its own hash tag ({lease:name}), so it
// works on Redis Cluster. Run renews every ttl/3 and cancels the job's
// context as soon as a renewal fails, before the key can expire (ttl after
// the last renewal) and another node take over. There is no fencing token:
// jobs must be idempotent, as a paused process may finish a write after its
// lease expired.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// Lease is one node's handle on a named lease. It is safe for concurrent use.
type Lease struct {
	rc    redis.UniversalClient
	key   string
	token string
	ttl   time.Duration
	held  atomic.Bool
	until atomic.Int64 // unix ns: the key's expiry as of our last acquire or renewal; 0 when known not ours
}

// New returns this node's handle on the lease name under prefix (the key is
// prefix + "{lease:" + name + "}"). ttl is how long a holder that stops
// renewing (crash, partition) keeps others waiting; at least 30ms.
func New(rc redis.UniversalClient, prefix, name string, ttl time.Duration) (*Lease, error) {
	switch {
	case rc == nil:
		return nil, errors.New("lease: nil redis client")
	case name == "" || strings.ContainsAny(prefix+name, "{}"):
		return nil, fmt.Errorf("lease: bad name %q or prefix %q (no braces)", name, prefix)
	case ttl < 30*time.Millisecond:
		return nil, fmt.Errorf("lease: ttl %s below 30ms", ttl)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &Lease{rc: rc, key: prefix + "{lease:" + name + "}", token: hex.EncodeToString(b[:]), ttl: ttl}, nil
}

// Key is the lease's Redis key.
func (l *Lease) Key() string { return l.key }

// Held reports whether this node held the lease at its last acquire or
// renewal (it may have expired since, at most ttl/3 ago under Run).
func (l *Lease) Held() bool { return l.held.Load() }

// MayHold reports whether this node may still hold the lease: until ttl
// after its last successful acquire or renewal, unless it released it or
// saw another holder. Unlike Held it stays true through a failed renewal
// (a Redis blip), so an exporter gated on it does not flap; two nodes may
// then both answer for up to ttl.
func (l *Lease) MayHold() bool { return time.Now().UnixNano() < l.until.Load() }

func (l *Lease) got(ok bool, at time.Time) {
	l.held.Store(ok)
	if ok {
		l.until.Store(at.Add(l.ttl).UnixNano())
	} else {
		l.until.Store(0)
	}
}

// TryAcquire takes the lease if nobody holds it; true if this node holds it
// now (also when it already did: it is then renewed).
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	at := time.Now()
	ok, err := l.rc.SetNX(ctx, l.key, l.token, l.ttl).Result()
	if err != nil {
		return false, err
	}
	if !ok {
		// Ours already (e.g. a lost reply to an earlier SET)? Then renew it.
		return l.Renew(ctx)
	}
	l.got(true, at)
	return true, nil
}

// Renew extends the lease by ttl if this node still holds it.
func (l *Lease) Renew(ctx context.Context) (bool, error) {
	at := time.Now()
	n, err := renewScript.Run(ctx, l.rc, []string{l.key}, l.token, l.ttl.Milliseconds()).Int64()
	if err != nil {
		l.held.Store(false) // unknown: MayHold keeps its deadline
		return false, err
	}
	l.got(n == 1, at)
	return n == 1, nil
}

// Release drops the lease if this node holds it, so another node can take
// over at once instead of after ttl.
func (l *Lease) Release(ctx context.Context) error {
	l.got(false, time.Time{})
	return releaseScript.Run(ctx, l.rc, []string{l.key}, l.token).Err()
}

// Run calls job while this node holds the lease, until ctx ends. It tries to
// acquire every ttl/3; once held, job runs with a context that is cancelled
// when a renewal fails (error or lease lost) or ctx ends. When job returns,
// Run releases the lease and tries again. report, if not nil, hears of Redis
// errors. Run returns when ctx ends, after job has returned.
func (l *Lease) Run(ctx context.Context, job func(context.Context), report func(error)) {
	every := l.ttl / 3
	for ctx.Err() == nil {
		ok, err := l.call(ctx, l.TryAcquire)
		if err != nil && report != nil && ctx.Err() == nil {
			report(fmt.Errorf("lease %s: acquire: %w", l.key, err))
		}
		if ok {
			l.hold(ctx, job, report)
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

// call bounds one Redis call by ttl/3, so a hung Redis cannot keep a job
// running past the lease's expiry.
func (l *Lease) call(ctx context.Context, f func(context.Context) (bool, error)) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	return f(cctx)
}

// hold runs job under the held lease, renewing it, then releases it.
func (l *Lease) hold(ctx context.Context, job func(context.Context), report func(error)) {
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		job(jctx)
	}()
	t := time.NewTicker(l.ttl / 3)
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-t.C:
			ok, err := l.call(context.WithoutCancel(ctx), l.Renew)
			if err != nil || !ok {
				if report != nil {
					report(fmt.Errorf("lease %s: renewal failed, stopping the job: %w", l.key, errors.Join(err, lostErr(ok, err))))
				}
				cancel()
				<-done
				running = false
			}
		}
	}
	t.Stop()
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), l.ttl/3)
	defer rcancel()
	if err := l.Release(rctx); err != nil && report != nil {
		report(fmt.Errorf("lease %s: release: %w", l.key, err))
	}
}

func lostErr(ok bool, err error) error {
	if !ok && err == nil {
		return errors.New("held by another node")
	}
	return nil
}
