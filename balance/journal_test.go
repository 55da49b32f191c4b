package balance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/creditmeter/creditmeter/credit"
)

// The journal keeps one record per call, its lines' results packed once
// (no per-line string building in the script). A record written in the
// earlier text format — in flight across an upgrade — still replays.
func TestJournalRecordFormats(t *testing.T) {
	e := newEnv(t, 0)
	sub := "journal-fmt"
	e.open(sub, Overage)
	e.grant(sub, "g1", Promotional, c(2), t0, t0.AddDate(0, 1, 0))
	e.grant(sub, "g2", Purchased, c(100), t0, t0.AddDate(1, 0, 0))
	var lines []Line
	for i := 0; i < 6; i++ {
		lines = append(lines, line(fmt.Sprint("jf", i), int64(100+i), t0, credit.MustParse("1.5")))
	}
	first := append(e.apply(batch(sub, 3, lines[:3]...)), e.apply(batch(sub, 3, lines[3:]...))...)
	key := e.s.journalKey(sub, "usage-events/3")
	recs, err := e.rc.LRange(e.ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !strings.HasPrefix(recs[0], "100 102 ") || !strings.HasPrefix(recs[1], "103 105 ") || !strings.Contains(recs[1], " #") {
		t.Fatalf("journal %q, want one packed record per call", recs)
	}
	// replay: every line gets its first result back
	check := func(what string) {
		t.Helper()
		again := e.apply(batch(sub, 3, lines...))
		for i, l := range again[0].Lines {
			w := first[i/3].Lines[i%3]
			if l.Status != DuplicateOffset || !l.Journaled || l.Balance != w.Balance || !sameDraws(l.Draws, w.Draws) || l.Unfunded != w.Unfunded || l.Overage != w.Overage {
				t.Errorf("%s: line %d: %+v, first %+v", what, i, l, w)
			}
		}
	}
	check("packed")
	// rewrite the journal in the earlier format: "fo lo fs ls|off,bal,unf,over,n,g,a,...|..."
	var old []string
	for bi, r := range first {
		parts := []string{fmt.Sprintf("%d %d %d %d", lines[3*bi].Offset, lines[3*bi+2].Offset, r.FirstSeq, r.LastSeq)}
		for i, l := range r.Lines {
			p := fmt.Sprintf("%d,%d,%d,%d,%d", lines[3*bi+i].Offset, int64(l.Balance), int64(l.Unfunded), int64(l.Overage), len(l.Draws))
			for _, d := range l.Draws {
				p += fmt.Sprintf(",%s,%d", d.Grant, int64(d.Amount))
			}
			parts = append(parts, p)
		}
		old = append(old, strings.Join(parts, "|"))
	}
	if err := e.rc.Del(e.ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rc.RPush(e.ctx, key, old[0], old[1]).Err(); err != nil {
		t.Fatal(err)
	}
	check("earlier format")
	if d := first[0].Lines[1].Draws; len(d) != 2 {
		t.Errorf("line 1 should draw from both grants: %v", d)
	}
}
