// Package catalogstore keeps the rating catalog in Redis: one hash per kind of
// entry (JSON values) under a common {catalog} hash tag, so every write is one
// atomic script or transaction, also on Redis Cluster. Every write increments
// a version key and logs what changed; Follow polls the version and swaps a
// newly compiled table into a running rating.Rater, compiling only the new
// subscriptions when nothing else that rating depends on changed.
//
// Currencies, features and subscriptions are immutable once created (nothing
// can then change under a plan or a compiled table); plans and customers may
// be replaced. Nothing is ever deleted.
//
// Files by concern: store.go (keys, scripts, generic create/get/list),
// entities.go (currencies, features, customers), plans.go, subscriptions.go,
// sync.go (Load, Refresh, Sync, Follow); the Lua is in lua/. Customer tokens
// are auth, not catalog: package tokens.
package catalogstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/internal/redisx"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("catalogstore: not found")
	// ErrConflict: the id (or idempotency key) exists with different content.
	ErrConflict = fault.New(fault.Conflict, "catalogstore: exists with different content")
	// ErrBusy: concurrent writes kept invalidating this one; retry.
	ErrBusy = fault.New(fault.Unavailable, "catalogstore: too much contention, retry")
)

// ErrUnavailable is wrapped by every error of a Redis outage (redisx's
// classification, shared with the balance store): retrying is safe.
var ErrUnavailable = redisx.ErrUnavailable

func classify(err *error) { *err = redisx.Classify(*err) }

// Store is the Redis catalog.
type Store struct {
	rc     redis.UniversalClient
	prefix string
	now    func() time.Time
}

// New makes a store whose keys start with prefix (e.g. "creditmeter:").
func New(rc redis.UniversalClient, prefix string) (*Store, error) {
	if rc == nil {
		return nil, errors.New("catalogstore: nil redis client")
	}
	return &Store{rc: rc, prefix: prefix, now: time.Now}, nil
}

// Client is the store's Redis client (for packages that keep their keys
// beside the catalog's, such as tokens).
func (s *Store) Client() redis.UniversalClient { return s.rc }

// Prefix is the key prefix the store was made with.
func (s *Store) Prefix() string { return s.prefix }

// SetClock replaces time.Now (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

const (
	kCurrencies = "currencies"
	kFeatures   = "features"
	kPlans      = "plans"
	kCustomers  = "customers"
	kSubs       = "subscriptions"
	kSubKeys    = "subkeys"
	kSubFP      = "subfp"
	kVersion    = "version"
	kChanges    = "changes"
)

// key names a catalog key; the {catalog} hash tag keeps all in one slot.
func (s *Store) key(parts ...string) string {
	k := s.prefix + "{catalog}"
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// Version is the catalog version: the number of writes so far.
func (s *Store) Version(ctx context.Context) (_ uint64, err error) {
	defer classify(&err)
	v, err := s.rc.Get(ctx, s.key(kVersion)).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// maxChanges bounds the change log; a rater further behind reloads fully.
const maxChanges = 10000

//go:embed lua/*.lua
var luaFS embed.FS

// luaSource is bump.lua (with MAX_CHANGES set from maxChanges) followed by
// the named script: every write bumps the version in the same call.
func luaSource(names ...string) string {
	var b strings.Builder
	b.WriteString("local MAX_CHANGES = " + strconv.Itoa(maxChanges) + "\n")
	for _, n := range append([]string{"bump.lua"}, names...) {
		body, err := luaFS.ReadFile("lua/" + n)
		if err != nil {
			panic(err)
		}
		b.Write(body)
		b.WriteString("\n")
	}
	return b.String()
}

var (
	// bumpScript is bump alone, evaluated inside ReplacePlan's transaction.
	bumpScript      = luaSource("bump_only.lua")
	createScript    = redis.NewScript(luaSource("create.lua"))
	replaceScript   = redis.NewScript(luaSource("replace.lua"))
	createSubScript = redis.NewScript(luaSource("span.lua", "create_subscription.lua"))
	lifecycleScript = redis.NewScript(luaSource("span.lua", "lifecycle.lua"))
)

// create stores v under id unless present. Creating the same content again is
// a no-op (created false); different content is ErrConflict.
func (s *Store) create(ctx context.Context, kind, id string, v any) (created bool, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	res, err := createScript.Run(ctx, s.rc, []string{s.key(kind), s.key(kVersion), s.key(kChanges)}, id, b, kind).Slice()
	if err != nil {
		return false, fmt.Errorf("catalogstore: create %s %q: %w", kind, id, err)
	}
	if res[0].(int64) == 1 {
		return true, nil
	}
	if !bytes.Equal([]byte(res[1].(string)), b) {
		return false, fmt.Errorf("%w: %s %q", ErrConflict, kind, id)
	}
	return false, nil
}

func (s *Store) get(ctx context.Context, kind, id string, v any) error {
	b, err := s.rc.HGet(ctx, s.key(kind), id).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: %s %q", ErrNotFound, kind, id)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func list[T any](ctx context.Context, s *Store, kind string, id func(*T) string) ([]*T, error) {
	m, err := s.rc.HGetAll(ctx, s.key(kind)).Result()
	if err != nil {
		return nil, err
	}
	return decodeAll(m, id)
}

func decodeAll[T any](m map[string]string, id func(*T) string) ([]*T, error) {
	out := make([]*T, 0, len(m))
	for k, b := range m {
		v := new(T)
		if err := json.Unmarshal([]byte(b), v); err != nil {
			return nil, fmt.Errorf("catalogstore: decode %q: %w", k, err)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return id(out[i]) < id(out[j]) })
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
