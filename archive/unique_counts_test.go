package archive_test

import (
	"context"
	"testing"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// The empty string is a UNIQUE_COUNT value like any other (unique.lua
// counts and charges it once per period): a row that counted it is listed
// for a repair to put it back, while rows that counted nothing are not.
func TestUniqueCountsListsTheEmptyValue(t *testing.T) {
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	p, pe := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rows := usageRows("sub-u", 3, at)
	rows[0].UniqueValue, rows[0].UniquePeriod, rows[0].UniquePeriodEnd = "", p, pe // counted ''
	rows[1].UniqueValue, rows[1].UniquePeriod, rows[1].UniquePeriodEnd = "u1", p, pe
	// rows[2]: not a UNIQUE_COUNT line, or a repeat
	if err := archive.NewWriter(conn).WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	us, err := archive.UniqueCounts(ctx, conn, "sub-u", at.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, u := range us {
		if !u.Period.Equal(p) || !u.PeriodEnd.Equal(pe) {
			t.Errorf("value %q: period [%s, %s)", u.Value, u.Period, u.PeriodEnd)
		}
		got[u.Value] = true
	}
	if len(us) != 2 || !got[""] || !got["u1"] {
		t.Errorf("UniqueCounts = %+v, want the values '' and u1", us)
	}
}

// UniqueCounts is the archive's truth, the rows' latest versions (FINAL):
// a line archived again as a repeat (replayed after a repair, when another
// event counted the value first) no longer counts it, so a second repair
// that covers it but not that other event forgets the value, and the other
// event's replay charges it, rather than nobody.
func TestUniqueCountsFollowsTheLatestVersion(t *testing.T) {
	conn, _ := testenv.Archive(t)
	ctx := context.Background()
	w := archive.NewWriter(conn)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	p, pe := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rows := usageRows("sub-v", 1, at)
	rows[0].UniqueValue, rows[0].UniquePeriod, rows[0].UniquePeriodEnd = "u1", p, pe
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	rows[0].UniqueValue, rows[0].UniquePeriod, rows[0].UniquePeriodEnd = "", time.Time{}, time.Time{} // now a repeat
	rows[0].Credits, rows[0].Funded, rows[0].GrantAmounts = 0, 0, []credit.Amount{0}
	if err := w.WriteUsage(ctx, rows); err != nil {
		t.Fatal(err)
	}
	us, err := archive.UniqueCounts(ctx, conn, "sub-v", at.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 0 {
		t.Errorf("UniqueCounts = %+v, want none: the row's latest version counted nothing", us)
	}
}
