package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/segmentio/kafka-go"
	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/app"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/rating"
)

func newDemoCmd() *cobra.Command {
	cfg := config.Default()
	var emails int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Play the seed's prepaid-credit story end to end on the real services",
		Long: `demo runs creditmeter (engine and API, in-process on a free loopback port)
against the configured Kafka, Redis and ClickHouse and plays the prepaid-plan
story step by step, through the HTTP API and Kafka as a product would:

 1. the credit currency AI Tokens (AIT), the feature ai-agent-email with an
    event-based meter, and a paid prepaid plan (flat-rate top-ups,
    1 AIT = 1.00 USD, min 250 / max 8,000, 1 email = 1 AIT);
 2. mapping a meter that is not event-based is refused;
 3. a customer, the subscription preview, then the subscription: credit value
    0.04 USD, 100 AIT included as a never-expiring promotional grant;
 4. AI-agent email events streamed through Kafka, the balance draining live,
    the low-balance threshold crossed and shown in the metrics;
 5. a top-up below the minimum refused, one of 500 AIT charged 20.00 USD, and
    an admin adjustment with a reason;
 6. the ledger, the usage archived in ClickHouse and the invoice, whose totals
    must agree.

Each run uses a new customer, so it can be repeated. It exits 0 only when
every step's result is the expected one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cfg, emails, cmd.OutOrStdout())
		},
	}
	withConfig(cmd, &cfg, config.GroupKafka, config.GroupRedis, config.GroupClickHouse, config.GroupEngine)
	cmd.Flags().IntVar(&emails, "emails", 90, "AI-agent email events to stream (each costs 1 AIT of the 100 included)")
	return cmd
}

// demo is the story's state: an API client and what it checks.
type demo struct {
	ctx     context.Context
	out     io.Writer
	base    string
	metrics string // the /metrics URL, on its own listener
	token   string
	failed  []string
}

func (d *demo) step(n int, title string) {
	fmt.Fprintf(d.out, "\n== Step %d: %s\n", n, title)
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, "   "+format+"\n", args...) }

// expect records a failed expectation; the run fails at the end.
func (d *demo) expect(ok bool, format string, args ...any) {
	if ok {
		d.say("✓ "+format, args...)
		return
	}
	msg := fmt.Sprintf(format, args...)
	d.say("✗ EXPECTED: %s", msg)
	d.failed = append(d.failed, msg)
}

type reply struct {
	status int
	body   map[string]any
	raw    []byte
}

func (r reply) str(path ...string) string {
	var v any = r.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// get fetches url without a token (the metrics listener has none).
func (d *demo) get(url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

func (d *demo) call(method, path string, body any, hdr ...string) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(d.ctx, method, d.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode}
	if r.raw, err = io.ReadAll(resp.Body); err != nil {
		return r, err
	}
	_ = json.Unmarshal(r.raw, &r.body)
	return r, nil
}

// must calls and requires one of the statuses; anything else stops the demo.
func (d *demo) must(method, path string, body any, statuses []int, hdr ...string) reply {
	r, err := d.call(method, path, body, hdr...)
	if err == nil {
		for _, s := range statuses {
			if r.status == s {
				return r
			}
		}
		err = fmt.Errorf("status %d: %s", r.status, r.raw)
	}
	panic(demoAbort{fmt.Errorf("%s %s: %w", method, path, err)})
}

type demoAbort struct{ err error }

var created = []int{http.StatusCreated, http.StatusOK}

func obj(s string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic(err)
	}
	return m
}

func runDemo(ctx context.Context, cfg config.Config, emails int, out io.Writer) (err error) {
	if emails < 1 || emails > 100 {
		return fmt.Errorf("--emails must be 1 to 100 (the included credits), got %d", emails)
	}
	token := randomHex(16)
	cfg.HTTP.AdminTokens = append(cfg.HTTP.AdminTokens, token)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	go func() { served <- serveOn(sctx, cfg, quiet, ln, mln) }()
	defer func() {
		stop()
		if serr := <-served; serr != nil && err == nil {
			err = serr
		}
	}()
	d := &demo{ctx: ctx, out: out, base: "http://" + ln.Addr().String(), metrics: "http://" + mln.Addr().String() + "/metrics", token: token}
	defer func() {
		if p := recover(); p != nil {
			a, ok := p.(demoAbort)
			if !ok {
				panic(p)
			}
			err = a.err
		}
	}()
	if err := d.waitReady(); err != nil {
		return err
	}
	d.play(cfg, emails)
	if len(d.failed) > 0 {
		return fmt.Errorf("demo: %d expectations failed: %s", len(d.failed), strings.Join(d.failed, "; "))
	}
	fmt.Fprintln(out, "\nDemo complete: every step gave the expected result.")
	return nil
}

func (d *demo) waitReady() error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		r, err := d.call("GET", "/readyz", nil)
		if err == nil && r.status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("creditmeter did not become ready in 90s: %v %s (is every service up? try creditmeter doctor)", err, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const demoPlan = `{"id":"ai-agents-prepaid","product":"ai-agents","name":"AI Agents Prepaid","type":"paid","billing_model":"prepaid",
  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},
    "currency_values":[{"currency":"USD","value":"1.00"}],
    "min_purchase":"250","max_purchase":"8000",
    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"1"}],
    "low_balance":{"credits":"20"},"overage_policy":"unfunded"}}`

func (d *demo) play(cfg config.Config, emails int) {
	run := randomHex(3)
	customer := "acme-" + run

	d.step(1, "Product Catalog: credit currency, metered feature, prepaid plan")
	d.must("POST", "/v1/currencies", obj(`{"code":"AIT","name":"AI Tokens","symbol":"AIT"}`), created)
	d.say("credit currency AI Tokens (AIT)")
	d.must("POST", "/v1/features", obj(`{"id":"ai-agent-email","name":"AI Agent Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`), created)
	d.say("feature ai-agent-email, event-based meter: COUNT of email.sent events")
	p := d.must("POST", "/v1/plans", obj(demoPlan), created)
	d.say("plan %q: paid, prepaid, top-up model %s, 1 AIT = %s USD, purchases %s to %s AIT, 1 email = 1 AIT",
		p.str("name"), p.str("prepaid", "top_up_model", "type"), "1.00", p.str("prepaid", "min_purchase"), p.str("prepaid", "max_purchase"))
	d.expect(p.str("type") == "paid" && p.str("billing_model") == "prepaid", "the plan is paid and prepaid")

	d.step(2, "Only event-based meters can be mapped to credit consumption")
	d.must("POST", "/v1/features", obj(`{"id":"storage-gb","name":"Storage","meter":{"kind":"pre_aggregated"}}`), created)
	bad := obj(demoPlan)
	bad["id"] = "storage-prepaid"
	bad["prepaid"].(map[string]any)["consumption"] = []any{map[string]any{"feature_id": "storage-gb", "credits_per_unit": "1"}}
	r, _ := d.call("POST", "/v1/plans", bad)
	d.say("mapping storage-gb (usage reported as totals) answers %d: %q (field %s)", r.status, r.str("error", "message"), r.str("error", "field"))
	d.expect(r.status == http.StatusBadRequest && strings.Contains(r.str("error", "message"), "Only event-based meters are currently supported for credit consumption mapping"),
		"the mapping is refused with the clear message")

	d.step(3, "Customers > "+customer+" > Create subscription")
	d.must("POST", "/v1/customers", map[string]any{"id": customer, "name": "Acme Inc (" + run + ")", "billing_provider": "Customers EMEA",
		"address": map[string]any{"line1": "123 Main St", "city": "NY", "country": "US"}, "payment_method": "**** 4242 Expires 12/2034"}, created)
	subReq := map[string]any{"customer_id": customer, "product": "ai-agents", "plan_id": "ai-agents-prepaid", "currency": "USD", "credit_value": "0.04",
		"included_credits": map[string]any{"enabled": true, "grant_type": "promotional", "amount": "100", "expiration": map[string]any{"rule": "never"}},
		"consumption":      []any{map[string]any{"feature_id": "ai-agent-email", "credits_per_unit": "1"}},
		"schedule":         map[string]any{"start": "now"},
		"billing": map[string]any{"provider": "Customers EMEA", "address": map[string]any{"line1": "123 Main St", "city": "NY", "country": "US"},
			"payment_method": "**** 4242 Expires 12/2034"}}
	pv := d.must("POST", "/v1/subscriptions/preview", subReq, []int{http.StatusOK})
	d.say("preview: 1 AIT = %s %s (%s), included %s AIT %s, expires %s, charged now %s %s",
		pv.str("credit_value"), pv.str("currency"), pv.str("credit_value_source"), pv.str("included_credits", "amount"),
		pv.str("included_credits", "grant_type"), orNever(pv.str("included_credits", "expires_at")), pv.str("charge_now", "amount"), pv.str("charge_now", "currency"))
	d.expect(pv.str("credit_value") == "0.04" && pv.str("included_credits", "amount") == "100", "the preview shows 0.04 USD per AIT and 100 AIT included")
	s := d.must("POST", "/v1/subscriptions", subReq, created, "Idempotency-Key", "demo-"+run)
	sub := s.str("id")
	d.say("subscription %s created, starting %s; billing: %s, %s, %s", sub, s.str("start_at"), s.str("billing", "provider"),
		s.str("billing", "address", "line1"), s.str("billing", "payment_method"))
	base := "/v1/subscriptions/" + sub
	b := d.must("GET", base+"/balance", nil, []int{http.StatusOK})
	d.expect(b.str("total") == "100", "the balance starts at the 100 included AIT (is %s)", b.str("total"))

	d.step(4, fmt.Sprintf("Streaming %d AI-agent email events through Kafka", emails))
	d.stream(cfg, customer, run, emails, base)
	b = d.must("GET", base+"/balance", nil, []int{http.StatusOK})
	want := decimal.NewFromInt(int64(100 - emails))
	d.expect(dec(b.str("total")).Equal(want), "the balance is %s AIT after %d emails (is %s)", want, emails, b.str("total"))
	low := 100-emails < 20
	d.expect(b.str("low") == fmt.Sprint(low), "low-balance state %v below the plan's threshold of 20 AIT", low)
	d.showMetrics(sub)

	d.step(5, "Credit top-up (customer self-service) and credit adjustment (admin)")
	tok := d.must("POST", "/v1/customers/"+customer+"/tokens", nil, []int{http.StatusCreated})
	admin := d.token
	d.token = tok.str("token")
	r, _ = d.call("POST", base+"/topups", map[string]any{"amount": "100"}, "Idempotency-Key", "small-"+run)
	d.say("customer tops up 100 AIT: refused (%d %s): %s", r.status, r.str("error", "code"), r.str("error", "message"))
	d.expect(r.status == http.StatusUnprocessableEntity && r.str("error", "code") == "below_minimum", "a top-up below the 250 AIT minimum is refused")
	t := d.must("POST", base+"/topups", map[string]any{"amount": "500"}, created, "Idempotency-Key", "topup-"+run)
	d.say("customer tops up 500 AIT: charged %s %s, balance %s AIT", dec(t.str("charge")).StringFixed(2), t.str("currency"), t.str("balance"))
	d.expect(dec(t.str("charge")).Equal(decimal.RequireFromString("20.00")) && t.str("currency") == "USD", "the charge is 500 × 0.04 = 20.00 USD")
	d.token = admin
	a := d.must("POST", base+"/adjustments", map[string]any{"amount": "-10", "reason": "Refund of test emails sent during onboarding", "actor": "admin@creditmeter.example"},
		created, "Idempotency-Key", "adjust-"+run)
	d.say("admin deducts 10 AIT (reason recorded): balance %s AIT", a.str("balance"))
	final := want.Add(decimal.NewFromInt(490))
	d.expect(dec(a.str("balance")).Equal(final), "the balance is %s AIT", final)

	d.step(6, "Ledger, archived usage and the invoice")
	d.report(base, emails, final)

	d.step(7, "Upgrade: change the plan, carry the remaining credits over")
	d.upgrade(cfg, sub, final)
}

const demoProPlan = `{"id":"ai-agents-pro","product":"ai-agents","name":"AI Agents Pro","type":"paid","billing_model":"prepaid",
  "prepaid":{"credit_currency":"AIT","top_up_model":{"type":"flat_rate"},
    "currency_values":[{"currency":"USD","value":"0.90"}],
    "min_purchase":"250","max_purchase":"20000",
    "consumption":[{"feature_id":"ai-agent-email","credits_per_unit":"0.5"}],
    "low_balance":{"credits":"20"},"overage_policy":"unfunded","on_end":{"remaining_credits":"carry_over"}}}`

// upgrade changes sub's plan now and shows its remaining credits on the
// successor. They move when the old subscription's books close (end +
// grace window, by the expiry sweep); the demo settles at once, as the
// sweep would then, instead of waiting.
func (d *demo) upgrade(cfg config.Config, sub string, remaining decimal.Decimal) {
	d.must("POST", "/v1/plans", obj(demoProPlan), created)
	d.say("plan \"AI Agents Pro\": 1 email = 0.5 AIT, remaining credits carried over on a plan change")
	ch := d.must("POST", "/v1/subscriptions/"+sub+"/change-plan", map[string]any{"plan_id": "ai-agents-pro"}, created, "Idempotency-Key", "upgrade-"+sub)
	next := ch.str("subscription", "id")
	d.say("subscription %s: %s at %s; %s on ai-agents-pro: %s from %s", sub, ch.str("previous", "status"), ch.str("previous", "end_at"),
		next, ch.str("subscription", "status"), ch.str("subscription", "start_at"))
	d.expect(ch.str("previous", "status") == "ended" && ch.str("subscription", "status") == "active" && ch.str("subscription", "replaces") == sub,
		"the old subscription ended and its successor is active")
	st, err := app.Connect(d.ctx, cfg, config.RedisTuning{})
	if err != nil {
		d.expect(false, "connecting to settle the plan change: %v", err)
		return
	}
	defer st.Close()
	prev, err := st.Catalog.Subscription(d.ctx, sub)
	if err != nil {
		d.expect(false, "reading %s: %v", sub, err)
		return
	}
	closed := prev.EndAt.Add(cfg.Engine.GraceWindow)
	e := &accounts.Ending{Accounts: st.Accounts, Catalog: st.Catalog, Grace: cfg.Engine.GraceWindow, Now: func() time.Time { return closed }}
	if _, err := e.Settle(d.ctx, prev); err != nil {
		d.expect(false, "settling %s: %v", sub, err)
		return
	}
	d.say("at end + grace window (%s) the old subscription's books close and its credits move:", closed.Format(time.RFC3339))
	ob := d.must("GET", "/v1/subscriptions/"+sub+"/balance", nil, []int{http.StatusOK})
	nb := d.must("GET", "/v1/subscriptions/"+next+"/balance", nil, []int{http.StatusOK})
	d.say("balance of %s: %s AIT; of %s: %s AIT", sub, ob.str("total"), next, nb.str("total"))
	d.expect(dec(ob.str("total")).IsZero() && dec(nb.str("total")).Equal(remaining), "the %s remaining AIT are carried over", remaining)
}

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

func dec(s string) decimal.Decimal {
	v, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.NewFromInt(-1 << 62)
	}
	return v
}

// stream produces the emails to Kafka in ten rounds and shows the balance
// after each round, as the engine applies them.
func (d *demo) stream(cfg config.Config, customer, run string, emails int, base string) {
	kconn, _ := cfg.Kafka.Conn() // validated at start
	w := ingest.NewWriters(cfg.Kafka.Brokers, cfg.Kafka.Topic, cfg.Kafka.DLQTopic, ingest.WithConn(kconn))
	defer w.Close()
	bar := progressbar.NewOptions(emails, progressbar.OptionSetWriter(d.out), progressbar.OptionSetDescription("   emails sent"),
		progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionSetRenderBlankState(true))
	sent := 0
	for sent < emails {
		n := min(emails-sent, max(emails/10, 1))
		msgs := make([]kafka.Message, n)
		for i := range msgs {
			ev := rating.Event{ID: fmt.Sprintf("demo-%s-%d", run, sent+i), CustomerID: customer, Name: "email.sent", Timestamp: time.Now().UTC(),
				Dims: []rating.Dim{{Key: "agent", Str: "outreach-bot"}}}
			msgs[i] = kafka.Message{Key: []byte(customer), Value: ingest.AppendJSON(nil, &ev)}
		}
		if err := w.PublishRaw(d.ctx, msgs...); err != nil {
			panic(demoAbort{err})
		}
		sent += n
		_ = bar.Add(n)
		want := decimal.NewFromInt(int64(100 - sent))
		b := d.waitBalance(base, want)
		low := ""
		if b.str("low") == "true" {
			low = "  LOW BALANCE"
		}
		bar.Describe(fmt.Sprintf("   balance %3s AIT%s", b.str("total"), low))
		time.Sleep(300 * time.Millisecond) // so a person sees it drain
	}
	fmt.Fprintln(d.out)
}

// waitBalance polls the balance until it is want (the engine is within a
// second of the events), or reports what it is after 30s.
func (d *demo) waitBalance(base string, want decimal.Decimal) reply {
	deadline := time.Now().Add(30 * time.Second)
	for {
		b := d.must("GET", base+"/balance", nil, []int{http.StatusOK})
		if dec(b.str("total")).Equal(want) || time.Now().After(deadline) {
			return b
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// showMetrics prints the low-balance series of /metrics.
func (d *demo) showMetrics(sub string) {
	// The balance moves when a batch is applied; the batch's counters when
	// it is archived and committed, a moment later.
	const crossed = `creditmeter_low_balance_crossings_total{direction="down"}`
	var raw []byte
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		raw, err = d.get(d.metrics)
		if err == nil && strings.Contains(string(raw), crossed) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		d.expect(false, "/metrics answers (%v)", err)
		return
	}
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "creditmeter_low_balance_crossings_total") || (strings.HasPrefix(l, "creditmeter_balance") && strings.Contains(l, sub)) ||
			strings.HasPrefix(l, "creditmeter_balances_low") {
			lines = append(lines, l)
		}
	}
	d.say("alert state in /metrics (Prometheus' CreditBalanceLow fires on these):")
	for _, l := range lines {
		d.say("  %s", l)
	}
	d.expect(strings.Contains(string(raw), crossed), "the downward crossing is counted in /metrics")
}

func (d *demo) report(base string, emails int, final decimal.Decimal) {
	l := d.must("GET", base+"/ledger", nil, []int{http.StatusOK})
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   seq\tkind\tamount AIT\tbalance AIT\tevents\tdetail\t")
	sum := decimal.Zero
	entries, _ := l.body["entries"].([]any)
	for _, x := range entries {
		e := x.(map[string]any)
		amt := dec(fmt.Sprint(e["amount"]))
		sum = sum.Add(amt)
		detail := ""
		if c, ok := e["charge"]; ok {
			detail = fmt.Sprintf("charge %v %v", c, e["currency"])
		}
		if rs, ok := e["reason"]; ok && rs != "" {
			detail = fmt.Sprint(rs)
			if by, ok := e["actor"]; ok {
				detail += fmt.Sprintf(" (by %v)", by)
			}
		}
		fmt.Fprintf(tw, "   %v\t%v\t%v\t%v\t%v\t%s\t\n", e["seq"], e["kind"], e["amount"], e["balance_after"], orZero(e["events"]), detail)
	}
	tw.Flush()
	d.expect(sum.Equal(final), "the ledger sums to the balance, %s AIT (sums to %s)", final, sum)

	today := time.Now().UTC().Format(time.DateOnly)
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	var u reply
	deadline := time.Now().Add(30 * time.Second)
	for {
		u = d.must("GET", base+"/usage?group_by=feature&from="+today+"&to="+tomorrow, nil, []int{http.StatusOK})
		rows, _ := u.body["rows"].([]any)
		if len(rows) == 1 && dec(fmt.Sprint(rows[0].(map[string]any)["credits"])).Equal(decimal.NewFromInt(int64(emails))) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	rows, _ := u.body["rows"].([]any)
	for _, x := range rows {
		row := x.(map[string]any)
		d.say("usage archived in ClickHouse: %v: %v events, %v %v, money value %v %v", row["feature"], row["events"], row["credits"], row["credit_currency"],
			row["money_value"], row["money_currency"])
	}
	usageMoney := decimal.NewFromInt(int64(emails)).Mul(decimal.RequireFromString("0.04"))
	d.expect(len(rows) == 1 && dec(fmt.Sprint(rows[0].(map[string]any)["credits"])).Equal(decimal.NewFromInt(int64(emails))) &&
		dec(fmt.Sprint(rows[0].(map[string]any)["money_value"])).Equal(usageMoney),
		"the archive has %d AIT of ai-agent-email usage worth %s USD", emails, usageMoney)

	period := time.Now().UTC().Format("2006-01")
	inv := d.must("GET", base+"/invoices?period="+period, nil, []int{http.StatusOK})
	d.say("invoice %s for %s (%s):", period, inv.str("customer_id"), inv.str("currency"))
	lines, _ := inv.body["lines"].([]any)
	for _, x := range lines {
		ln := x.(map[string]any)
		bill := ""
		if ln["billable"] == true {
			bill = "billed"
		}
		d.say("  %-16v %-46v %10v AIT %10v USD  %s", ln["kind"], ln["description"], ln["credits"], ln["money"], bill)
	}
	d.say("  total due %s USD; usage %s AIT (%s USD), promotional used %s AIT; closing balance %s AIT",
		inv.str("total_due"), inv.str("usage_credits"), inv.str("usage_money"), inv.str("promotional_credits"), inv.str("closing_balance"))
	d.expect(dec(inv.str("total_due")).Equal(decimal.RequireFromString("20")), "the invoice bills the 20.00 USD top-up")
	d.expect(dec(inv.str("usage_credits")).Equal(decimal.NewFromInt(int64(emails))) && dec(inv.str("usage_money")).Equal(usageMoney),
		"the invoice's usage agrees with the archive: %d AIT, %s USD", emails, usageMoney)
	d.expect(dec(inv.str("promotional_credits")).Equal(decimal.NewFromInt(int64(emails))), "the usage was drawn from the promotional grant")
	d.expect(dec(inv.str("closing_balance")).Equal(final), "the invoice's closing balance agrees with the ledger and the balance: %s AIT", final)
}

func orZero(v any) any {
	if v == nil {
		return ""
	}
	return v
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
