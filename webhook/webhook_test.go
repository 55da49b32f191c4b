package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/webhook"
)

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	now := time.Unix(1764500000, 0)
	h := webhook.Sign("whsec_x", now, body)
	if err := webhook.Verify("whsec_x", h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("verify own signature: %v", err)
	}
	// The documented recipe, recomputed by hand: HMAC-SHA256 over "t.body".
	if want := "t=1764500000,v1="; h[:len(want)] != want {
		t.Fatalf("header %q, want prefix %q", h, want)
	}
	for name, err := range map[string]error{
		"other secret": webhook.Verify("whsec_y", h, body, now, time.Minute),
		"other body":   webhook.Verify("whsec_x", h, []byte(`{"id":"evt_2"}`), now, time.Minute),
		"malformed":    webhook.Verify("whsec_x", "v1=abc", body, now, time.Minute),
	} {
		if !errors.Is(err, webhook.ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
	if err := webhook.Verify("whsec_x", h, body, now.Add(10*time.Minute), 5*time.Minute); !errors.Is(err, webhook.ErrStale) {
		t.Errorf("old timestamp: %v, want ErrStale", err)
	}
}

// receiver is a real HTTP endpoint that verifies every signature, refuses
// the first failures attempts of each event with a 500, then accepts.
type receiver struct {
	t        *testing.T
	secret   func() string
	failures int

	mu       sync.Mutex
	tries    map[string]int // event id → requests
	accepted map[string]int // event id → 2xx answers
	deliv    map[string]int // delivery id → 2xx answers
	badSig   int
}

func newReceiver(t *testing.T, failures int) (*receiver, *httptest.Server) {
	r := &receiver{t: t, failures: failures, tries: map[string]int{}, accepted: map[string]int{}, deliv: map[string]int{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhook.Verify(r.secret(), req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		r.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	id := req.Header.Get(webhook.HeaderEventID)
	r.tries[id]++
	if r.tries[id] <= r.failures {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.accepted[id]++
	r.deliv[req.Header.Get(webhook.HeaderDelivery)]++
	w.WriteHeader(http.StatusNoContent)
}

var fast = []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond}

// Two dispatchers ("nodes") on one prefix share the outbox: every event,
// emitted twice by two stores, is accepted exactly once after three
// refusals, every request is signed, and the log shows each attempt.
func TestDeliveryRetriedOnceAcrossNodes(t *testing.T) {
	for _, be := range testenv.RedisBackends(t) {
		t.Run(be.Name, func(t *testing.T) {
			rc := be.Open(t)
			prefix := testenv.KeyspaceOn(t, rc)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s1, err := webhook.NewStore(rc, prefix, webhook.Options{})
			if err != nil {
				t.Fatal(err)
			}
			s2, _ := webhook.NewStore(rc, prefix, webhook.Options{})
			rcv, srv := newReceiver(t, 3)
			ep, err := s1.Create(ctx, webhook.Endpoint{URL: srv.URL + "/hooks", Events: []string{webhook.BalanceLow, webhook.TopUpCreated}})
			if err != nil {
				t.Fatal(err)
			}
			rcv.secret = func() string { return ep.Secret }
			// An endpoint not subscribed to these types gets nothing.
			other, _ := s1.Create(ctx, webhook.Endpoint{URL: srv.URL + "/other", Events: []string{webhook.GrantExpired}})

			const events = 12
			for i := range events {
				e := webhook.Event{ID: webhook.SeqEventID(webhook.BalanceLow, "sub-1", int64(i+1)), Type: webhook.BalanceLow,
					Data: webhook.Data{Subscription: "sub-1", Balance: "5"}}
				for _, s := range []*webhook.Store{s1, s2, s1} { // redelivery, second node
					if err := s.Emit(ctx, e); err != nil {
						t.Fatal(err)
					}
				}
			}
			var wg sync.WaitGroup
			dctx, stop := context.WithCancel(ctx)
			for _, s := range []*webhook.Store{s1, s2} {
				d, err := webhook.NewDispatcher(s, webhook.DispatcherOptions{Schedule: fast, Poll: 5 * time.Millisecond, Timeout: 2 * time.Second, Workers: 3})
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() { defer wg.Done(); d.Run(dctx) }()
			}
			waitFor(t, 30*time.Second, func() bool {
				rcv.mu.Lock()
				defer rcv.mu.Unlock()
				return len(rcv.accepted) == events
			})
			time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
			stop()
			wg.Wait()

			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if rcv.badSig != 0 {
				t.Errorf("%d requests with a bad signature", rcv.badSig)
			}
			for id, n := range rcv.accepted {
				if n != 1 || rcv.tries[id] != 4 {
					t.Errorf("event %s: accepted %d times after %d requests, want 1 after 4", id, n, rcv.tries[id])
				}
			}
			for id, n := range rcv.deliv {
				if n != 1 {
					t.Errorf("delivery %s accepted %d times", id, n)
				}
			}
			ds, err := s1.Deliveries(ctx, ep.ID, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != events {
				t.Fatalf("%d deliveries logged, want %d", len(ds), events)
			}
			for _, d := range ds {
				codes := []int{}
				for _, a := range d.History {
					codes = append(codes, a.StatusCode)
				}
				if d.Status != webhook.Delivered || d.Attempts != 4 || d.LastStatusCode != 204 || d.NextAt != nil || d.DeliveredAt == nil ||
					fmt.Sprint(codes) != "[500 500 500 204]" {
					t.Errorf("delivery %+v, codes %v; want delivered after 4 attempts [500 500 500 204]", d, codes)
				}
			}
			if ds, _ := s1.Deliveries(ctx, other.ID, 10); len(ds) != 0 {
				t.Errorf("unsubscribed endpoint got %d deliveries", len(ds))
			}
		})
	}
}

// A receiver that never accepts fails the delivery after the schedule's
// last attempt; the log says so and nothing is due any more.
func TestDeliveryFailsAfterSchedule(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	ctx := context.Background()
	s, _ := webhook.NewStore(rc, prefix, webhook.Options{})
	rcv, srv := newReceiver(t, 1000)
	ep, err := s.Create(ctx, webhook.Endpoint{URL: srv.URL, Events: []string{webhook.TopUpCreated}})
	if err != nil {
		t.Fatal(err)
	}
	rcv.secret = func() string { return ep.Secret }
	if err := s.Emit(ctx, webhook.Event{ID: "evt_fail", Type: webhook.TopUpCreated, Data: webhook.Data{Subscription: "s"}}); err != nil {
		t.Fatal(err)
	}
	d, _ := webhook.NewDispatcher(s, webhook.DispatcherOptions{Schedule: fast[:2], Poll: 5 * time.Millisecond, Timeout: time.Second})
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	go d.Run(dctx)
	var got []webhook.Delivery
	waitFor(t, 10*time.Second, func() bool {
		got, _ = s.Deliveries(ctx, ep.ID, 10)
		return len(got) == 1 && got[0].Status == webhook.Failed
	})
	if g := got[0]; g.Attempts != 3 || g.LastStatusCode != 500 || g.NextAt != nil || len(g.History) != 3 {
		t.Errorf("failed delivery %+v, want 3 attempts, last 500, no next attempt", g)
	}
	stop()
	if n, _ := rc.ZCard(ctx, prefix+"{wh}:due").Result(); n != 0 {
		t.Errorf("%d deliveries still due", n)
	}
}

func TestEndpoints(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	ctx := context.Background()
	s, _ := webhook.NewStore(rc, prefix, webhook.Options{})
	for _, bad := range []webhook.Endpoint{
		{URL: "", Events: []string{webhook.BalanceLow}},
		{URL: "ftp://x", Events: []string{webhook.BalanceLow}},
		{URL: "https://u:p@x", Events: []string{webhook.BalanceLow}},
		{URL: "https://x"},
		{URL: "https://x", Events: []string{"balance.nope"}},
		{URL: "https://x", Events: []string{webhook.BalanceLow, webhook.BalanceLow}},
	} {
		var fe *webhook.FieldError
		if _, err := s.Create(ctx, bad); !errors.As(err, &fe) {
			t.Errorf("Create(%+v) = %v, want a field error", bad, err)
		}
	}
	ep, err := s.Create(ctx, webhook.Endpoint{URL: "https://example.test/h", Events: []string{webhook.TopUpCreated, webhook.BalanceLow}})
	if err != nil || ep.Secret == "" || ep.ID == "" {
		t.Fatalf("Create: %+v, %v", ep, err)
	}
	got, err := s.Get(ctx, ep.ID)
	if err != nil || got.Secret != "" || got.URL != ep.URL || len(got.Events) != 2 {
		t.Fatalf("Get: %+v, %v (no secret after creation)", got, err)
	}
	if l, _ := s.List(ctx); len(l) != 1 || l[0].Secret != "" {
		t.Fatalf("List: %+v", l)
	}
	if err := s.Delete(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, ep.ID); !errors.Is(err, webhook.ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := s.Deliveries(ctx, ep.ID, 10); !errors.Is(err, webhook.ErrNotFound) {
		t.Fatalf("Deliveries of a deleted endpoint: %v", err)
	}
}

// The engine's batch results seen twice (a redelivery, two nodes) make one
// event per crossing; an exhausting line makes balance.exhausted and the
// breakage the batch's sweep wrote grant.expired.
func TestNotifierIdempotent(t *testing.T) {
	rc, prefix := testenv.Keyspace(t)
	ctx := context.Background()
	clock := time.Now()
	bal, _ := balance.New(rc, balance.Options{Prefix: prefix, Now: func() time.Time { return clock }})
	s, _ := webhook.NewStore(rc, prefix, webhook.Options{})
	ep, err := s.Create(ctx, webhook.Endpoint{URL: "http://127.0.0.1:9/x", Events: webhook.Types})
	if err != nil {
		t.Fatal(err)
	}
	b := crossingBatch(t, bal, "sub-a")
	g, err := bal.Grant(ctx, balance.GrantRequest{Key: "promo", Subscription: "sub-a", Type: balance.Promotional, Amount: credit.Credits(3),
		EffectiveAt: clock.Add(-time.Hour), ExpiresAt: clock.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	b.Lines = append(b.Lines, balance.Line{EventID: "big", Offset: 99, Time: clock, Credits: credit.Credits(40)})
	res, err := bal.Apply(ctx, []balance.Batch{b})
	if err != nil {
		t.Fatal(err)
	}
	n := &webhook.Notifier{Emitter: s, Notes: bal, Customer: func(context.Context, string) (string, error) { return "ignored", nil }}
	for range 2 {
		if err := n.Batches(ctx, res); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.Deliveries(ctx, ep.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, d := range ds {
		types[d.EventType]++
	}
	want := map[string]int{webhook.BalanceLow: 1, webhook.BalanceExhausted: 1, webhook.GrantExpired: 1}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	body, err := rc.Get(ctx, prefix+"{wh}:ev:"+webhook.SeqEventID(webhook.GrantExpired, "sub-a", res[0].FirstSeq)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{`"type":"grant.expired"`, `"customer_id":"cust-sub-a"`, `"amount":"3"`, `"grant_id":"` + g.GrantID + `"`,
		fmt.Sprintf(`"ledger_seq":%d`, res[0].FirstSeq)} {
		if !contains(body, frag) {
			t.Errorf("body %s lacks %s", body, frag)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func waitFor(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not done within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serve's default retry schedule (a flag default, kept in config so that
// config imports no domain package) is the dispatcher's.
func TestConfigDefaultScheduleIsDispatchers(t *testing.T) {
	if got := config.Default().Engine.WebhookSchedule; !slices.Equal(got, webhook.DefaultSchedule) {
		t.Fatalf("config default %v, webhook.DefaultSchedule %v", got, webhook.DefaultSchedule)
	}
}
