package tokens_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/tokens"
)

func TestListShowsNoSecretAndRevokeRefusesAtOnce(t *testing.T) {
	cat, s := newStores(t)
	ctx := context.Background()
	if _, err := cat.CreateCustomer(ctx, &rating.Customer{ID: "beta", Name: "Beta"}); err != nil {
		t.Fatal(err)
	}
	t1, i1, err := s.Issue(ctx, "acme", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	t2, i2, err := s.Issue(ctx, "acme", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tb, ib, err := s.Issue(ctx, "beta", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Customer(ctx, t1); err != nil { // records a last use
		t.Fatal(err)
	}
	list, err := s.List(ctx, "acme")
	if err != nil || len(list) != 2 {
		t.Fatalf("list %v %v", list, err)
	}
	b, _ := json.Marshal(list)
	for _, secret := range []string{t1, t2, t1[8:20], t2[8:20]} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("the list shows a secret: %s", b)
		}
	}
	byID := map[string]tokens.Info{list[0].ID: list[0], list[1].ID: list[1]}
	if l := byID[i1.ID]; l.Prefix != t1[:8] || l.CreatedAt == nil || l.LastUsedAt == nil || l.ExpiresAt != nil {
		t.Errorf("first token %s", b)
	}
	if l := byID[i2.ID]; l.Prefix != t2[:8] || l.ExpiresAt == nil || l.LastUsedAt != nil {
		t.Errorf("second token %s", b)
	}
	// Another customer's token id is not acme's to revoke.
	if err := s.Revoke(ctx, "acme", ib.ID); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("revoke beta's token as acme: %v", err)
	}
	if id, err := s.Customer(ctx, tb); err != nil || id != "beta" {
		t.Errorf("beta's token after a refused revoke: %q %v", id, err)
	}
	if err := s.Revoke(ctx, "acme", i1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Customer(ctx, t1); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("revoked token on the revoking node: %v", err)
	}
	if err := s.Revoke(ctx, "acme", i1.ID); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("revoke twice: %v", err)
	}
	if list, err := s.List(ctx, "acme"); err != nil || len(list) != 1 || list[0].ID == i1.ID {
		t.Errorf("list after revoke %v %v", list, err)
	}
}

func TestTokenExpires(t *testing.T) {
	_, s := newStores(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	if _, _, err := s.Issue(ctx, "acme", now); !errors.Is(err, rating.ErrInvalid) {
		t.Errorf("expiry now: %v", err)
	}
	tok, info, err := s.Issue(ctx, "acme", now.Add(time.Hour))
	if err != nil || info.ExpiresAt == nil || !info.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("%+v %v", info, err)
	}
	if _, err := s.Customer(ctx, tok); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour) // the cached entry is expired too
	if _, err := s.Customer(ctx, tok); !errors.Is(err, tokens.ErrExpired) {
		t.Errorf("at expiry: %v", err)
	}
}

// TestRevocationReachesAnotherNodeWithinASecond: two stores on one Redis
// keyspace, as two serve nodes, each with the token in its cache.
func TestRevocationReachesAnotherNodeWithinASecond(t *testing.T) {
	cat, a := newStores(t)
	b := tokens.ForCatalog(cat)
	ctx := context.Background()
	tok, info, err := a.Issue(ctx, "acme", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*tokens.Store{a, b} {
		if _, err := s.Customer(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := a.Revoke(ctx, "acme", info.ID); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := b.Customer(ctx, tok)
		if errors.Is(err, tokens.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > tokens.CacheTTL+200*time.Millisecond {
			t.Fatalf("the other node still accepts the revoked token after %v", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("refused by the other node after %v", time.Since(start).Round(time.Millisecond))
}

// TestTokenFromBeforeRecordsIsAdopted: a token stored as a bare customer id
// (before tokens had records) still works, and can then be listed and revoked.
func TestTokenFromBeforeRecordsIsAdopted(t *testing.T) {
	cat, s := newStores(t)
	ctx := context.Background()
	tok := "cmc_" + strings.Repeat("ab", 24)
	h := sha256.Sum256([]byte(tok))
	if err := cat.Client().HSet(ctx, cat.Prefix()+"{catalog}:tokens", hex.EncodeToString(h[:]), "acme").Err(); err != nil {
		t.Fatal(err)
	}
	if id, err := s.Customer(ctx, tok); err != nil || id != "acme" {
		t.Fatalf("old token: %q %v", id, err)
	}
	list, err := s.List(ctx, "acme")
	if err != nil || len(list) != 1 || list[0].ID != "tok_"+hex.EncodeToString(h[:8]) {
		t.Fatalf("list %+v %v", list, err)
	}
	if err := s.Revoke(ctx, "acme", list[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Customer(ctx, tok); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("revoked old token: %v", err)
	}
}

func TestParseAdmin(t *testing.T) {
	for _, tc := range []struct{ entry, name, secret string }{
		{"0123456789abcdef0123", "admin", "0123456789abcdef0123"},
		{"alice@example.com:0123456789abcdef0123", "alice@example.com", "0123456789abcdef0123"},
		{"ci-bot:s3cr:et-with-colons", "ci-bot", "s3cr:et-with-colons"},
		{":0123456789abcdef", "admin", ":0123456789abcdef"},
		{"has space:0123456789abcdef", "admin", "has space:0123456789abcdef"},
		{"name:", "admin", "name:"},
	} {
		if n, s := tokens.ParseAdmin(tc.entry); n != tc.name || s != tc.secret {
			t.Errorf("ParseAdmin(%q) = %q, %q; want %q, %q", tc.entry, n, s, tc.name, tc.secret)
		}
	}
}
