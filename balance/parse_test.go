package balance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// applyReply is a script reply for n applied lines of two draws each, as
// Redis returns it: integers as int64, grant ids as strings.
func applyReply(n int) (Batch, *redis.Cmd) {
	b := Batch{Subscription: "s"}
	r := []any{"1000", "0", "", "0", "5", "5", "3:0", ""}
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
	bad.SetVal([]any{"1000", "0", "", "0", "5", "5", "3:0", "", "A", int64(1), int64(0), int64(0), int64(1), "g1", "x"})
	if res := parseApply(Batch{Subscription: "s", Lines: b.Lines[:1]}, bad, 1, s); res.Err == nil {
		t.Errorf("a bad draw amount was accepted: %+v", res.Lines)
	}
}
