package prometheus_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/lowbalance"
)

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testenv.RequireServices() {
			t.Fatalf("promtool is required (CREDITMETER_REQUIRE_SERVICES=1): %v; install Debian's prometheus (deploy/local/install.sh)", err)
		}
		t.Skipf("promtool not installed (deploy/local/install.sh): %v", err)
	}
	return p
}

func TestPromtool(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "rules_test.yml"}, {"check", "config", "prometheus.yml"}} {
		out, err := exec.Command(pt, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// oneLow has one low, exhausted subscription, so the collector emits every series.
type oneLow struct{}

func (oneLow) LowSubscriptions(context.Context) ([]string, error) { return []string{"s"}, nil }
func (oneLow) Balance(context.Context, string) (balance.BalanceView, error) {
	return balance.BalanceView{Total: credit.Credits(-1), Available: credit.Credits(-1), Low: true}, nil
}

// served is every metric name creditmeter serve exposes (histograms with
// their _bucket, _sum and _count).
func served(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := engine.NewMetrics(reg)
	accounts.NewAccountMetrics(reg, m.LowCrossings)
	reg.MustRegister(lowbalance.NewCollector(oneLow{}, nil, lowbalance.Options{}))
	// Label-only vectors appear once used.
	m.Lag.WithLabelValues("0").Set(0)
	m.StageSeconds.WithLabelValues("rate").Observe(0)
	m.Retries.WithLabelValues("balance").Add(0)
	m.LowCrossings.WithLabelValues("down").Add(0)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"up": true, "ALERTS": true}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		if mf.GetType().String() == "HISTOGRAM" {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\bcreditmeter_[a-z_]+`)

func TestRulesAndDashboardUseServedMetrics(t *testing.T) {
	names := served(t)
	rules, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, n := range metricName.FindAllString(string(rules), -1) {
		used[n] = true
	}

	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	ids := map[int]bool{}
	exprs := 0
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				used[n] = true
			}
		}
	}
	if dash.UID == "" || exprs < 10 {
		t.Errorf("dashboard uid %q with %d queries", dash.UID, exprs)
	}
	var missing []string
	for n := range used {
		if !names[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("rules or dashboard use metrics creditmeter does not serve: %v", missing)
	}
	// The alerts are all there.
	for _, a := range []string{"CreditBalanceLow", "CreditBalanceExhausted", "ConsumerLagHigh", "EngineBackpressure", "DLQRateHigh"} {
		if !strings.Contains(string(rules), "alert: "+a+"\n") {
			t.Errorf("alerts.yml lacks %s", a)
		}
	}
}
