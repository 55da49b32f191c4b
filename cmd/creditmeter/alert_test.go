package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/e2e"
	"github.com/creditmeter/creditmeter/internal/seed"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
)

const rulesFile = "../../deploy/prometheus/alerts.yml"

// promServer is a Prometheus process of the test's own.
type promServer struct {
	t    *testing.T
	base string
}

// startPrometheus runs Debian's prometheus on a free loopback port with temp
// storage, scraping target every second and evaluating the shipped rules
// every second, their `for:` shortened to 2s.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if testenv.RequireServices() {
			t.Fatalf("prometheus is required (CREDITMETER_REQUIRE_SERVICES=1): %v; install it with deploy/local/install.sh", err)
		}
		t.Skipf("prometheus not installed (deploy/local/install.sh): %v", err)
	}
	dir := t.TempDir()
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	forRe := regexp.MustCompile(`(?m)^(\s+for:) \S+$`)
	if n, alerts := len(forRe.FindAll(rules, -1)), strings.Count(string(rules), "- alert: "); n != alerts {
		t.Fatalf("%s: %d for: clauses to shorten, %d alerts", rulesFile, n, alerts)
	}
	rules = forRe.ReplaceAll(rules, []byte("$1 2s"))
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: creditmeter
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + freePort(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", out.String())
		}
	})
	p := &promServer{t: t, base: "http://" + addr}
	eventually(t, "prometheus ready", func() error {
		select {
		case err := <-done:
			t.Fatalf("prometheus exited: %v\n%s", err, out.String())
		default:
		}
		return get(p.base + "/-/ready")
	})
	return p
}

// api GETs a Prometheus HTTP API path and decodes its data into v.
func (p *promServer) api(path string, q url.Values, v any) error {
	resp, err := http.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s %v: %s", path, q, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (p *promServer) query(expr string) ([]sample, error) {
	var d struct {
		Result []sample `json:"result"`
	}
	err := p.api("/api/v1/query", url.Values{"query": {expr}}, &d)
	return d.Result, err
}

type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

// alerts are the active (pending or firing) alerts named name.
func (p *promServer) alerts(name string) ([]alert, error) {
	var d struct {
		Alerts []alert `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", nil, &d); err != nil {
		return nil, err
	}
	var out []alert
	for _, a := range d.Alerts {
		if a.Labels["alertname"] == name {
			out = append(out, a)
		}
	}
	return out, nil
}

// waitFor polls f until it returns nil, up to timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// emails produces n email.sent events (1 AIT each) of customer.
func emails(h *e2e.Harness, customer, idPrefix string, n int) {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		ev := rating.Event{ID: fmt.Sprintf("%s-%d", idPrefix, i), CustomerID: customer, Name: "email.sent", Timestamp: time.Now().UTC()}
		msgs[i] = kafka.Message{Key: []byte(customer), Value: ingest.AppendJSON(nil, &ev)}
	}
	h.Produce(msgs)
}

// The low-balance alerting path end to end: creditmeter serve on the real
// broker, Redis and ClickHouse, scraped by a real Prometheus evaluating the
// shipped rules. Events drive one subscription below its plan's threshold
// (20 AIT) and then to zero; CreditBalanceLow and then CreditBalanceExhausted
// fire for it alone; a top-up through the API resolves both.
func TestPrometheusAlertsOnLowBalance(t *testing.T) {
	began := time.Now()
	h := e2e.New(t, 2)
	low, err := seed.Subscribe(t.Context(), h.Catalog, h.Accounts, seed.Subscription{Customer: "alert-low", Plan: seed.PlanUnfunded, Included: "100"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Subscribe(t.Context(), h.Catalog, h.Accounts, seed.Subscription{Customer: "alert-rich", Plan: seed.PlanUnfunded, Included: "1000"}); err != nil {
		t.Fatal(err)
	}
	const token = "alert-test-admin-token-0123456789"
	httpAddr, metricsAddr := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	var serveOut bytes.Buffer
	serveCmd := exec.Command(bin, "serve",
		"--http-addr", httpAddr, "--metrics-addr", metricsAddr, "--admin-tokens", token,
		"--kafka-brokers", h.Broker.Addr(), "--kafka-group", "alerts",
		"--redis-addr", testenv.Config(t).Redis.Addr, "--redis-key-prefix", h.Prefix,
		"--clickhouse-addr", h.CC.Addr, "--clickhouse-database", h.CC.Database,
		"--batch-size", "100", "--linger", "10ms")
	serveCmd.Stdout, serveCmd.Stderr = &serveOut, &serveOut
	if err := serveCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = serveCmd.Process.Signal(syscall.SIGTERM)
		_ = serveCmd.Wait()
		if t.Failed() {
			t.Logf("serve log:\n%s", serveOut.String())
		}
	})
	base := "http://" + httpAddr
	eventually(t, "serve ready", func() error { return get(base + "/readyz") })
	prom := startPrometheus(t, metricsAddr)

	waitFor(t, "Prometheus scrapes serve", 30*time.Second, func() error {
		s, err := prom.query(`creditmeter_balances_low_unlisted{job="creditmeter"}`)
		if err != nil || len(s) != 1 {
			return fmt.Errorf("%v %v", s, err)
		}
		return nil
	})
	// Both balances above the threshold: no low series, no alert.
	time.Sleep(3 * time.Second)
	if s, err := prom.query(`creditmeter_balance_low_credits`); err != nil || len(s) != 0 {
		t.Fatalf("low series before any usage: %v %v", s, err)
	}
	if a, err := prom.alerts("CreditBalanceLow"); err != nil || len(a) != 0 {
		t.Fatalf("CreditBalanceLow active before any usage: %v %v", a, err)
	}

	// 85 emails: 100 → 15 AIT, below 20.
	emails(h, "alert-low", "low", 85)
	var fired alert
	took := waitFor(t, "CreditBalanceLow firing", time.Minute, func() error {
		as, err := prom.alerts("CreditBalanceLow")
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.State == "firing" {
				fired = a
				return nil
			}
		}
		return fmt.Errorf("active: %v", as)
	})
	t.Logf("CreditBalanceLow firing %s after the events were produced (for: 2s, scrape and evaluation 1s)", took.Round(100*time.Millisecond))
	wantLabels := map[string]string{"subscription": low, "customer": "alert-low", "plan": seed.PlanUnfunded, "severity": "warning"}
	for k, v := range wantLabels {
		if fired.Labels[k] != v {
			t.Errorf("CreditBalanceLow label %s = %q, want %q (all %v)", k, fired.Labels[k], v, fired.Labels)
		}
	}
	if d := fired.Annotations["description"]; !strings.Contains(d, "Balance 15 credits") {
		t.Errorf("description %q does not give the balance of 15", d)
	}
	// Only the low subscription has a series, and it is not exhausted.
	if s, err := prom.query(`creditmeter_balance_low_credits`); err != nil || len(s) != 1 || s[0].Metric["subscription"] != low {
		t.Errorf("low series: %v %v, want only %s", s, err, low)
	}
	if s, err := prom.query(`creditmeter_balances_low{plan="ai-prepaid"}`); err != nil || len(s) != 1 || s[0].Value[1] != "1" {
		t.Errorf("creditmeter_balances_low: %v %v, want 1", s, err)
	}
	if a, err := prom.alerts("CreditBalanceExhausted"); err != nil || len(a) != 0 {
		t.Errorf("CreditBalanceExhausted active at 15 AIT: %v %v", a, err)
	}

	// 20 more: 15 drawn, 5 unfunded, nothing left.
	emails(h, "alert-low", "empty", 20)
	waitFor(t, "CreditBalanceExhausted firing", time.Minute, func() error {
		as, err := prom.alerts("CreditBalanceExhausted")
		if err != nil {
			return err
		}
		if len(as) == 1 && as[0].State == "firing" && as[0].Labels["subscription"] == low && as[0].Labels["severity"] == "critical" {
			return nil
		}
		return fmt.Errorf("active: %v", as)
	})

	// A top-up of 300 through the API: above the threshold again.
	if code, body := send(t, http.MethodPost, base+"/v1/subscriptions/"+low+"/topups", token, `{"amount":"300"}`, "Idempotency-Key", "alert-topup-1"); code != http.StatusCreated {
		t.Fatalf("top-up: %d %s", code, body)
	}
	took = waitFor(t, "both alerts resolved", time.Minute, func() error {
		for _, name := range []string{"CreditBalanceLow", "CreditBalanceExhausted"} {
			if as, err := prom.alerts(name); err != nil || len(as) != 0 {
				return fmt.Errorf("%s: %v %v", name, as, err)
			}
		}
		return nil
	})
	t.Logf("alerts resolved %s after the top-up", took.Round(100*time.Millisecond))
	if s, err := prom.query(`creditmeter_balance_low_credits`); err != nil || len(s) != 0 {
		t.Errorf("low series after the top-up: %v %v", s, err)
	}
	waitFor(t, "top-up counted", 10*time.Second, func() error {
		s, err := prom.query(`creditmeter_topups_total{result="applied"}`)
		if err != nil || len(s) != 1 || s[0].Value[1] != "1" {
			return fmt.Errorf("%v %v", s, err)
		}
		return nil
	})

	// The engine alerts stay quiet on a healthy engine.
	for _, name := range []string{"ConsumerLagHigh", "EngineBackpressure", "DLQRateHigh", "CreditmeterDown", "LowBalanceReadFailing"} {
		if as, err := prom.alerts(name); err != nil || len(as) != 0 {
			t.Errorf("%s active on a healthy engine: %v %v", name, as, err)
		}
	}
	checkDashboard(t, prom)
	t.Logf("whole test %s", time.Since(began).Round(100*time.Millisecond))
}

// checkDashboard runs every query of the Grafana dashboard on the real
// Prometheus: each must parse and evaluate, and the core panels have data.
func checkDashboard(t *testing.T, prom *promServer) {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/prometheus/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$job", "creditmeter", "$instance", ".+", "$__rate_interval", "30s")
	withData := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			s, err := prom.query(vars.Replace(tg.Expr))
			if err != nil {
				t.Errorf("dashboard panel %q: %v", p.Title, err)
			}
			if len(s) > 0 {
				withData[p.Title] = true
			}
		}
	}
	for _, title := range []string{"Events", "Top-ups and adjustments", "Event to balance (freshness)", "Consumer lag", "Backpressure", "Low-balance crossings"} {
		if !withData[title] {
			t.Errorf("dashboard panel %q has no data on a running engine", title)
		}
	}
}
