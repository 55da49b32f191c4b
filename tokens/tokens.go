// Package tokens keeps customer bearer tokens in Redis and names admin
// tokens. A customer token is scoped to one customer of the catalog; only
// its SHA-256 is stored, with an id (tok_ and 16 hex digits of the hash), the
// first characters of the secret, its creation, optional expiry and last use.
// Tokens are auth, not catalog, but their keys sit beside the catalog's under
// its {catalog} hash tag (prefix{catalog}:tokens, …), so every change is one
// script on Redis Cluster too, and tokens issued before this package existed
// stay valid (they are indexed on first use, then listed and revocable).
//
// Revocation reaches every node within CacheTTL (at most 1 s): a node keeps a
// looked-up token at most that long before asking Redis again.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/redisx"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// Errors.
var (
	// ErrNotFound: no such token (unknown, or revoked).
	ErrNotFound = errors.New("tokens: not found")
	// ErrExpired: the token is past its expiry.
	ErrExpired = errors.New("tokens: expired")
)

// CacheTTL is how long a node trusts a token it looked up: the bound on how
// late a revocation takes effect on other nodes.
const CacheTTL = time.Second

// usedEvery is how often a token's last use is written (per node): last use
// is precise to this, and costs one write per token per interval.
const usedEvery = time.Minute

// maxCache bounds the cache; when full it starts again empty.
const maxCache = 10000

//go:embed lua/*.lua
var luaFS embed.FS

func script(name string) *redis.Script {
	b, err := luaFS.ReadFile("lua/" + name)
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(b))
}

var (
	issueScript  = script("issue.lua")
	revokeScript = script("revoke.lua")
	adoptScript  = script("adopt.lua")
	touchScript  = script("touch.lua")
)

// Customers looks up a customer of the catalog (catalogstore.Store does).
type Customers interface {
	Customer(ctx context.Context, id string) (*rating.Customer, error)
}

// Info describes a customer token, never its secret.
type Info struct {
	ID         string     `json:"id"`
	CustomerID string     `json:"customer_id"`
	Prefix     string     `json:"prefix,omitempty"` // the secret's first characters, to recognise it
	CreatedAt  *time.Time `json:"created_at,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Expired reports whether the token is past its expiry at now.
func (i *Info) Expired(now time.Time) bool { return i.ExpiresAt != nil && !now.Before(*i.ExpiresAt) }

// Store issues, resolves, lists and revokes customer tokens.
type Store struct {
	rc        redis.UniversalClient
	prefix    string
	customers Customers
	now       func() time.Time

	mu    sync.Mutex
	cache map[string]cached // by hash
}

type cached struct {
	info    Info
	fetched time.Time
	used    time.Time // last use as stored (zero: never)
}

// New makes a store whose keys start with prefix, checking customers in
// customers.
func New(rc redis.UniversalClient, prefix string, customers Customers) (*Store, error) {
	if rc == nil || customers == nil {
		return nil, errors.New("tokens: nil redis client or customers")
	}
	return &Store{rc: rc, prefix: prefix, customers: customers, now: time.Now, cache: map[string]cached{}}, nil
}

// ForCatalog is the token store beside cat: same client, same prefix.
func ForCatalog(cat *catalogstore.Store) *Store {
	s, _ := New(cat.Client(), cat.Prefix(), cat)
	return s
}

// SetClock replaces time.Now (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

func classify(err *error) { *err = redisx.Classify(*err) }

func (s *Store) key(parts ...string) string {
	k := s.prefix + "{catalog}"
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// Keys: tokens (hash → record, or a bare customer id from before records),
// tokenids (id → hash), tokenused (id → unix seconds), tokens:customer:<id>
// (set of ids).
func (s *Store) keyTokens() string           { return s.key("tokens") }
func (s *Store) keyIDs() string              { return s.key("tokenids") }
func (s *Store) keyUsed() string             { return s.key("tokenused") }
func (s *Store) keyCustomer(c string) string { return s.key("tokens", "customer", c) }

// Issue makes a bearer token scoped to one existing customer (the catalog's
// not-found error for an unknown one), expiring at expiresAt (zero: never).
func (s *Store) Issue(ctx context.Context, customerID string, expiresAt time.Time) (_ string, _ Info, err error) {
	defer classify(&err)
	if _, err := s.customers.Customer(ctx, customerID); err != nil {
		return "", Info{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	if !expiresAt.IsZero() && !expiresAt.After(now) {
		return "", Info{}, &rating.FieldError{Field: "expires_at", Code: "invalid", Message: "the expiry must be in the future", Err: rating.ErrInvalid}
	}
	tok := "cmc_" + randomHex(24)
	h := hashToken(tok)
	info := Info{ID: idOf(h), CustomerID: customerID, Prefix: tok[:8], CreatedAt: &now}
	if !expiresAt.IsZero() {
		e := expiresAt.UTC().Truncate(time.Second)
		info.ExpiresAt = &e
	}
	b, err := json.Marshal(info)
	if err != nil {
		return "", Info{}, err
	}
	err = issueScript.Run(ctx, s.rc, []string{s.keyTokens(), s.keyIDs(), s.keyCustomer(customerID)}, h, info.ID, b).Err()
	if err != nil {
		return "", Info{}, err
	}
	return tok, info, nil
}

// Customer is the customer a token was issued for; ErrNotFound for an
// unknown or revoked token, ErrExpired for an expired one.
func (s *Store) Customer(ctx context.Context, token string) (string, error) {
	info, err := s.Lookup(ctx, token)
	return info.CustomerID, err
}

// Lookup resolves a token, from the cache when it was read from Redis less
// than CacheTTL ago; ErrNotFound or ErrExpired when it may not be used. It
// records the token's last use about once a usedEvery.
func (s *Store) Lookup(ctx context.Context, token string) (_ Info, err error) {
	defer classify(&err)
	h := hashToken(token)
	now := s.now()
	s.mu.Lock()
	c, hit := s.cache[h]
	s.mu.Unlock()
	if !hit || now.Sub(c.fetched) >= CacheTTL || now.Before(c.fetched) {
		if c, err = s.fetch(ctx, h, now); err != nil {
			return Info{}, err
		}
	}
	if c.info.Expired(now) {
		return Info{}, ErrExpired
	}
	return c.info, nil
}

func (s *Store) fetch(ctx context.Context, h string, now time.Time) (cached, error) {
	id := idOf(h)
	var rec, used *redis.StringCmd
	_, err := s.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGet(ctx, s.keyTokens(), h)
		used = p.HGet(ctx, s.keyUsed(), id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return cached{}, err
	}
	raw, err := rec.Result()
	if errors.Is(err, redis.Nil) {
		s.forget(h)
		return cached{}, ErrNotFound
	}
	if err != nil {
		return cached{}, err
	}
	info, err := s.decode(ctx, h, raw)
	if err != nil {
		return cached{}, err
	}
	c := cached{info: info, fetched: now}
	if sec, err := strconv.ParseInt(used.Val(), 10, 64); err == nil {
		c.used = time.Unix(sec, 0)
	}
	if now.Sub(c.used) >= usedEvery && !info.Expired(now) {
		if err := touchScript.Run(ctx, s.rc, []string{s.keyIDs(), s.keyUsed()}, id, now.Unix()).Err(); err != nil {
			return cached{}, err
		}
		c.used = now
	}
	s.mu.Lock()
	if len(s.cache) >= maxCache {
		s.cache = map[string]cached{}
	}
	s.cache[h] = c
	s.mu.Unlock()
	return c, nil
}

// decode reads a stored record; a bare customer id (a token from before
// records) is adopted: given a record and indexed, so it can be listed.
func (s *Store) decode(ctx context.Context, h, raw string) (Info, error) {
	if strings.HasPrefix(raw, "{") {
		var info Info
		if err := json.Unmarshal([]byte(raw), &info); err != nil {
			return Info{}, fmt.Errorf("tokens: decode %s: %w", idOf(h), err)
		}
		return info, nil
	}
	info := Info{ID: idOf(h), CustomerID: raw}
	b, err := json.Marshal(info)
	if err != nil {
		return Info{}, err
	}
	err = adoptScript.Run(ctx, s.rc, []string{s.keyTokens(), s.keyIDs(), s.keyCustomer(raw)}, h, info.ID, b, raw).Err()
	return info, err
}

func (s *Store) forget(h string) {
	s.mu.Lock()
	delete(s.cache, h)
	s.mu.Unlock()
}

// List is a customer's tokens by creation (then id), expired ones included.
func (s *Store) List(ctx context.Context, customerID string) (_ []Info, err error) {
	defer classify(&err)
	ids, err := s.rc.SMembers(ctx, s.keyCustomer(customerID)).Result()
	if err != nil || len(ids) == 0 {
		return []Info{}, err
	}
	var hashes, used *redis.SliceCmd
	_, err = s.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		hashes = p.HMGet(ctx, s.keyIDs(), ids...)
		used = p.HMGet(ctx, s.keyUsed(), ids...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var hs []string
	lastUsed := map[string]time.Time{}
	for i, v := range hashes.Val() {
		if h, ok := v.(string); ok {
			hs = append(hs, h)
		}
		if u, ok := used.Val()[i].(string); ok {
			if sec, err := strconv.ParseInt(u, 10, 64); err == nil {
				lastUsed[ids[i]] = time.Unix(sec, 0).UTC()
			}
		}
	}
	if len(hs) == 0 {
		return []Info{}, nil
	}
	recs, err := s.rc.HMGet(ctx, s.keyTokens(), hs...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(recs))
	for i, v := range recs {
		raw, ok := v.(string)
		if !ok {
			continue // revoked meanwhile
		}
		info, err := s.decode(ctx, hs[i], raw)
		if err != nil {
			return nil, err
		}
		if u, ok := lastUsed[info.ID]; ok {
			info.LastUsedAt = &u
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].CreatedAt, out[j].CreatedAt
		if a != nil && b != nil && !a.Equal(*b) {
			return a.Before(*b)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Revoke deletes a customer's token by id; ErrNotFound when the customer has
// none of that id. Other nodes refuse it within CacheTTL, this one at once.
func (s *Store) Revoke(ctx context.Context, customerID, id string) (err error) {
	defer classify(&err)
	h, err := s.rc.HGet(ctx, s.keyIDs(), id).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	n, err := revokeScript.Run(ctx, s.rc, []string{s.keyTokens(), s.keyIDs(), s.keyCustomer(customerID), s.keyUsed()}, id).Int()
	if err != nil {
		return err
	}
	if h != "" {
		s.forget(h)
	}
	if n == 0 {
		return fmt.Errorf("%w: customer %q has no token %q", ErrNotFound, customerID, id)
	}
	return nil
}

// idOf is a token's public id: 64 bits of its hash, which reveal nothing of
// the 192-bit secret.
func idOf(hash string) string { return "tok_" + hash[:16] }

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
