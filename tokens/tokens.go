// Package tokens keeps customer bearer tokens in Redis: a token is scoped to
// one customer of the catalog, and only its SHA-256 is stored. Tokens are
// auth, not catalog, but their keys sit beside the catalog's under its
// {catalog} hash tag (prefix{catalog}:tokens), so tokens issued before this
// package existed stay valid.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/redisx"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// ErrNotFound: no such token.
var ErrNotFound = errors.New("tokens: not found")

// Customers looks up a customer of the catalog (catalogstore.Store does).
type Customers interface {
	Customer(ctx context.Context, id string) (*rating.Customer, error)
}

// Store issues and resolves customer tokens.
type Store struct {
	rc        redis.UniversalClient
	prefix    string
	customers Customers
}

// New makes a store whose keys start with prefix, checking customers in
// customers.
func New(rc redis.UniversalClient, prefix string, customers Customers) (*Store, error) {
	if rc == nil || customers == nil {
		return nil, errors.New("tokens: nil redis client or customers")
	}
	return &Store{rc: rc, prefix: prefix, customers: customers}, nil
}

// ForCatalog is the token store beside cat: same client, same prefix.
func ForCatalog(cat *catalogstore.Store) *Store {
	return &Store{rc: cat.Client(), prefix: cat.Prefix(), customers: cat}
}

func classify(err *error) { *err = redisx.Classify(*err) }

func (s *Store) key(parts ...string) string {
	k := s.prefix + "{catalog}"
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// Issue makes a bearer token scoped to one existing customer (the catalog's
// not-found error for an unknown one).
func (s *Store) Issue(ctx context.Context, customerID string) (_ string, err error) {
	defer classify(&err)
	if _, err := s.customers.Customer(ctx, customerID); err != nil {
		return "", err
	}
	tok := "cmc_" + randomHex(24)
	if err := s.rc.HSet(ctx, s.key("tokens"), hashToken(tok), customerID).Err(); err != nil {
		return "", err
	}
	return tok, nil
}

// Customer is the customer a token was issued for; ErrNotFound for an
// unknown token.
func (s *Store) Customer(ctx context.Context, token string) (_ string, err error) {
	defer classify(&err)
	id, err := s.rc.HGet(ctx, s.key("tokens"), hashToken(token)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	return id, err
}

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
