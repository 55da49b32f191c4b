package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
)

// A serve is killed (SIGKILL) right after the usage batch that crosses the
// low-balance threshold is written and archived, before its webhooks are
// emitted and its offsets committed; a second serve takes the batch over.
// The receiver gets balance.low and balance.exhausted once each, with the
// id of the crossing's ledger seq.
func TestServeKilledBeforeEmission(t *testing.T) {
	h := e2e.New(t, 1)
	const token = "webhook-admin-token-0123456789abcdef"
	addrs := []string{"127.0.0.1:" + freePort(t), "127.0.0.1:" + freePort(t)}

	var mu sync.Mutex
	var secret string
	accepted := map[string][]string{} // type → event ids
	bodies := map[string]string{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if webhook.Verify(secret, r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id, typ := r.Header.Get(webhook.HeaderEventID), r.Header.Get(webhook.HeaderEventType)
		accepted[typ] = append(accepted[typ], id)
		bodies[id] = string(body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	call := func(method, path, body string, want int) map[string]any {
		t.Helper()
		code, b := send(t, method, "http://"+addrs[0]+path, token, body)
		if code != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, b)
		}
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return v
	}

	t.Setenv(dieBeforeNotify, "1")
	a := startServeAt(t, h, "whk", addrs[0], "--admin-tokens", token)
	os.Unsetenv(dieBeforeNotify)
	eventually(t, "serve answers /healthz", func() error { return get("http://" + addrs[0] + "/healthz") })
	ep := call("POST", "/v1/webhooks", `{"url":"`+rcv.URL+`","events":["balance.low","balance.exhausted"]}`, 201)
	mu.Lock()
	secret = ep["secret"].(string)
	mu.Unlock()
	call("POST", "/v1/customers", `{"id":"cust-whk","name":"Crash Inc"}`, 201)
	call("POST", "/v1/subscriptions", `{"id":"sub-whk","customer_id":"cust-whk","product":"ai-agents","plan_id":"ai-prepaid","currency":"USD",
	  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"30","expiration":{"rule":"never"}},"schedule":{"start":"now"}}`, 201)

	// 40 emails against 30 credits and a threshold of 20, in one batch
	var msgs []kafka.Message
	base := time.Now()
	for i := range 40 {
		ev := rating.Event{ID: fmt.Sprintf("whk-%d", i), CustomerID: "cust-whk", Name: "email.sent", Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
		msgs = append(msgs, kafka.Message{Key: []byte("cust-whk"), Value: ingest.AppendJSON(nil, &ev)})
	}
	h.Produce(msgs)
	select {
	case err := <-a.done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("serve ended with %v, want killed by SIGKILL before the emission:\n%s", err, a.out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve did not die at the crossing:\n%s", a.out.String())
	}
	mu.Lock()
	if len(accepted) != 0 {
		t.Fatalf("events delivered before the takeover: %v", accepted)
	}
	mu.Unlock()

	b := startServeAt(t, h, "whk", addrs[1], "--admin-tokens", token)
	eventually(t, "the receiver gets the crossing and the exhaustion", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(accepted[webhook.BalanceLow]) == 0 || len(accepted[webhook.BalanceExhausted]) == 0 {
			return fmt.Errorf("accepted %v", accepted)
		}
		return nil
	})
	b.waitDone(h, "whk", time.Minute)
	time.Sleep(time.Second) // room for a duplicate
	b.stop()
	mu.Lock()
	defer mu.Unlock()
	for _, typ := range []string{webhook.BalanceLow, webhook.BalanceExhausted} {
		ids := accepted[typ]
		if len(ids) != 1 {
			t.Fatalf("%s delivered %d times: %v", typ, len(ids), ids)
		}
		var e webhook.Event
		if err := json.Unmarshal([]byte(bodies[ids[0]]), &e); err != nil {
			t.Fatal(err)
		}
		if want := webhook.SeqEventID(typ, "sub-whk", e.Data.LedgerSeq); ids[0] != want || e.ID != want || e.Data.LedgerSeq == 0 {
			t.Errorf("%s: id %s (body %s), want %s from the ledger seq", typ, ids[0], bodies[ids[0]], want)
		}
	}
}
