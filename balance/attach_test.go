package balance

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// failXRange fails the next pipeline of XRANGE commands, as a connection
// lost right after the scripts ran would.
type failXRange struct{ armed atomic.Bool }

func (h *failXRange) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *failXRange) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *failXRange) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "xrange" && h.armed.CompareAndSwap(true, false) {
			for _, c := range cmds {
				c.SetErr(io.ErrUnexpectedEOF)
			}
			return io.ErrUnexpectedEOF
		}
		return next(ctx, cmds)
	}
}

// Issue 13 item 4: when reading a batch's ledger entries fails after its
// script ran, the batch's result carries a retryable error (it used to be a
// success without entries, so the engine archived none of them); applying
// it again replays the journaled result with its entries.
func TestLedgerReadFailureFailsTheBatch(t *testing.T) {
	e := newEnv(t, 0)
	h := &failXRange{}
	e.rc.AddHook(h)
	sub := "s"
	e.open(sub, Unfunded)
	e.grant(sub, "g1", Promotional, c(50), t0, t0.AddDate(1, 0, 0))
	b := batch(sub, 0, line("e1", 0, t0, c(5)), line("e2", 1, t0, c(5)))
	b.Committed = 0
	h.armed.Store(true)
	res, err := e.s.Apply(e.ctx, []Batch{b})
	if err == nil || !Retryable(res[0].Err) {
		t.Fatalf("ledger read failed: result err %v, call err %v; want a retryable batch error", res[0].Err, err)
	}
	res, err = e.s.Apply(e.ctx, []Batch{b})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if len(res[0].Entries) == 0 || res[0].Entries[len(res[0].Entries)-1].Kind != "usage" {
		t.Fatalf("replay returned entries %+v, want the usage entry the first call wrote", res[0].Entries)
	}
	for _, l := range res[0].Lines {
		if l.Status != DuplicateOffset || !l.Journaled {
			t.Fatalf("replayed line %+v, want journaled redelivery", l)
		}
	}
}
