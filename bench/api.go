package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/creditmeter/creditmeter/api"
)

// APIResult is scenario 5: latency of the balance read and the spend check
// through the real HTTP handler (api.NewServer over the world's Redis), with
// concurrent clients on loopback.
type APIResult struct {
	// Closed loop: every client sends its next request when the last
	// returns, so the machine is saturated and latency is mostly queueing.
	// Open loop: requests at a fixed total rate (OpenRate), latency counted
	// from when each was due, so a stall is not hidden.
	OpenRate   float64 `json:"open_rate"`
	OpenBal    Latency `json:"open_balance"`
	OpenCheck  Latency `json:"open_check"`
	Workers    int     `json:"workers"`
	Seconds    float64 `json:"seconds_each"`
	Balance    Latency `json:"balance"`
	BalanceRPS float64 `json:"balance_rps"`
	Check      Latency `json:"check"`
	CheckRPS   float64 `json:"check_rps"`
	Errors     int64   `json:"errors"`
	// Under load: the open-loop check at OpenRate again, while events are
	// produced at LoadRate (half the e2e figure) and the engine drains them
	// (Load: that run's freshness and CPU).
	LoadRate  float64       `json:"load_rate,omitempty"`
	LoadCheck Latency       `json:"load_check"`
	Load      *SteadyResult `json:"load,omitempty"`
}

// runAPI measures idle, then (loadRate > 0 and an open-loop rate) the
// open-loop check again while the engine drains events at loadRate.
func runAPI(ctx context.Context, o *Options, w *World, loadRate float64) (*APIResult, error) {
	const token = "bench-admin-token-0123456789"
	h := api.NewServer(api.Options{Catalog: w.Catalog, Ledger: w.Accounts, Balances: w.Accounts, AdminTokens: []string{token},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: o.APIWorkers * 2, MaxIdleConnsPerHost: o.APIWorkers * 2}}
	res := &APIResult{Workers: o.APIWorkers, Seconds: o.APIFor.Seconds()}
	o.logf("scenario 5 (api): %d concurrent clients, %s per endpoint, %s", o.APIWorkers, o.APIFor, base)

	run := func(name string, rate float64, req func(r *rand.Rand) (*http.Request, error)) (Latency, float64, error) {
		var mu sync.Mutex
		var all Hist
		var errs int64
		var firstErr error
		// A bar of clients finished (an open-ended bar's spinner goroutine races).
		bar := o.bar(int64(o.APIWorkers), name+" (clients done)")
		var wg sync.WaitGroup
		end := time.Now().Add(o.APIFor)
		// Open loop: a pacer hands out due times; a request's latency counts
		// from when it was due, so queueing behind a slow one is not hidden.
		var dues chan time.Time
		if rate > 0 {
			dues = make(chan time.Time, 1<<16)
			go func() {
				defer close(dues)
				every := time.Duration(float64(time.Second) / rate)
				due := time.Now()
				for due.Before(end.Add(time.Second)) && ctx.Err() == nil {
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
					for ; !due.After(time.Now()); due = due.Add(every) {
						dues <- due
					}
				}
			}()
		}
		// The first second warms the connections and code paths; it is not counted.
		warm := time.Now().Add(time.Second)
		for i := range o.APIWorkers {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, 5))
				var hist Hist
				var bad int64
				var firstBad error
				for ctx.Err() == nil {
					var t0 time.Time
					if dues != nil {
						due, ok := <-dues
						if !ok {
							break
						}
						t0 = due
					} else if t0 = time.Now(); t0.After(end.Add(time.Second)) {
						break
					}
					q, err := req(r)
					if err != nil {
						firstBad = err
						break
					}
					resp, err := client.Do(q)
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("%s %s: status %d", q.Method, q.URL.Path, resp.StatusCode)
						}
					}
					d := time.Since(t0)
					if err != nil {
						bad++
						if firstBad == nil {
							firstBad = err
						}
						continue
					}
					if t0.After(warm) {
						hist.Add(d)
					}
				}
				mu.Lock()
				all.Merge(&hist)
				errs += bad
				if firstErr == nil {
					firstErr = firstBad
				}
				_ = bar.Add(1) // under mu: the bar is not safe for concurrent use
				mu.Unlock()
			}(uint64(i))
		}
		wg.Wait()
		_ = bar.Finish()
		res.Errors += errs
		return all.Summary(), float64(all.Count()) / o.APIFor.Seconds(), firstErr
	}
	pick := func(r *rand.Rand) string { return w.Subs[r.IntN(len(w.Subs))] }
	var e1, e2 error
	balReq := func(r *rand.Rand) (*http.Request, error) {
		q, err := http.NewRequest(http.MethodGet, base+"/v1/subscriptions/"+pick(r)+"/balance", nil)
		if err == nil {
			q.Header.Set("Authorization", "Bearer "+token)
		}
		return q, err
	}
	checkReq := func(r *rand.Rand) (*http.Request, error) {
		q, err := http.NewRequest(http.MethodPost, base+"/v1/subscriptions/"+pick(r)+"/check", bytes.NewReader([]byte(`{"amount":"2.5"}`)))
		if err == nil {
			q.Header.Set("Authorization", "Bearer "+token)
			q.Header.Set("Content-Type", "application/json")
		}
		return q, err
	}
	res.Balance, res.BalanceRPS, e1 = run("GET balance", 0, balReq)
	res.Check, res.CheckRPS, e2 = run("POST check", 0, checkReq)
	if o.APIRate > 0 {
		res.OpenRate = o.APIRate
		var e3, e4 error
		res.OpenBal, _, e3 = run("GET balance (open loop)", o.APIRate, balReq)
		res.OpenCheck, _, e4 = run("POST check (open loop)", o.APIRate, checkReq)
		e1, e2 = errors.Join(e1, e3), errors.Join(e2, e4)
		o.logf("scenario 5 (api): open loop at %.0f req/s: balance p50 %.2f ms p99 %.2f ms; check p50 %.2f ms p99 %.2f ms",
			o.APIRate, res.OpenBal.P50, res.OpenBal.P99, res.OpenCheck.P50, res.OpenCheck.P99)
		if loadRate > 0 {
			res.LoadRate = loadRate
			var e5 error
			n := int(loadRate * (o.APIFor + 2*time.Second).Seconds())
			ld, e6 := runSteady(ctx, o, w, "api-load", loadRate, n, func() error {
				res.LoadCheck, _, e5 = run("POST check (open loop, engine draining)", o.APIRate, checkReq)
				return nil
			})
			res.Load = ld
			e2 = errors.Join(e2, e5)
			if e6 != nil {
				return res, fmt.Errorf("the engine's load for the API: %w", e6)
			}
			o.logf("scenario 5 (api): check open loop at %.0f req/s while the engine drains %.0f events/s: p50 %.2f ms p99 %.2f ms max %.1f ms; freshness p99 %.1f ms",
				o.APIRate, ld.ProducedRate, res.LoadCheck.P50, res.LoadCheck.P99, res.LoadCheck.Max, ld.Freshness.P99)
		}
	}
	o.logf("scenario 5 (api): balance p50 %.2f ms p99 %.2f ms (%.0f req/s); check p50 %.2f ms p99 %.2f ms (%.0f req/s); errors %d",
		res.Balance.P50, res.Balance.P99, res.BalanceRPS, res.Check.P50, res.Check.P99, res.CheckRPS, res.Errors)
	if res.Errors > 0 {
		return res, fmt.Errorf("%d failed requests, first: %v %v", res.Errors, e1, e2)
	}
	return res, nil
}
