package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
)

// Two serve processes on one Redis prefix and consumer group: an endpoint
// registered on one, a subscription created on it, usage streamed through
// Kafka that crosses the low-balance threshold and exhausts the balance, a
// top-up on the other; subscription.started at its creation (it starts at
// once). A real receiver that refuses each event twice gets
// every event once, signed, and the delivery log on either node says so.
func TestServeWebhooksTwoNodes(t *testing.T) {
	h := e2e.New(t, 2)
	const token = "webhook-admin-token-0123456789abcdef"
	addrs := []string{"127.0.0.1:" + freePort(t), "127.0.0.1:" + freePort(t)}
	var procs []*serveProc
	for _, a := range addrs {
		procs = append(procs, startServeAt(t, h, "wh", a, "--admin-tokens", token, "--webhook-retry-schedule", "50ms,100ms,200ms,400ms"))
	}
	for _, a := range addrs {
		eventually(t, "serve answers /healthz", func() error { return get("http://" + a + "/healthz") })
	}
	call := func(node int, method, path, body string, want int) map[string]any {
		t.Helper()
		code, b := send(t, method, "http://"+addrs[node]+path, token, body, "Idempotency-Key", fmt.Sprintf("k-%s-%d", path, len(body)))
		if code != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, b)
		}
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return v
	}

	var mu sync.Mutex
	var secret string
	tries, accepted, byDelivery := map[string]int{}, map[string]string{}, map[string]int{}
	badSig := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if webhook.Verify(secret, r.Header.Get("Creditmeter-Signature"), body, time.Now(), 5*time.Minute) != nil {
			badSig++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := r.Header.Get("Creditmeter-Event-Id")
		if tries[id]++; tries[id] <= 2 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		accepted[id] = r.Header.Get("Creditmeter-Event-Type")
		byDelivery[r.Header.Get("Creditmeter-Delivery-Id")]++
		w.WriteHeader(http.StatusOK)
	}))
	defer rcv.Close()

	ep := call(0, "POST", "/v1/webhooks", `{"url":"`+rcv.URL+`","events":["balance.low","balance.recovered","balance.exhausted","topup.created","subscription.created","subscription.started"]}`, 201)
	mu.Lock()
	secret = ep["secret"].(string)
	mu.Unlock()
	call(0, "POST", "/v1/customers", `{"id":"cust-wh","name":"Webhook Inc"}`, 201)
	call(0, "POST", "/v1/subscriptions", `{"id":"sub-wh","customer_id":"cust-wh","product":"ai-agents","plan_id":"ai-prepaid","currency":"USD",
	  "included_credits":{"enabled":true,"grant_type":"promotional","amount":"30","expiration":{"rule":"never"}},"schedule":{"start":"now"}}`, 201)

	// 40 emails against 30 credits and a threshold of 20.
	var msgs []kafka.Message
	base := time.Now()
	for i := range 40 {
		ev := rating.Event{ID: fmt.Sprintf("wh-%d", i), CustomerID: "cust-wh", Name: "email.sent", Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
		msgs = append(msgs, kafka.Message{Key: []byte("cust-wh"), Value: ingest.AppendJSON(nil, &ev)})
	}
	h.Produce(msgs)
	h.WaitGroupDone("wh", 2*time.Minute)
	call(1, "POST", "/v1/subscriptions/sub-wh/topups", `{"amount":"300"}`, 201)

	want := map[string]int{"subscription.created": 1, "subscription.started": 1, "balance.low": 1, "balance.exhausted": 1, "topup.created": 1, "balance.recovered": 1}
	eventually(t, "the receiver accepts every event", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(accepted) < len(want) {
			return fmt.Errorf("accepted %v", accepted)
		}
		return nil
	})
	time.Sleep(time.Second) // room for a duplicate
	mu.Lock()
	got := map[string]int{}
	for _, typ := range accepted {
		got[typ]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || badSig != 0 {
		t.Errorf("accepted %v (%d bad signatures), want %v", got, badSig, want)
	}
	for id, n := range tries {
		if n != 3 {
			t.Errorf("event %s: %d requests, want 3 (two refused, one accepted)", id, n)
		}
	}
	for id, n := range byDelivery {
		if n != 1 {
			t.Errorf("delivery %s accepted %d times", id, n)
		}
	}
	mu.Unlock()
	for node := range addrs {
		log := call(node, "GET", "/v1/webhooks/"+ep["id"].(string)+"/deliveries", "", 200)
		ds, _ := log["data"].([]any)
		if len(ds) != len(want) {
			t.Fatalf("node %d: delivery log %v", node, log)
		}
		for _, d := range ds {
			if d := d.(map[string]any); d["status"] != "delivered" || d["attempts"] != float64(3) {
				t.Errorf("node %d: delivery %v", node, d)
			}
		}
	}
	for _, p := range procs {
		p.stop()
	}
}
