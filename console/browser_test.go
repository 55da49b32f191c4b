package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/accounts"
	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/console"
	"github.com/creditmeter/creditmeter/engine"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/app/apptest"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/webhook"
)

const admin = "admin-token-0123456789"

// stack is the API over the real catalog (Redis), balance ledger (Redis) and
// archive (ClickHouse), and the engine consuming usage events from a real
// Kafka-protocol broker, wired as creditmeter serve wires them, with the
// console mounted beside the API at /console/.
type stack struct {
	url    string
	events *ingest.Writers    // the usage topic of the stack's broker
	acc    *accounts.Accounts // for jobs a test runs itself (auto-recharge)

	mu       sync.Mutex
	unrouted []string // requests that matched no API route
}

// unroutedCalls are the API requests that matched no route.
func (s *stack) unroutedCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unrouted...)
}

const (
	usageTopic = "usage-events"
	dlqTopic   = "usage-events-dlq"
)

func newStack(t *testing.T) *stack {
	t.Helper()
	stores := apptest.Stores(t)
	conn, cat, bs, aw, acc := stores.Conn, stores.Catalog, stores.Balances, stores.Writer, stores.Accounts

	// The engine: usage events from the broker, rated with the catalog as
	// the console changes it, drawn from the balances, archived.
	br := testenv.Broker(t, 1, usageTopic, dlqTopic)
	rater := rating.NewRater(nil)
	src, err := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: []string{br.Addr()}, Topic: usageTopic, Group: "console-test", MaxWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wr := ingest.NewWriters([]string{br.Addr()}, usageTopic, dlqTopic)
	eng, err := engine.New(engine.Config{
		Topic:          usageTopic,
		Refresh:        func(ctx context.Context) error { _, _, err := cat.Sync(ctx, rater); return err },
		CustomerExists: func(ctx context.Context, id string) bool { _, err := cat.Customer(ctx, id); return err == nil },
	}, src, wr, rater, bs, aw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("engine: %v", err)
		}
		src.Close()
		wr.Close()
	})

	// Webhooks: the outbox the API and top-ups emit to, and a dispatcher
	// retrying quickly, as every serve node runs one.
	hooks, err := webhook.NewStore(stores.RC, stores.Prefix, webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acc.Observer = &webhook.Notifier{Emitter: hooks, Notes: stores.Balances, Ledger: stores.Balances}
	disp, err := webhook.NewDispatcher(hooks, webhook.DispatcherOptions{Schedule: []time.Duration{300 * time.Millisecond, 300 * time.Millisecond}, Poll: 100 * time.Millisecond, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dispDone := make(chan struct{})
	go func() { disp.Run(ctx); close(dispDone) }()
	t.Cleanup(func() { cancel(); <-dispDone })

	// The admin token's name is the actor of its adjustments.
	srv := api.NewServer(api.Options{Catalog: cat, Ledger: acc, Balances: acc, Reports: archive.Reports{Conn: conn}, AdminTokens: []string{"alice@example.com:" + admin},
		Webhooks: hooks, DeadLetters: ingest.DeadLetterReader{Conn: ingest.Plain(br.Addr()), Topic: dlqTopic}})
	st := &stack{events: wr, acc: acc}
	// Every API call the console makes must match a route of the API's
	// table; the misses are recorded.
	known := http.NewServeMux()
	for _, rt := range srv.Routes() {
		known.Handle(rt.Method+" "+rt.Path, http.NotFoundHandler())
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", console.Handler())
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := known.Handler(r); pattern == "" {
			st.mu.Lock()
			st.unrouted = append(st.unrouted, r.Method+" "+r.URL.Path)
			st.mu.Unlock()
		}
		srv.ServeHTTP(w, r)
	}))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	st.url = hs.URL
	return st
}

// call is an API request the test makes outside the browser (set-up the seed
// takes for granted, and checks of what the console did).
func (s *stack) call(t *testing.T, method, path, body string, want int) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, b)
	}
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	return v
}

// browser drives one headless Chromium tab.
type browser struct {
	t    *testing.T
	ctx  context.Context
	shot string // screenshot directory
	n    int
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	bin := testenv.Chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Env("TZ=UTC"), // datetime-local inputs are read in UTC
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	dir := filepath.Join(os.TempDir(), "creditmeter-console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	return &browser{t: t, ctx: ctx, shot: dir}
}

func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// fail saves a screenshot and the page's text, then fails the test.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	p := b.screenshot("FAILED")
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	b.t.Fatalf(format+"\n--- page (screenshot %s) ---\n%s", append(args, p, body)...)
}

func (b *browser) screenshot(name string) string {
	b.t.Helper()
	b.n++
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.shot, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
	return p
}

func (b *browser) open(url string) {
	b.t.Helper()
	b.run("open "+url, chromedp.Navigate(url))
}

// text is the text of the first element matching sel ("" when there is none).
func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel))
}

func (b *browser) exists(sel string) bool {
	b.t.Helper()
	return eval[bool](b, fmt.Sprintf(`!!document.querySelector(%q)`, sel))
}

// waitText waits until the element sel shows want.
func (b *browser) waitText(sel, want string) string {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = b.text(sel); strings.Contains(got, want) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fail("%s shows %q, want it to contain %q", sel, got, want)
	return ""
}

// waitNonEmpty waits until the element sel shows some text.
func (b *browser) waitNonEmpty(sel string) string {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if got := strings.TrimSpace(b.text(sel)); got != "" {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fail("%s stays empty", sel)
	return ""
}

// fill sets an input's or select's value the way typing or picking does: the
// input and change events fire.
func (b *browser) fill(id, value string) {
	b.t.Helper()
	ok := eval[bool](b, fmt.Sprintf(`(function(){
		const el = document.getElementById(%q); if (!el) return false;
		if (el.tagName === 'SELECT' && ![...el.options].some(o => o.value === %q)) return false;
		el.value = %q;
		el.dispatchEvent(new Event('input', {bubbles: true}));
		el.dispatchEvent(new Event('change', {bubbles: true}));
		return true })()`, id, value, value))
	if !ok {
		b.fail("no input #%s taking %q", id, value)
	}
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.run("click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// noProblem fails the test when the page reported a script error or a
// content-security-policy block.
func (b *browser) noProblem() {
	b.t.Helper()
	if b.exists("#console-problem") {
		b.fail("the console reported a problem: %s", b.text("#console-problem"))
	}
}

// value is the current value of the control id.
func (b *browser) value(id string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.getElementById(%q)||{}).value||""`, id))
}

// labelFor is the text of the label tied to the control id.
func (b *browser) labelFor(id string) string {
	return b.text(`label[for="` + id + `"]`)
}

// TestConsoleHelpers checks the page's decimal and error-path helpers in the
// browser, where they run.
func TestConsoleHelpers(t *testing.T) {
	b := newBrowser(t)
	hs := httptest.NewServer(console.Handler())
	t.Cleanup(hs.Close)
	b.open(hs.URL + "/console/")
	b.waitText("h1", "Sign in")
	for expr, want := range map[string]string{
		`fromBig(toBig("0.1") + toBig("0.2"))`:                   "0.3",
		`fromBig(toBig("9007199254740993") + toBig("0.000001"))`: "9007199254740993.000001",
		`fromBig(toBig("-20") + toBig("97"))`:                    "77",
		`String(toBig("1.0000000001"))`:                          "null", // beyond the 9 places kept
		`String(toBig("lots"))`:                                  "null",
		`fmt("8000")`:                                            "8,000",
		`fmt("-1234567.891")`:                                    "-1,234,567.891",
		`money("20", "USD")`:                                     "20.00 USD",
		`money("0.125", "EUR")`:                                  "0.125 EUR",
		`money("1500", "JPY")`:                                   "1,500 JPY",
		`parentPath("prepaid.consumption[1].feature_id")`:        "prepaid.consumption[1]",
		`parentPath("prepaid.consumption[1]")`:                   "prepaid.consumption",
		`parentPath("prepaid")`:                                  "",
		`isoOrRaw("tomorrow")`:                                   "tomorrow",
	} {
		if got := imported[string](b, expr); got != want {
			t.Errorf("%s = %q, want %q", expr, got, want)
		}
	}
	// No helper leaks onto window: the page's modules keep them.
	if eval[bool](b, `'creditmeterConsole' in window || typeof toBig !== 'undefined'`) {
		t.Error("the console's helpers are on window")
	}
}

// imported evaluates expr with the helpers imported from the console's
// modules, as a module of the page would import them.
func imported[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	js := `(async () => {
		const mod = (name) => import(new URL(name, document.baseURI).href);
		const {toBig, fromBig, fmt, money} = await mod('decimal.js');
		const {parentPath} = await mod('dom.js');
		const {isoOrRaw} = await mod('format.js');
		return String(` + expr + `);
	})()`
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

func TestConsoleSeedStory(t *testing.T) {
	s := newStack(t)
	b := newBrowser(t)

	// Sign in as an admin.
	b.open(s.url + "/console/")
	b.waitText("h1", "Sign in")
	if l := b.labelFor("login-token"); l != "API token" {
		t.Errorf("token label %q", l)
	}
	b.fill("login-token", "wrong-token-0123456789")
	b.click(`#login-form button[type=submit]`)
	b.waitText("#login-token-error", "unknown token")
	b.fill("login-token", admin)
	b.click(`#login-form button[type=submit]`)
	b.waitText("h1", "Plans")

	// What the seed takes for granted, made in the console too: the credit
	// currency, the metered features (one whose meter is not event-based)
	// and the customer.
	b.click(`#nav a[href="#/currencies"]`)
	b.waitText("h1", "Credit currencies")
	b.fill("cur-code", "AIT")
	b.fill("cur-name", "AI Tokens")
	b.fill("cur-symbol", "AIT")
	b.click(`#currency-form button[type=submit]`)
	b.waitText("#currencies", "AI Tokens")
	b.click(`#nav a[href="#/features"]`)
	b.waitText("h1", "Features")
	b.fill("feat-id", "ai-agent-email")
	b.fill("feat-name", "AI Agent Email")
	b.fill("feat-kind", "event_based")
	b.fill("feat-event", "email.sent")
	b.fill("feat-agg", "SUM")
	b.click(`#feature-form button[type=submit]`)
	b.waitText("#feat-dim-error", "dimension")
	b.fill("feat-agg", "COUNT")
	b.click(`#feature-form button[type=submit]`)
	b.waitText("#features", `event "email.sent" · COUNT`)
	b.fill("feat-id", "storage")
	b.fill("feat-name", "Storage")
	b.fill("feat-kind", "pre_aggregated")
	b.click(`#feature-form button[type=submit]`)
	b.waitText("#features", "pre-aggregated (cannot map to credits)")
	b.click(`#nav a[href="#/customers"]`)
	b.waitText("h1", "Customers")
	b.fill("cust-id", "acme")
	b.fill("cust-name", "Acme Inc")
	b.fill("cust-provider", "Customers EMEA")
	b.fill("cust-pm", "card **** 4242 exp 12/2034")
	b.fill("cust-addr-line1", "123 Main St")
	b.fill("cust-addr-city", "NY")
	b.fill("cust-addr-country", "USA")
	b.click(`#customer-form button[type=submit]`)
	b.waitNonEmpty("#cust-addr-country-error")
	b.fill("cust-addr-country", "US")
	b.click(`#customer-form button[type=submit]`)
	b.waitText("h1", "Acme Inc")
	// Names are text, never markup.
	s.call(t, "POST", "/v1/customers", `{"id":"evil","name":"<img src=x id=injected onerror=alert(1)>"}`, 201)
	b.click(`#nav a[href="#/plans"]`)
	b.waitText("h1", "Plans")
	b.click(`#nav a[href="#/customers"]`)
	b.waitText("#customers", "<img src=x id=injected onerror=alert(1)>")
	if b.exists("#injected") {
		t.Error("a customer's name was rendered as markup")
	}
	c := s.call(t, "GET", "/v1/customers/acme", "", 200)
	if a, _ := c["address"].(map[string]any); a["line1"] != "123 Main St" || a["country"] != "US" || c["billing_provider"] != "Customers EMEA" {
		t.Errorf("the customer the console created: %v", c)
	}

	// Product Catalog > Plans > + New plan.
	b.click(`#nav a[href="#/plans"]`)
	b.waitText("h1", "Plans")
	b.click("#new-plan")
	b.waitText("h1", "New plan")
	b.fill("plan-id", "ai-prepaid")
	b.fill("plan-product", "ai-agents")
	b.fill("plan-name", "AI Agents Prepaid")
	b.fill("plan-type", "paid")
	b.fill("plan-billing-model", "prepaid")
	b.fill("plan-credit-currency", "AIT")
	b.fill("plan-topup-model", "flat_rate")
	b.fill("plan-cv-0-value", "1.00")
	b.fill("plan-cv-0-currency", "USD")
	b.click("#plan-cv-add")
	b.fill("plan-cv-1-value", "0.95")
	b.fill("plan-cv-1-currency", "EUR")
	b.click("#plan-minmax")
	b.fill("plan-min", "250")
	b.fill("plan-max", "8000")
	b.fill("plan-cons-0-feature", "ai-agent-email")
	b.fill("plan-cons-0-rate", "1")
	b.fill("plan-overage", "unfunded")
	// A second consumption row mapping a pre-aggregated meter is refused,
	// and the message shows next to that row's feature.
	b.click("#plan-cons-add")
	b.fill("plan-cons-1-feature", "storage")
	b.fill("plan-cons-1-rate", "2")
	b.screenshot("new-plan-form")
	b.click("#plan-save")
	b.waitText("#plan-cons-1-feature-error", "Only event-based meters are currently supported for credit consumption mapping")
	if !b.exists(`#plan-cons-1-feature[aria-invalid="true"]`) {
		t.Errorf("the refused feature is not marked invalid")
	}
	if got := b.text("#plan-cons-0-feature-error"); got != "" {
		t.Errorf("the valid row shows an error: %q", got)
	}
	b.screenshot("plan-non-event-meter-refused")
	// Remove that row; a minimum above the maximum is refused next to the minimum.
	b.click(`#plan-consumption tbody tr:nth-child(2) button`)
	if b.exists("#plan-cons-1-feature") {
		t.Fatal("the removed row is still there")
	}
	b.fill("plan-min", "9000")
	b.click("#plan-save")
	b.waitText("#plan-min-error", "must not exceed")
	if got := b.text("#plan-cons-1-feature-error"); got != "" {
		t.Errorf("an old error stayed: %q", got)
	}
	b.screenshot("plan-min-above-max")
	b.fill("plan-min", "250")
	b.click("#plan-save")
	b.waitText("h1", "Plan AI Agents Prepaid")
	if got := b.text("#plan-min-error"); got != "" {
		t.Errorf("error after a successful save: %q", got)
	}
	// Save changes on the stored plan: a low-balance alert below 80 credits.
	b.fill("plan-low-credits", "80")
	b.click("#plan-save")
	b.waitText("#plan-saved", "Saved plan AI Agents Prepaid.")
	p := s.call(t, "GET", "/v1/plans/ai-prepaid", "", 200)
	pp, _ := p["prepaid"].(map[string]any)
	low, _ := pp["low_balance"].(map[string]any)
	if pp["min_purchase"] != "250" || pp["max_purchase"] != "8000" || len(pp["consumption"].([]any)) != 1 || len(pp["currency_values"].([]any)) != 2 || low["credits"] != "80" {
		t.Errorf("the plan the console saved: %v", p)
	}
	b.click(`#nav a[href="#/plans"]`)
	b.waitText("#plans tbody", "AI Agents Prepaid")
	b.waitText("#plans tbody", "250 – 8,000 AIT")
	b.waitText("#plans tbody", "1 AIT = 1.00 USD, 1 AIT = 0.95 EUR")
	b.screenshot("plans")
	b.noProblem()

	// Customers > Acme > Create subscription.
	b.click(`#nav a[href="#/customers"]`)
	b.waitText("#customers", "Acme Inc")
	b.click(`#customers a[href="#/customers/acme"]`)
	b.waitText("h1", "Acme Inc")
	b.click("#create-subscription")
	b.waitText("h1", "Create subscription")
	b.fill("sub-product", "ai-agents")
	b.fill("sub-plan", "ai-prepaid")
	b.fill("sub-currency", "USD")
	b.waitText("#sub-credit-value-text", "1 AI Tokens (AIT) = 1.00 USD")
	b.click("#sub-edit-value")
	b.fill("sub-credit-value", "0.04")
	b.click("#sub-included-enabled")
	b.click("#sub-grant-promotional")
	b.fill("sub-included-amount", "lots")
	b.fill("sub-expiration", "never")
	if got := b.text("#sub-cons-0-feature option:checked"); got != "AI Agent Email" {
		t.Errorf("consumption row 0 shows %q, want the plan's AI Agent Email", got)
	}
	if !b.exists("#sub-start-now:checked") {
		t.Errorf("schedule not immediately by default")
	}
	provider, line1, pm := b.value("sub-provider"), b.value("sub-addr-line1"), b.value("sub-payment")
	if provider != "Customers EMEA" || line1 != "123 Main St" || pm != "card **** 4242 exp 12/2034" {
		t.Errorf("billing section not prefilled from the customer: %q %q %q", provider, line1, pm)
	}
	// An amount that is not a number is refused next to the amount.
	b.click("#sub-preview-btn")
	b.waitText("#sub-included-amount-error", "decimal")
	if !b.exists("#sub-preview[hidden]") {
		t.Error("a preview shows after a refused request")
	}
	b.screenshot("subscription-field-error")
	// A later start and a 30-day expiry show in the preview; then back to
	// the seed's Immediately and Never.
	b.fill("sub-included-amount", "100")
	b.click("#sub-start-at")
	b.fill("sub-start-time", "2030-01-02T03:04")
	b.fill("sub-expiration", "duration")
	b.fill("sub-exp-duration", "P30D")
	b.click("#sub-preview-btn")
	b.waitText("#preview-start", "2030-01-02 03:04:00 UTC")
	b.waitText("#preview-included", "expires 2030-02-01 03:04:00 UTC")
	b.fill("sub-exp-duration", "30 days")
	b.click("#sub-preview-btn")
	b.waitText("#sub-exp-duration-error", "ISO 8601")
	if !b.exists("#sub-preview[hidden]") {
		t.Error("the preview stays after the form changed")
	}
	b.click("#sub-start-now")
	b.fill("sub-expiration", "never")

	// An added consumption row with a pre-aggregated meter: only the
	// overrides are sent, so the API's consumption[0] is the second row on
	// screen, and the message shows there.
	b.fill("sub-included-amount", "100")
	b.click("#sub-cons-add")
	b.fill("sub-cons-1-feature", "storage")
	b.fill("sub-cons-1-rate", "2")
	b.click("#sub-preview-btn")
	b.waitText("#sub-cons-1-feature-error", "Only event-based meters are currently supported for credit consumption mapping")
	if got := b.text("#sub-cons-0-feature-error") + b.text("#sub-included-amount-error"); got != "" {
		t.Errorf("errors elsewhere: %q", got)
	}
	b.screenshot("subscription-non-event-meter-refused")
	b.click(`#sub-consumption tbody tr:nth-child(2) button`)
	b.click("#sub-preview-btn")
	b.waitText("#sub-preview h2", "Subscription preview")
	b.waitText("#preview-credit-value", "1 AIT = 0.04 USD (edited for this subscription)")
	b.waitText("#preview-included", "100 AIT · promo grant · never expires")
	b.waitText("#preview-charge", "0.00 USD")
	b.waitText("#preview-consumption", "AI Agent Email")
	b.waitText("#preview-summary", "Customers EMEA · 123 Main St, NY, US · card **** 4242 exp 12/2034")
	b.screenshot("subscription-preview")
	b.click("#sub-create")
	b.waitText("h1", "Subscription ")

	// The subscription page: balance, grants, ledger.
	b.waitText("#bal-available", "100 AIT")
	b.waitText("#grants-body", "promotional")
	b.waitText("#ledger-body", "Grant")
	b.waitText("#sub-value", "1 AIT = 0.04 USD")
	hash := eval[string](b, `location.hash`)
	subID := strings.TrimPrefix(hash, "#/subscriptions/")
	if subID == "" || subID == hash {
		t.Fatalf("not on a subscription page: %q", hash)
	}

	// The AI agent sends 3 emails; the engine rates them (1 email = 1 AIT)
	// and the page, which polls, shows the balance drop.
	now := time.Now()
	var msgs []kafka.Message
	for i := range 3 {
		ev := rating.Event{ID: fmt.Sprint("email-", i), CustomerID: "acme", Name: "email.sent", Timestamp: now}
		msgs = append(msgs, kafka.Message{Key: []byte("acme"), Value: ingest.AppendJSON(nil, &ev)})
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := s.events.PublishRaw(pctx, msgs...); err != nil {
		t.Fatal(err)
	}
	pcancel()
	b.waitText("#bal-available", "97 AIT")
	b.waitText("#bal-low", "OK")
	b.waitText("#ledger-body", "Usage")
	today := now.UTC().Format("2006-01-02")
	b.waitText("#usage-total", "Last 14 days: 3 AIT used")
	bar := eval[string](b, fmt.Sprintf(`(document.querySelector('#usage-chart rect[data-day=%q]')||{getAttribute(){return ''}}).getAttribute('data-credits')`, today))
	if bar != "3" {
		t.Errorf("today's bar holds %q credits, want 3", bar)
	}

	// Credit adjustment: the reason is required, a deduction beyond the
	// balance needs force, then a deduction of 20.
	if l := b.labelFor("adj-note"); l != "Note" {
		t.Errorf("the adjustment's note is labelled %q", l)
	}
	b.fill("adj-amount", "-20")
	b.fill("adj-note", "ticket 7")
	b.click("#adj-submit")
	b.waitText("#adj-reason-error", "reason")
	b.fill("adj-amount", "-1000")
	b.fill("adj-reason", "Duplicate emails billed twice")
	b.click("#adj-submit")
	b.waitText("#adj-amount-error", "Not enough credits for this deduction")
	if got := b.text("#adj-reason-error"); got != "" {
		t.Errorf("stale reason error %q", got)
	}
	b.screenshot("adjustment-insufficient")
	b.fill("adj-amount", "-20")
	b.click("#adj-submit")
	b.waitText("#adj-result", "Adjusted by -20 AIT · balance 77 AIT")
	b.waitText("#bal-available", "77 AIT")
	b.waitText("#bal-low", "Low balance") // below the plan's 80
	// The actor is the admin token's name; the note and the reason's
	// visibility are the admin's to see.
	b.waitText("#ledger-body", "reason: Duplicate emails billed twice · by alice@example.com · note: ticket 7 · reason hidden from the customer")
	// The spend check a product backend makes.
	b.fill("check-amount", "50")
	b.click("#check-submit")
	b.waitText("#check-result", "Allowed · available 77 AIT · shortfall unfunded.")
	b.fill("check-amount", "80")
	b.click("#check-submit")
	b.waitText("#check-result", "Not allowed · available 77 AIT")
	b.fill("check-amount", "-1")
	b.click("#check-submit")
	b.waitText("#check-amount-error", "negative")
	// By feature and quantity, priced with the subscription's table.
	b.fill("check-feature", "ai-agent-email")
	b.fill("check-quantity", "3")
	b.click("#check-submit")
	b.waitText("#check-result", "3 AIT (0.12 USD) · Allowed · available 77 AIT · shortfall unfunded.")
	b.screenshot("subscription-admin")

	b.noProblem()

	// Issue a customer token, sign in as the customer.
	b.open(s.url + "/console/#/customers/acme")
	b.waitText("h1", "Acme Inc")
	b.waitText("#customer-subscriptions", subID)
	b.click("#issue-token")
	b.waitText("#token-out", "Customer token")
	tok := strings.TrimSpace(b.text("#customer-token"))
	if len(tok) < 16 {
		b.fail("customer token %q", tok)
	}
	b.click(`#who button`)
	b.waitText("h1", "Sign in")
	b.fill("login-token", tok)
	b.click(`#login-form button[type=submit]`)
	b.waitText("#login-customer-error", "customer ID")
	b.fill("login-customer", "acme")
	b.click(`#login-form button[type=submit]`)
	b.waitText("h1", "My subscriptions")
	b.click(`#my-subscriptions a`)
	b.waitText("#bal-available", "77 AIT")
	if b.exists("#adjust-form") {
		t.Error("a customer sees the admin's credit adjustment form")
	}
	b.waitText("#topup-amount-hint", "Limits: 250 – 8,000 AIT. Price: 1 AIT = 0.04 USD.")
	b.waitText("#usage-total", "3 AIT used")

	// Credit top-up: below the minimum is refused next to the amount, 500 is
	// bought at 0.04 USD a credit.
	b.fill("topup-amount", "100")
	b.click("#topup-submit")
	b.waitText("#topup-amount-error", "The minimum top-up is 250 AIT; you asked for 100 AIT.")
	if got := b.text("#topup-result"); got != "" {
		t.Errorf("a refused top-up reports %q", got)
	}
	b.screenshot("topup-below-minimum")
	b.fill("topup-amount", "9000")
	b.click("#topup-submit")
	b.waitText("#topup-amount-error", "The maximum top-up is 8,000 AIT")
	b.fill("topup-amount", "500")
	b.click("#topup-submit")
	b.waitText("#topup-result", "Added 500 AIT · charged 20.00 USD · balance 577 AIT")
	if got := b.text("#topup-amount-error"); got != "" {
		t.Errorf("stale top-up error %q", got)
	}
	b.waitText("#bal-available", "577 AIT")
	b.waitText("#bal-low", "OK")
	b.waitText("#ledger-body", "charged 20.00 USD")
	// The adjustment was not public: its customer sees the generic reason,
	// never the note.
	b.waitText(`#ledger-body tr[data-kind="adjustment"]`, "reason: balance adjustment")
	if got := b.text("#ledger-body"); strings.Contains(got, "Duplicate") || strings.Contains(got, "ticket 7") || strings.Contains(got, "alice") {
		t.Errorf("the customer's ledger shows the admin's reason, note or name: %q", got)
	}
	b.waitText("#grants-body", "purchased")
	// The archive's reports: usage by feature and this month's invoice.
	b.waitText("#usage-features", "AI Agent Email")
	b.waitText("#usage-features", "0.12 USD") // 3 AIT at 0.04
	if got := b.text("#usage-total"); strings.Contains(got, "ledger") {
		t.Errorf("usage summed from the ledger although the API serves the report: %q", got)
	}
	b.waitText("#invoice-lines", "20.00 USD")
	b.click("#invoice-csv")
	b.waitText("#invoice-csv-status", "Saved invoice-"+subID+"-")
	b.screenshot("customer-after-topup")

	// The ledger the API holds is what the page showed.
	led := s.call(t, "GET", "/v1/subscriptions/"+subID+"/ledger", "", 200)
	var kinds []string
	for _, e := range led["entries"].([]any) {
		kinds = append(kinds, e.(map[string]any)["kind"].(string))
	}
	if got := strings.Join(kinds, ","); got != "grant,usage,adjustment,topup" {
		t.Errorf("ledger kinds %s", got)
	}
	b.noProblem()
	if u := s.unroutedCalls(); len(u) > 0 {
		t.Errorf("the console called routes the API does not have: %v", u)
	}
	// The check above can fail: an inline style, which the content security
	// policy blocks, is reported on the page.
	eval[bool](b, `document.body.setAttribute('style', 'color: red'), true`)
	b.waitText("#console-problem", "content security policy")
	t.Logf("screenshots in %s", b.shot)
}

// The purchase limits of a new plan: their fields are really hidden while
// "Min, Max rules" is unticked (a .row's display once overrode [hidden], so
// limits typed there were dropped silently), ticking shows them, and limits
// typed with the keyboard are sent and saved.
func TestConsolePlanPurchaseLimits(t *testing.T) {
	s := newStack(t)
	s.call(t, "POST", "/v1/currencies", `{"code":"AIT","name":"AI Tokens"}`, 201)
	s.call(t, "POST", "/v1/features", `{"id":"ai-agent-email","name":"AI Agent Email","meter":{"kind":"event_based","event_name":"email.sent","aggregation":"COUNT"}}`, 201)
	b := newBrowser(t)
	b.open(s.url + "/console/")
	b.waitText("h1", "Sign in")
	b.fill("login-token", admin)
	b.click(`#login-form button[type=submit]`)
	b.waitText("h1", "Plans")
	b.click("#new-plan")
	b.waitText("h1", "New plan")

	shown := func(id string) bool {
		return eval[bool](b, fmt.Sprintf(`(function(){ const el = document.getElementById(%q);
			return !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden' })()`, id))
	}
	if b.exists("#plan-minmax:checked") {
		t.Fatal("Min, Max rules is ticked on a new plan")
	}
	for _, id := range []string{"plan-minmax-fields", "plan-min", "plan-max"} {
		if shown(id) {
			b.screenshot("limits-shown-unticked")
			t.Errorf("#%s is shown while Min, Max rules is unticked", id)
		}
	}
	b.click("#plan-minmax")
	for _, id := range []string{"plan-min", "plan-max"} {
		if !shown(id) {
			b.fail("#%s is hidden after ticking Min, Max rules", id)
		}
	}
	b.fill("plan-id", "limited")
	b.fill("plan-product", "ai-agents")
	b.fill("plan-name", "Limited")
	b.fill("plan-credit-currency", "AIT")
	b.fill("plan-cv-0-value", "1.00")
	b.fill("plan-cv-0-currency", "USD")
	b.fill("plan-cons-0-feature", "ai-agent-email")
	b.fill("plan-cons-0-rate", "1")
	// Ticked with nothing typed is not saved silently as a plan without limits.
	b.click("#plan-save")
	b.waitText("#plan-min-error", "minimum or a maximum")
	if status := s.status(t, admin, "/v1/plans/limited"); status != 404 {
		t.Errorf("a plan was saved with Min, Max rules ticked and no limits: %d", status)
	}
	// Typed as a person types them.
	b.run("type the limits", chromedp.Click(chromedp.CSS("#plan-min")), chromedp.SendKeys(chromedp.CSS("#plan-min"), "250"),
		chromedp.Click(chromedp.CSS("#plan-max")), chromedp.SendKeys(chromedp.CSS("#plan-max"), "8000"))
	b.click("#plan-save")
	b.waitText("h1", "Plan Limited")
	pp, _ := s.call(t, "GET", "/v1/plans/limited", "", 200)["prepaid"].(map[string]any)
	if pp["min_purchase"] != "250" || pp["max_purchase"] != "8000" {
		t.Errorf("saved limits: min %v, max %v, want 250 and 8000", pp["min_purchase"], pp["max_purchase"])
	}
	// The stored plan opens with the rule ticked and its limits shown.
	if !b.exists("#plan-minmax:checked") || !shown("plan-min") || b.value("plan-min") != "250" || b.value("plan-max") != "8000" {
		t.Errorf("the saved plan's form: ticked %v, min shown %v, values %q/%q", b.exists("#plan-minmax:checked"), shown("plan-min"), b.value("plan-min"), b.value("plan-max"))
	}
	b.noProblem()
}
