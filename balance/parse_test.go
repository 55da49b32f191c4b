package balance

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/credit"
)

// applyReply is a script reply for n applied lines of two draws each, as
// Redis returns it: integers as int64, grant ids as strings.
func applyReply(n int) (Batch, *redis.Cmd) {
	b := Batch{Subscription: "s"}
	r := []any{"1000", "0", "", "0", "5", "5", "3:0", "", int64(1005)}
	for i := 0; i < n; i++ {
		b.Lines = append(b.Lines, Line{EventID: fmt.Sprint(i), Offset: int64(i), Time: time.Now(), Credits: 5})
		r = append(r, "A", int64(1000-5*i), int64(0), int64(0), int64(2), "g1", int64(4), "g2", int64(1))
	}
	c := redis.NewCmd(context.Background())
	c.SetVal(r)
	return b, c
}

// Reading Apply's reply costs an allocation per line (its draws), not one
// per reply item: integers are read as the int64 Redis sent, not formatted
// to strings and parsed back.
func TestParseApplyAllocations(t *testing.T) {
	s := &Store{}
	b, c := applyReply(100)
	res := parseApply(b, c, 1, s)
	if res.Err != nil || len(res.Lines) != 100 {
		t.Fatalf("%v, %d lines", res.Err, len(res.Lines))
	}
	l := res.Lines[3]
	if l.Status != Applied || l.Balance != 985 || len(l.Draws) != 2 || l.Draws[1] != (Draw{Grant: "g2", Amount: 1}) {
		t.Errorf("line 3: %+v", l)
	}
	allocs := testing.AllocsPerRun(20, func() { parseApply(b, c, 1, s) })
	if allocs > 150 {
		t.Errorf("%.0f allocations to read 100 lines, want ≤ 150", allocs)
	}
	// a grant amount that is not a number is refused
	bad := redis.NewCmd(context.Background())
	bad.SetVal([]any{"1000", "0", "", "0", "5", "5", "3:0", "", int64(2), "A", int64(1), int64(0), int64(0), int64(1), "g1", "x"})
	if res := parseApply(Batch{Subscription: "s", Lines: b.Lines[:1]}, bad, 1, s); res.Err == nil {
		t.Errorf("a bad draw amount was accepted: %+v", res.Lines)
	}
}

// replySizes records the number of items of every EVALSHA reply.
type replySizes struct{ sizes []int }

func (h *replySizes) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *replySizes) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *replySizes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if rc, ok := c.(*redis.Cmd); ok && c.Name() == "evalsha" {
				if v, ok := rc.Val().([]any); ok {
					h.sizes = append(h.sizes, len(v))
				}
			}
		}
		return err
	}
}

// A line drawn wholly from one grant comes back as two reply items (status
// and grant), not seven; its balance follows from the balance before the
// lines. A line over two grants still comes back whole, and the lines
// after it count from its balance.
func TestApplyReplyIsCompact(t *testing.T) {
	e := newEnv(t, 0)
	h := &replySizes{}
	e.rc.AddHook(h)
	sub := "compact"
	e.open(sub, Overage)
	e.grant(sub, "g1", Promotional, credit.MustParse("2.5"), t0, t0.AddDate(0, 1, 0))
	e.grant(sub, "g2", Purchased, c(100), t0, t0.AddDate(1, 0, 0))
	var lines []Line
	for i := 0; i < 5; i++ {
		lines = append(lines, line(fmt.Sprint("cp", i), int64(i), t0, c(1)))
	}
	h.sizes = nil
	r := e.apply(batch(sub, 0, lines...))[0]
	want := []struct {
		bal   string
		draws []Draw
	}{
		{"101.5", draws("g1", c(1))}, {"100.5", draws("g1", c(1))},
		{"99.5", draws("g1", credit.MustParse("0.5"), "g2", credit.MustParse("0.5"))},
		{"98.5", draws("g2", c(1))}, {"97.5", draws("g2", c(1))},
	}
	for i, l := range r.Lines {
		if l.Status != Applied || l.Balance != credit.MustParse(want[i].bal) || !sameDraws(l.Draws, want[i].draws) || l.Unfunded != 0 || l.Overage != 0 {
			t.Errorf("line %d: %+v, want balance %s draws %v", i, l, want[i].bal, want[i].draws)
		}
	}
	if r.Balance != credit.MustParse("97.5") {
		t.Errorf("balance %s", r.Balance)
	}
	// 9 head items, 4 lines of 2 items, one of 5 + 2 draws × 2
	if len(h.sizes) != 1 || h.sizes[0] != 9+4*2+9 {
		t.Errorf("reply sizes %v, want [26]", h.sizes)
	}
	// the same lines redelivered come back whole from the journal
	again := e.apply(batch(sub, 0, lines...))[0]
	for i, l := range again.Lines {
		if l.Status != DuplicateOffset || !l.Journaled || l.Balance != r.Lines[i].Balance || !sameDraws(l.Draws, r.Lines[i].Draws) {
			t.Errorf("replayed line %d: %+v, first %+v", i, l, r.Lines[i])
		}
	}
}

// The fingerprints are those remembered by earlier versions (hash/fnv's
// FNV-1a), and building a call's KEYS and ARGV allocates per line only for
// what go-redis needs (the boxed arguments and the fingerprint's text).
func TestApplyArgs(t *testing.T) {
	for _, id := range []string{"", "a", "evt-1-5f1c0a2e", "ünïcode-ïd"} {
		h := fnv.New64a()
		h.Write([]byte(id))
		v := h.Sum64()
		fp, bits := eventFingerprint(id)
		if fp != strconv.FormatInt(int64(v), 10) || bits != int64(v&0x7fffffff) {
			t.Errorf("%q: %s %d, want %d", id, fp, bits, int64(v))
		}
	}
	s := &Store{prefix: "P", window: 3600000}
	b := Batch{Subscription: "s", Topic: "usage-events"}
	for i := 0; i < 100; i++ {
		b.Lines = append(b.Lines, Line{EventID: fmt.Sprintf("evt-%d-5f1c0a2e", i), Offset: int64(1000 + i), Time: time.Now(), Credits: 1234567})
	}
	l := ddLayout{tb: 10, cur: "150:0,3", prev: "900:2"}
	keys, args, _ := s.applyArgs(&b, l, 36000000, nil)
	if len(args) != 10+5*100 || len(keys) != subKeyCount+1+1+4+8 {
		t.Fatalf("%d args, %d keys (%v)", len(args), len(keys), keys)
	}
	var bits []int64
	allocs := testing.AllocsPerRun(20, func() { _, _, bits = s.applyArgs(&b, l, 36000000, bits) })
	t.Logf("%.0f allocations for 100 lines", allocs)
	if allocs > 6*100 {
		t.Errorf("%.0f allocations for 100 lines, want ≤ 600", allocs)
	}
}
