package api_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// limitedPlan is the seed plan with a purchase limit of 1000 AIT a month.
var limitedPlan = strings.Replace(strings.Replace(planJSON, `"id":"ai-prepaid"`, `"id":"ai-limited"`, 1),
	`"overage_policy":"unfunded"`, `"overage_policy":"unfunded","purchase_limit":{"credits":"1000"}`, 1)

// 50 parallel top-ups of 300 AIT on a plan allowing 1000 a month: exactly
// three are made, the others are 422 purchase_limit_exceeded naming the limit.
func TestTopUpPurchaseLimitUnderConcurrency(t *testing.T) {
	e, _, _ := newBalanceEnv(t)
	e.seed()
	e.must(201, "POST", "/v1/plans", admin, limitedPlan)
	sub := strings.Replace(seedSub, `"plan_id":"ai-prepaid"`, `"plan_id":"ai-limited"`, 1)
	id := e.must(201, "POST", "/v1/subscriptions", admin, sub, "Idempotency-Key", "c").body["id"].(string)
	base := "/v1/subscriptions/" + id

	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do("POST", base+"/topups", admin, `{"amount":"300.000001"}`, "Idempotency-Key", fmt.Sprintf("p-%d", i))
			mu.Lock()
			defer mu.Unlock()
			switch code, field, msg := r.err(); {
			case r.status == 201 && r.body["charge"] == "12":
				codes["made"]++
			case r.status == 422 && code == "purchase_limit_exceeded" && field == "amount" && strings.Contains(msg, "1000 credits per month"):
				codes["limited"]++
			default:
				t.Errorf("top-up: %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	if codes["made"] != 3 || codes["limited"] != 47 {
		t.Fatalf("made %d, limited %d; want 3 and 47", codes["made"], codes["limited"])
	}
	if b := e.must(200, "GET", base+"/balance", admin, ""); b.body["total"] != "1000.000003" {
		t.Fatalf("balance: %s", b.raw)
	}
	// the invoice adds the rounded charges up in cents: 3 × 12.00
	inv := e.must(200, "GET", base+"/invoices?period="+time.Now().UTC().Format("2006-01"), admin, "")
	if inv.body["topups"] != "36" || inv.body["currency"] != "USD" {
		t.Fatalf("invoice: %s", inv.raw)
	}
	// a plan's limit is validated
	bad := strings.Replace(limitedPlan, `"credits":"1000"`, `"credits":"-1"`, 1)
	bad = strings.Replace(bad, `"id":"ai-limited"`, `"id":"ai-bad"`, 1)
	if _, f, _ := e.must(400, "POST", "/v1/plans", admin, bad).err(); f != "prepaid.purchase_limit.credits" {
		t.Fatalf("bad limit: field %q", f)
	}
}
