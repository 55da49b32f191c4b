package balance_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/testenv"
)

// A Lua script runs atomically on the real Redis: a debit that must not take
// the balance below zero, with the {subscription} hash tag in the key.
var debit = redis.NewScript(`
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
local amt = tonumber(ARGV[1])
if bal < amt then return {0, bal} end
return {1, redis.call('DECRBY', KEYS[1], amt)}
`)

func TestLuaScriptOnRealRedis(t *testing.T) {
	rc := testenv.Redis(t)
	ctx := context.Background()
	key := testenv.Prefix(t) + "{sub-1}:balance"
	t.Cleanup(func() { rc.Del(context.Background(), key) })
	if err := rc.Set(ctx, key, 100, 0).Err(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		amount  int64
		ok      int64
		balance int64
	}{{30, 1, 70}, {70, 1, 0}, {1, 0, 0}}
	for _, s := range steps {
		res, err := debit.Run(ctx, rc, []string{key}, s.amount).Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		if res[0] != s.ok || res[1] != s.balance {
			t.Errorf("debit %d: got ok=%d balance=%d, want ok=%d balance=%d", s.amount, res[0], res[1], s.ok, s.balance)
		}
	}
}
