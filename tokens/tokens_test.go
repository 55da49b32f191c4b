package tokens_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
	"github.com/creditmeter/creditmeter/tokens"
)

// clusterSuite names the suite whose subtests newStores give a cluster client.
const clusterSuite = "TestTokensOnRedisCluster/"

// newStores is a catalog with customer acme and the token store beside it.
func newStores(t *testing.T) (*catalogstore.Store, *tokens.Store) {
	t.Helper()
	var rc redis.UniversalClient = testenv.Redis(t)
	if strings.HasPrefix(t.Name(), clusterSuite) {
		rc = testenv.RedisCluster(t)
	}
	cat, err := catalogstore.New(rc, testenv.KeyspaceOn(t, rc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.CreateCustomer(context.Background(), &rating.Customer{ID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	return cat, tokens.ForCatalog(cat)
}

func TestTokens(t *testing.T) {
	_, s := newStores(t)
	ctx := context.Background()
	tok, _, err := s.Issue(ctx, "acme", time.Time{})
	if err != nil || len(tok) < 32 {
		t.Fatalf("token %q %v", tok, err)
	}
	if id, err := s.Customer(ctx, tok); err != nil || id != "acme" {
		t.Errorf("token customer %q %v", id, err)
	}
	if _, err := s.Customer(ctx, tok+"x"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("unknown token: %v", err)
	}
	if _, _, err := s.Issue(ctx, "nobody", time.Time{}); !errors.Is(err, catalogstore.ErrNotFound) {
		t.Errorf("token for unknown customer: %v", err)
	}
}

// TestTokensOnRedisCluster runs the token tests again on the shared cluster.
func TestTokensOnRedisCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Tokens", TestTokens},
		{"ListShowsNoSecretAndRevokeRefusesAtOnce", TestListShowsNoSecretAndRevokeRefusesAtOnce},
		{"TokenExpires", TestTokenExpires},
		{"RevocationReachesAnotherNodeWithinASecond", TestRevocationReachesAnotherNodeWithinASecond},
		{"TokenFromBeforeRecordsIsAdopted", TestTokenFromBeforeRecordsIsAdopted},
	} {
		t.Run(tc.name, tc.fn)
	}
}
