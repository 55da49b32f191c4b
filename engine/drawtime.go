package engine

import (
	"strconv"
	"strings"
	"time"

	"github.com/creditmeter/creditmeter/balance"
)

// A usage line is archived at the time its credits were drawn at: its
// timestamp clamped to [now − grace, now] of the script that applied it
// (balance/README.md, "Burn-down order"), so the archive's usage and the
// ledger fall in the same invoice period and a far-future timestamp never
// reaches rated_usage. "now" is read from the usage ledger entry that covers
// the line's offset ('t' and 'r' = source:first-last), which a redelivery
// gets back too, so a replayed line is archived at exactly its first time
// (the archive is partitioned by month: another time would be another row).

// usageSpan is one usage ledger entry of a batch's source: the offsets it
// covers and the time its script ran.
type usageSpan struct {
	first, last int64
	at          time.Time
}

func usageSpans(b *balance.Batch, res *balance.BatchResult) []usageSpan {
	src := b.Topic + "/" + strconv.Itoa(int(b.Partition)) + ":"
	var out []usageSpan
	for i := range res.Entries {
		en := &res.Entries[i]
		r, ok := strings.CutPrefix(en.Fields["r"], src)
		if en.Kind != "usage" || !ok {
			continue
		}
		lo, hi, ok := strings.Cut(r, "-")
		first, err1 := strconv.ParseInt(lo, 10, 64)
		last, err2 := strconv.ParseInt(hi, 10, 64)
		if ok && err1 == nil && err2 == nil {
			out = append(out, usageSpan{first, last, en.Time})
		}
	}
	return out
}

// drawnAt is the draw time of the line at offset with timestamp ts; now is
// the fallback when no entry covers it (never expected).
func drawnAt(spans []usageSpan, offset int64, ts time.Time, grace time.Duration, now time.Time) time.Time {
	for _, s := range spans {
		if s.first <= offset && offset <= s.last {
			now = s.at
			break
		}
	}
	if ts.After(now) {
		return now
	}
	if lo := now.Add(-grace); ts.Before(lo) {
		return lo
	}
	return ts
}
