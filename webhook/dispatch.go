package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultSchedule is the wait after each failed attempt: 10 attempts over
// about 16 hours, after which a delivery is failed.
var DefaultSchedule = []time.Duration{
	10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour,
}

// DispatcherOptions configure a Dispatcher; zero values take defaults.
type DispatcherOptions struct {
	// Schedule is the wait after each failed attempt; a delivery gets
	// len(Schedule)+1 attempts (default DefaultSchedule).
	Schedule []time.Duration
	// Timeout bounds one HTTP attempt (default 10s).
	Timeout time.Duration
	// Lease is how long a claimed delivery is this node's; another node
	// retries it after that if this one dies (default 3 × Timeout).
	Lease time.Duration
	// Poll is how often the due set is read (default 1s).
	Poll time.Duration
	// Workers post in parallel (default 8).
	Workers int
	Client  *http.Client
	Log     *slog.Logger
}

// Dispatcher posts due deliveries. Run one on every node: claims make each
// delivery one node's at a time.
type Dispatcher struct {
	s   *Store
	o   DispatcherOptions
	log *slog.Logger
}

// NewDispatcher returns a dispatcher of s's outbox.
func NewDispatcher(s *Store, o DispatcherOptions) (*Dispatcher, error) {
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule
	}
	var total time.Duration
	for _, d := range o.Schedule {
		if d <= 0 {
			return nil, fmt.Errorf("%w: retry delay %s not positive", ErrInvalid, d)
		}
		total += d
	}
	if total >= s.ret {
		return nil, fmt.Errorf("%w: retry schedule (%s) not shorter than the retention (%s)", ErrInvalid, total, s.ret)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 3 * o.Timeout
	}
	if o.Lease <= o.Timeout {
		return nil, fmt.Errorf("%w: lease %s not longer than the timeout %s", ErrInvalid, o.Lease, o.Timeout)
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	return &Dispatcher{s: s, o: o, log: log}, nil
}

// claimScript takes up to ARGV[3] deliveries due at ARGV[1] and moves them
// to ARGV[2], the end of the claim; that score is the claim's token.
var claimScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids`)

// completeScript records an attempt if the claim (ARGV[2], the member's
// score) still holds: KEYS due, delivery, attempts; ARGV id, claim,
// attempt JSON, status, next ms, code, error, now ms, retention ms.
var completeScript = redis.NewScript(`
local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not sc or tonumber(sc) ~= tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) return 0 end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], -` + strconv.Itoa(maxAttemptsKept) + `, -1)
redis.call('PEXPIRE', KEYS[3], ARGV[9])
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HSET', KEYS[2], 'status', ARGV[4], 'code', ARGV[6], 'error', ARGV[7], 'last', ARGV[8], 'next', ARGV[5])
if ARGV[4] == 'pending' then
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  if ARGV[4] == 'delivered' then redis.call('HSET', KEYS[2], 'delivered', ARGV[8]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[9])
return 1`)

// Run dispatches until ctx ends. While Redis fails it polls less often
// (up to every 30s), so an outage is not a log line a second.
func (d *Dispatcher) Run(ctx context.Context) {
	wait := d.o.Poll
	for {
		n, err := d.Once(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			d.log.Warn("webhooks: dispatching", "err", err, "retry_in", wait)
		case n > 0:
			continue // more may be due
		}
		if err == nil {
			wait = d.o.Poll
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err != nil {
			wait = min(2*wait, max(30*time.Second, d.o.Poll))
		}
	}
}

// Once claims the deliveries due now, one per worker so that all are
// posted in parallel within one timeout (well inside the lease), posts
// them and returns how many it claimed.
func (d *Dispatcher) Once(ctx context.Context) (int, error) {
	now := d.s.now()
	claim := now.Add(d.o.Lease).UnixMilli()
	ids, err := claimScript.Run(ctx, d.s.rc, []string{d.s.kDue()}, now.UnixMilli(), claim, d.o.Workers).StringSlice()
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	work := make(chan string)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	var mu sync.Mutex
	i := 0
	for range min(d.o.Workers, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				err := d.deliver(ctx, id, claim)
				mu.Lock()
				errs[i] = err
				i++
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	return len(ids), errors.Join(errs...)
}

// deliver posts one claimed delivery and records the attempt.
func (d *Dispatcher) deliver(ctx context.Context, id string, claim int64) error {
	m, err := d.s.rc.HGetAll(ctx, d.s.kDelivery(id)).Result()
	if err != nil {
		return err
	}
	if m["id"] == "" || m["status"] != Pending {
		return d.s.rc.ZRem(ctx, d.s.kDue(), id).Err() // expired or already done
	}
	attempt, _ := strconv.Atoi(m["attempts"])
	attempt++
	ep, err := d.s.endpoint(ctx, m["endpoint"])
	body, berr := d.s.rc.Get(ctx, d.s.kEvent(m["event"])).Bytes()
	var a Attempt
	switch {
	case errors.Is(err, ErrNotFound):
		return d.complete(ctx, id, claim, Attempt{At: d.s.now(), Error: "endpoint deleted"}, Failed, 0)
	case err != nil:
		return err
	case errors.Is(berr, redis.Nil):
		return d.complete(ctx, id, claim, Attempt{At: d.s.now(), Error: "event expired"}, Failed, 0)
	case berr != nil:
		return berr
	}
	a = d.post(ctx, ep, m, body, attempt)
	if ctx.Err() != nil {
		return nil // shutting down: the claim lapses and the delivery is retried
	}
	switch {
	case a.StatusCode >= 200 && a.StatusCode < 300:
		return d.complete(ctx, id, claim, a, Delivered, 0)
	case attempt > len(d.o.Schedule):
		return d.complete(ctx, id, claim, a, Failed, 0)
	}
	return d.complete(ctx, id, claim, a, Pending, d.s.now().Add(d.o.Schedule[attempt-1]).UnixMilli())
}

func (d *Dispatcher) post(ctx context.Context, ep Endpoint, m map[string]string, body []byte, attempt int) Attempt {
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	start := d.s.now()
	a := Attempt{At: start.UTC()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "creditmeter-webhooks/1")
	req.Header.Set(HeaderSignature, Sign(ep.Secret, start, body))
	req.Header.Set(HeaderEventID, m["event"])
	req.Header.Set(HeaderEventType, m["type"])
	req.Header.Set(HeaderDelivery, m["id"])
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	res, err := d.o.Client.Do(req)
	a.DurationMs = d.s.now().Sub(start).Milliseconds()
	if err != nil {
		a.Error = err.Error()
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	a.StatusCode = res.StatusCode
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		a.Error = "HTTP " + res.Status
	}
	return a
}

func (d *Dispatcher) complete(ctx context.Context, id string, claim int64, a Attempt, status string, next int64) error {
	js, _ := json.Marshal(a)
	nx := ""
	if status == Pending {
		nx = strconv.FormatInt(next, 10)
	}
	n, err := completeScript.Run(ctx, d.s.rc, []string{d.s.kDue(), d.s.kDelivery(id), d.s.kAttempts(id)},
		id, claim, js, status, nx, a.StatusCode, a.Error, a.At.UnixMilli(), d.s.ret.Milliseconds()).Int()
	if err == nil && n == 0 {
		d.log.Warn("webhooks: claim lapsed before the attempt was recorded (raise the lease)", "delivery", id)
	}
	return err
}
