package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
)

type deadLetterPage struct {
	Counts  map[string]int `json:"counts"`
	Total   int            `json:"total"`
	Entries []struct {
		Reason     string `json:"reason"`
		Field      string `json:"field"`
		Detail     string `json:"detail"`
		EventID    string `json:"event_id"`
		CustomerID string `json:"customer_id"`
		At         string `json:"dead_lettered_at"`
		ReplayedAt string `json:"replayed_at"`
		Original   struct {
			Topic     string `json:"topic"`
			Partition int    `json:"partition"`
			Offset    int64  `json:"offset"`
		} `json:"original"`
	} `json:"entries"`
	NextCursor string `json:"next_cursor"`
}

func deadLetters(t *testing.T, base, query string) deadLetterPage {
	t.Helper()
	code, b := body(t, base+"/v1/dead-letters?"+query, longAdminToken)
	if code != 200 {
		t.Fatalf("GET /v1/dead-letters?%s: %d %s", query, code, b)
	}
	var p deadLetterPage
	if err := json.Unmarshal([]byte(b), &p); err != nil {
		t.Fatalf("GET /v1/dead-letters?%s: %v: %s", query, err, b)
	}
	return p
}

// Issue 18.5 end to end: events of a customer the catalog does not know yet
// are dead-lettered; the API lists and counts them in pages; once the
// customer is subscribed `dlq replay` re-submits them and they are charged
// exactly once, however often replay runs, and even when its records of
// what it replayed are lost (the event ids keep the engine's duplicate
// check working). A malformed event still fails and is reported so.
func TestDLQReplayChargesOnce(t *testing.T) {
	h := e2e.New(t, 2)
	h.Subscribe(1)
	httpAddr := "127.0.0.1:" + freePort(t)
	p := startServeAt(t, h, "dlq-replay", httpAddr, "--admin-tokens", longAdminToken)
	base := "http://" + httpAddr
	eventually(t, "serve answers /healthz", func() error { return get(base + "/healthz") })

	emails(h, "newco", "newco-ev", 3)
	emails(h, "cust-000", "known-ev", 2)
	h.Produce([]kafka.Message{{Key: []byte("newco"), Value: []byte(`{"id":`)}})
	p.waitDone(h, "dlq-replay", time.Minute)

	all := deadLetters(t, base, "")
	if all.Total != 4 || all.Counts["unknown_customer"] != 3 || all.Counts["malformed"] != 1 || len(all.Entries) != 4 {
		t.Fatalf("dead letters: total %d counts %v, %d entries; want 3 unknown_customer + 1 malformed", all.Total, all.Counts, len(all.Entries))
	}
	for _, e := range all.Entries {
		if e.Original.Topic != "usage-events" || e.At == "" || e.Detail == "" ||
			(e.Reason == "unknown_customer" && (e.Field != "customer_id" || e.CustomerID != "newco" || !strings.HasPrefix(e.EventID, "newco-ev-"))) {
			t.Errorf("entry %+v: want the original position, time, detail, and the event and customer of an unknown_customer", e)
		}
	}
	// Pages of one: every dead letter once, then no cursor.
	seen := map[string]bool{}
	q := "limit=1"
	for i := 0; ; i++ {
		pg := deadLetters(t, base, q)
		if len(pg.Entries) != 1 || i > 4 {
			t.Fatalf("page %d: %d entries", i, len(pg.Entries))
		}
		key := fmt.Sprint(pg.Entries[0].Original)
		if seen[key] {
			t.Errorf("page %d repeats %s", i, key)
		}
		seen[key] = true
		if pg.NextCursor == "" {
			break
		}
		q = "limit=1&cursor=" + url.QueryEscape(pg.NextCursor)
	}
	if len(seen) != 4 {
		t.Errorf("pages of one listed %d dead letters, want 4", len(seen))
	}
	if m := deadLetters(t, base, "reason=malformed"); m.Total != 1 || len(m.Entries) != 1 || m.Entries[0].Reason != "malformed" {
		t.Errorf("reason=malformed: %+v", m)
	}
	for _, bad := range []string{"limit=0", "limit=501", "since=yesterday", "cursor=xyz", "reason=Not-A-Reason"} {
		if code, b := body(t, base+"/v1/dead-letters?"+bad, longAdminToken); code != 400 || !strings.Contains(b, `"field":"`+strings.Split(bad, "=")[0]+`"`) {
			t.Errorf("?%s: %d %s, want 400 naming the field", bad, code, b)
		}
	}
	if code, _ := body(t, base+"/v1/dead-letters", ""); code != 401 {
		t.Errorf("without a token: %d, want 401", code)
	}

	replayArgs := []string{"dlq", "replay", "--kafka-brokers", h.Broker.Addr(), "--redis-addr", h.Redis.Addr, "--redis-key-prefix", h.Prefix}
	out, err := run(t, nil, append(replayArgs, "--dry-run")...)
	if err != nil || !strings.Contains(out, "would replay: 0\n") || !strings.Contains(out, "still failing: 4 (malformed 1, unknown_customer 3)") {
		t.Fatalf("dry run before the fix: %v\n%s", err, out)
	}

	// The catalog fix: newco subscribes (its events are within the grace
	// window before the subscription's start, so they are its).
	sub, err := seed.Subscribe(t.Context(), h.Catalog, h.Accounts, seed.Subscription{Customer: "newco", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	if out, err = run(t, nil, append(replayArgs, "--dry-run")...); err != nil || !strings.Contains(out, "would replay: 3 (unknown_customer 3)") {
		t.Fatalf("dry run after the fix: %v\n%s", err, out)
	}
	out, err = run(t, nil, replayArgs...)
	if err != nil || !strings.Contains(out, "replayed: 3 (unknown_customer 3)\n") || !strings.Contains(out, "still failing: 1 (malformed 1)") ||
		!strings.Contains(out, "malformed → malformed") {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	out, err = run(t, nil, replayArgs...)
	if err != nil || !strings.Contains(out, "replayed: 0\n") || !strings.Contains(out, "already replayed: 3 (unknown_customer 3)") {
		t.Fatalf("second replay: %v\n%s", err, out)
	}
	p.waitDone(h, "dlq-replay", time.Minute)
	// The events are older than newco's included grant, so they draw
	// nothing from it: the plan records them as unfunded usage.
	checkCharged := func(when string) {
		t.Helper()
		v, err := h.Balances.Balance(t.Context(), sub)
		if err != nil {
			t.Fatal(err)
		}
		if used := credit.MustParse("100") - v.Available + v.Unfunded; used != credit.MustParse("3") {
			t.Errorf("%s: newco used %s credits (available %s, unfunded %s), want 3 emails = 3; serve's log ends:\n%s",
				when, used, v.Available, v.Unfunded, tail(p.out.String()))
		}
	}
	checkCharged("after two replays")

	// Replay's records lost (as if it died between sending and recording):
	// the events go again, and the engine charges none of them twice.
	if err := h.RC.Del(t.Context(), h.Prefix+"dlq-replayed:usage-events-dlq").Err(); err != nil {
		t.Fatal(err)
	}
	if out, err = run(t, nil, append(replayArgs, "--reason", "unknown_customer", "--since", "1h")...); err != nil ||
		!strings.Contains(out, "replayed: 3 (unknown_customer 3)\n") || !strings.Contains(out, "dead letters selected: 3\n") {
		t.Fatalf("replay without its records: %v\n%s", err, out)
	}
	p.waitDone(h, "dlq-replay", time.Minute)
	checkCharged("after a replay that lost its records")

	after := deadLetters(t, base, "reason=unknown_customer")
	if after.Total != 3 || all.Total != 4 || deadLetters(t, base, "").Total != 4 {
		t.Errorf("the replayed events were dead-lettered again: %+v", after)
	}
	for _, e := range after.Entries {
		if e.ReplayedAt == "" {
			t.Errorf("%s: no replayed_at after replay", e.EventID)
		}
	}
}

// Two replays never run at once: the second is refused while the first
// holds the lock, and nothing is sent; bad --since values are named.
func TestDLQReplayRefusesWhileAnotherRuns(t *testing.T) {
	h := e2e.New(t, 1)
	if err := h.RC.Set(t.Context(), h.Prefix+"dlq-replay-lock", "other", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	args := []string{"dlq", "replay", "--kafka-brokers", h.Broker.Addr(), "--redis-addr", h.Redis.Addr, "--redis-key-prefix", h.Prefix}
	out, err := run(t, nil, args...)
	if err == nil || !strings.Contains(out, "another dlq replay holds "+h.Prefix+"dlq-replay-lock") {
		t.Errorf("replay while another runs: %v\n%s", err, out)
	}
	if out, err := run(t, nil, append(args, "--dry-run")...); err != nil || !strings.Contains(out, "would replay: 0\n") {
		t.Errorf("a dry run takes no lock: %v\n%s", err, out)
	}
	if out, err := run(t, nil, append(args, "--since", "yesterday")...); err == nil || !strings.Contains(out, `--since "yesterday"`) {
		t.Errorf("bad --since: %v\n%s", err, out)
	}
}
