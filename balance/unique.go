package balance

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// uniqueKey is the UNIQUE_COUNT memory of one meter and billing period of
// sub: P{S}:u:<meter>:<period start ms>, a set of the values counted.
func (s *Store) uniqueKey(sub, meter string, periodMs int64) string {
	return s.prefix + "{" + sub + "}:u:" + meter + ":" + strconv.FormatInt(periodMs, 10)
}

// uniqueArgs appends the batch's UNIQUE_COUNT sets to keys and returns
// unique.lua's argument: "" (none) or [[line, key index, value, credits, keep ms]].
func (s *Store) uniqueArgs(keys []string, b *Batch) ([]string, string) {
	var parts [][5]any
	var at map[string]int // made only when a line has UNIQUE_COUNT parts (rare)
	for k, ln := range b.Lines {
		for _, u := range ln.Unique {
			if at == nil {
				at = map[string]int{}
			}
			key := s.uniqueKey(b.Subscription, u.Meter, u.Period.UnixMilli())
			ix, ok := at[key]
			if !ok {
				keys = append(keys, key)
				ix = len(keys) // Lua's KEYS are 1-based
				at[key] = ix
			}
			keep := u.PeriodEnd.Add(UniqueKeep).UnixMilli()
			parts = append(parts, [5]any{k + 1, ix, u.Value, strconv.FormatInt(int64(u.Credits), 10), strconv.FormatInt(keep, 10)})
		}
	}
	if len(parts) == 0 {
		return keys, ""
	}
	js, _ := json.Marshal(parts) // strings and ints only: cannot fail
	return keys, string(js)
}

// uniqueDraw is unique.lua's pseudo-draw carrying LineResult.Repeats.
const uniqueDraw = "~u"

// restoreUnique puts the values the archive says sets counted back into
// them, before the repair script: they were charged in the archived ledger,
// so adding them early is right whatever Redis does meanwhile (a value
// counted is never charged again). The script itself takes out the values
// only the lost state counted (UniqueSet.Forget), atomically with the
// watermarks that make Kafka replay them.
func (s *Store) restoreUnique(ctx context.Context, sub string, sets []UniqueSet, now int64) error {
	const chunk = 1000
	pipe := s.rc.Pipeline()
	queued := 0
	flush := func() error {
		if queued == 0 {
			return nil
		}
		queued = 0
		_, err := pipe.Exec(ctx)
		return classify(err)
	}
	for _, u := range sets {
		key := s.uniqueKey(sub, u.Meter, u.Period.UnixMilli())
		for lo := 0; lo < len(u.Counted); lo += chunk {
			vals := u.Counted[lo:min(lo+chunk, len(u.Counted))]
			members := make([]any, len(vals))
			for i, v := range vals {
				members[i] = v
			}
			pipe.SAdd(ctx, key, members...)
			queued += len(vals)
			if queued >= 10*chunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if len(u.Counted) > 0 {
			// relative to the store's clock, as unique.lua
			pipe.PExpire(ctx, key, time.Duration(u.PeriodEnd.Add(UniqueKeep).UnixMilli()-now)*time.Millisecond)
			queued++
		}
	}
	return flush()
}
