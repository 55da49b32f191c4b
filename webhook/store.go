package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store errors.
var (
	ErrNotFound = errors.New("webhook: not found")
	ErrInvalid  = errors.New("webhook: invalid")
)

// FieldError is an invalid endpoint field.
type FieldError struct{ Field, Message string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Limits.
const (
	MaxEndpoints      = 100
	maxLogPerEndpoint = 1000 // deliveries kept in an endpoint's log
	maxAttemptsKept   = 50
)

// Endpoint is a registered receiver. Its secret is returned once, by Create.
type Endpoint struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	Secret      string    `json:"secret,omitempty"`
}

// Delivery is one event's delivery to one endpoint.
type Delivery struct {
	ID        string     `json:"id"`
	Endpoint  string     `json:"endpoint_id"`
	EventID   string     `json:"event_id"`
	EventType string     `json:"event_type"`
	Status    string     `json:"status"` // pending, delivered, failed
	Attempts  int        `json:"attempts"`
	CreatedAt time.Time  `json:"created_at"`
	NextAt    *time.Time `json:"next_attempt_at,omitempty"`
	// LastStatusCode is the HTTP status of the last attempt (0: no answer).
	LastStatusCode int        `json:"last_status_code"`
	LastError      string     `json:"last_error,omitempty"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
	History        []Attempt  `json:"attempt_log"`
}

// Attempt is one try of a delivery.
type Attempt struct {
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code"`
	Error      string    `json:"error,omitempty"`
	DurationMs int64     `json:"duration_ms"`
}

// Delivery statuses.
const (
	Pending   = "pending"
	Delivered = "delivered"
	Failed    = "failed"
)

// Options configure a Store.
type Options struct {
	// Retention is how long events and deliveries are kept (default 7 days);
	// it must exceed the retry schedule.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store keeps endpoints, the outbox and the delivery log in Redis. It
// implements Emitter.
type Store struct {
	rc  redis.UniversalClient
	p   string // prefix + "{wh}:"
	ret time.Duration
	now func() time.Time
}

// NewStore returns the webhook store under prefix (no braces).
func NewStore(rc redis.UniversalClient, prefix string, o Options) (*Store, error) {
	if rc == nil || strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("%w: nil client or prefix %q with braces", ErrInvalid, prefix)
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{rc: rc, p: prefix + "{wh}:", ret: o.Retention, now: o.Now}, nil
}

func (s *Store) kEndpoints() string         { return s.p + "eps" }
func (s *Store) kEndpoint(id string) string { return s.p + "ep:" + id }
func (s *Store) kEvent(id string) string    { return s.p + "ev:" + id }
func (s *Store) kDue() string               { return s.p + "due" }
func (s *Store) kDelivery(id string) string { return s.p + "d:" + id }
func (s *Store) kAttempts(id string) string { return s.p + "dl:" + id }
func (s *Store) kLog(ep string) string      { return s.p + "log:" + ep }
func (s *Store) kLife() string              { return s.p + "life" }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validEndpoint checks a new endpoint's fields.
func validEndpoint(e *Endpoint) error {
	u, err := url.Parse(e.URL)
	switch {
	case e.URL == "":
		return &FieldError{"url", "url is required"}
	case len(e.URL) > 2000:
		return &FieldError{"url", "url is longer than 2000 bytes"}
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return &FieldError{"url", "url must be an absolute http or https URL"}
	case u.User != nil:
		return &FieldError{"url", "url must not carry credentials; verify the signature instead"}
	case len(e.Events) == 0:
		return &FieldError{"events", "subscribe to at least one event type: " + strings.Join(Types, ", ")}
	case len(e.Description) > 500:
		return &FieldError{"description", "description is longer than 500 bytes"}
	}
	seen := map[string]bool{}
	for _, t := range e.Events {
		if !KnownType(t) {
			return &FieldError{"events", fmt.Sprintf("unknown event type %q; known: %s", t, strings.Join(Types, ", "))}
		}
		if seen[t] {
			return &FieldError{"events", fmt.Sprintf("event type %q listed twice", t)}
		}
		seen[t] = true
	}
	return nil
}

// Create registers an endpoint and returns it with its new secret, the only
// time the secret is shown.
func (s *Store) Create(ctx context.Context, e Endpoint) (Endpoint, error) {
	if err := validEndpoint(&e); err != nil {
		return Endpoint{}, err
	}
	n, err := s.rc.SCard(ctx, s.kEndpoints()).Result()
	if err != nil {
		return Endpoint{}, err
	}
	if n >= MaxEndpoints {
		return Endpoint{}, &FieldError{"url", fmt.Sprintf("at most %d endpoints; delete one first", MaxEndpoints)}
	}
	e.ID = "we_" + randomHex(8)
	e.Secret = "whsec_" + randomHex(24)
	e.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	ev := append([]string(nil), e.Events...)
	sort.Strings(ev)
	e.Events = ev
	pipe := s.rc.TxPipeline()
	pipe.HSet(ctx, s.kEndpoint(e.ID), "id", e.ID, "url", e.URL, "events", strings.Join(ev, ","),
		"description", e.Description, "created", e.CreatedAt.UnixMilli(), "secret", e.Secret)
	pipe.SAdd(ctx, s.kEndpoints(), e.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

func endpointOf(m map[string]string) Endpoint {
	ms, _ := strconv.ParseInt(m["created"], 10, 64)
	e := Endpoint{ID: m["id"], URL: m["url"], Description: m["description"], CreatedAt: time.UnixMilli(ms).UTC(), Secret: m["secret"]}
	if m["events"] != "" {
		e.Events = strings.Split(m["events"], ",")
	}
	return e
}

// endpoint reads an endpoint with its secret.
func (s *Store) endpoint(ctx context.Context, id string) (Endpoint, error) {
	m, err := s.rc.HGetAll(ctx, s.kEndpoint(id)).Result()
	if err != nil {
		return Endpoint{}, err
	}
	if m["id"] == "" {
		return Endpoint{}, fmt.Errorf("%w: webhook endpoint %q", ErrNotFound, id)
	}
	return endpointOf(m), nil
}

// Get returns an endpoint, without its secret.
func (s *Store) Get(ctx context.Context, id string) (Endpoint, error) {
	e, err := s.endpoint(ctx, id)
	e.Secret = ""
	return e, err
}

// all reads every endpoint, with secrets, sorted by id.
func (s *Store) all(ctx context.Context) ([]Endpoint, error) {
	ids, err := s.rc.SMembers(ctx, s.kEndpoints()).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	sort.Strings(ids)
	pipe := s.rc.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.kEndpoint(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([]Endpoint, 0, len(ids))
	for _, c := range cmds {
		if m := c.Val(); m["id"] != "" {
			out = append(out, endpointOf(m))
		}
	}
	return out, nil
}

// List returns the endpoints, without secrets.
func (s *Store) List(ctx context.Context) ([]Endpoint, error) {
	es, err := s.all(ctx)
	for i := range es {
		es[i].Secret = ""
	}
	if es == nil {
		es = []Endpoint{}
	}
	return es, err
}

// Delete removes an endpoint; its pending deliveries fail at their next
// attempt, and its delivery log expires with the deliveries.
func (s *Store) Delete(ctx context.Context, id string) error {
	pipe := s.rc.TxPipeline()
	del := pipe.Del(ctx, s.kEndpoint(id))
	pipe.SRem(ctx, s.kEndpoints(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if del.Val() == 0 {
		return fmt.Errorf("%w: webhook endpoint %q", ErrNotFound, id)
	}
	return nil
}

// DeliveryID is the stable id of event's delivery to endpoint.
func DeliveryID(eventID, endpoint string) string {
	return "whd_" + EventID("delivery", eventID, endpoint)[4:]
}

// emitScript stores the event once (SET NX) and, the first time only,
// queues one delivery per subscribed endpoint.
// KEYS: event, due, then per endpoint its delivery and log.
// ARGV: body, now ms, retention ms, event id, type, then per endpoint delivery id, endpoint id.
var emitScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then return 0 end
for i = 1, (#KEYS - 2) / 2 do
  local dk, lk, did = KEYS[2*i+1], KEYS[2*i+2], ARGV[4+2*i]
  redis.call('HSET', dk, 'id', did, 'endpoint', ARGV[5+2*i], 'event', ARGV[4], 'type', ARGV[5],
    'status', 'pending', 'attempts', 0, 'created', ARGV[2], 'next', ARGV[2])
  redis.call('PEXPIRE', dk, ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[2], did)
  redis.call('ZADD', lk, ARGV[2], did)
  if redis.call('ZCARD', lk) > ` + strconv.Itoa(maxLogPerEndpoint) + ` then
    redis.call('ZREMRANGEBYRANK', lk, 0, -` + strconv.Itoa(maxLogPerEndpoint+1) + `)
  end
end
return 1`)

// Emit implements Emitter: it stores e once per e.ID and queues its
// deliveries to the endpoints subscribed to e.Type then. An event no
// endpoint subscribes to is not stored.
func (s *Store) Emit(ctx context.Context, e Event) error {
	if e.ID == "" || !KnownType(e.Type) {
		return fmt.Errorf("%w: event id %q type %q", ErrInvalid, e.ID, e.Type)
	}
	eps, err := s.all(ctx)
	if err != nil {
		return err
	}
	keys := []string{s.kEvent(e.ID), s.kDue()}
	now := s.now()
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Millisecond)
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	args := []any{body, now.UnixMilli(), s.ret.Milliseconds(), e.ID, e.Type}
	for _, ep := range eps {
		for _, t := range ep.Events {
			if t == e.Type {
				did := DeliveryID(e.ID, ep.ID)
				keys = append(keys, s.kDelivery(did), s.kLog(ep.ID))
				args = append(args, did, ep.ID)
				break
			}
		}
	}
	if len(keys) == 2 {
		return nil
	}
	return emitScript.Run(ctx, s.rc, keys, args...).Err()
}

func msTime(v string) *time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func deliveryOf(m map[string]string, attempts []string) Delivery {
	d := Delivery{ID: m["id"], Endpoint: m["endpoint"], EventID: m["event"], EventType: m["type"], Status: m["status"],
		LastError: m["error"], History: []Attempt{}}
	d.Attempts, _ = strconv.Atoi(m["attempts"])
	d.LastStatusCode, _ = strconv.Atoi(m["code"])
	if t := msTime(m["created"]); t != nil {
		d.CreatedAt = *t
	}
	if d.Status == Pending {
		d.NextAt = msTime(m["next"])
	}
	d.DeliveredAt = msTime(m["delivered"])
	for _, a := range attempts {
		var at Attempt
		if json.Unmarshal([]byte(a), &at) == nil {
			d.History = append(d.History, at)
		}
	}
	return d
}

// Deliveries lists an endpoint's deliveries, newest first, at most limit
// (default 50, at most 1000). ErrNotFound when the endpoint is unknown.
func (s *Store) Deliveries(ctx context.Context, endpoint string, limit int) ([]Delivery, error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, maxLogPerEndpoint)
	if _, err := s.Get(ctx, endpoint); err != nil {
		return nil, err
	}
	ids, err := s.rc.ZRevRange(ctx, s.kLog(endpoint), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, err
	}
	pipe := s.rc.Pipeline()
	hs := make([]*redis.MapStringStringCmd, len(ids))
	ls := make([]*redis.StringSliceCmd, len(ids))
	for i, id := range ids {
		hs[i] = pipe.HGetAll(ctx, s.kDelivery(id))
		ls[i] = pipe.LRange(ctx, s.kAttempts(id), 0, -1)
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
	}
	out := []Delivery{}
	for i := range ids {
		if m := hs[i].Val(); m["id"] != "" { // expired ones drop out
			out = append(out, deliveryOf(m, ls[i].Val()))
		}
	}
	return out, nil
}
