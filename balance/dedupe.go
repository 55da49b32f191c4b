package balance

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ddLayout is a subscription's dedupe layout (see lua/dedupe.lua): the
// metas "count:level,level" of time buckets tb and tb-1 ("" for none). The
// sets a call may touch follow from it and the ids' bits, so the caller
// declares them in KEYS.
type ddLayout struct {
	tb        int64
	cur, prev string
}

// ddMaxLevel and ddTarget are dedupe.lua's DEDUPE_MAX_LEVEL (a time bucket
// has at most 2^29 sets) and DEDUPE_TARGET (ids per set a new level is
// sized for); TestScriptKeyNames checks they agree.
const (
	ddMaxLevel = 29
	ddTarget   = 200
)

// ddLevels is the level list of a meta, "" for none.
func ddLevels(meta string) string {
	_, ls, _ := strings.Cut(meta, ":")
	return ls
}

// expect is the level lists a script checks: a time bucket without a meta
// starts at the level that held the previous one at ~200 ids per set.
func (l ddLayout) expect() (cur, prev string) {
	if l.cur != "" {
		return ddLevels(l.cur), ddLevels(l.prev)
	}
	k := 0
	if l.prev != "" {
		n, _, _ := strings.Cut(l.prev, ":")
		c, _ := strconv.ParseInt(n, 10, 64)
		for k < ddMaxLevel && c > int64(ddTarget)<<k {
			k++
		}
	}
	return strconv.Itoa(k), ddLevels(l.prev)
}

// ddKeys are the distinct dedupe sets (under pfx, the subscription's
// ddPrefix) of tb and tb-1 that ids with these bucket bits may be in,
// appended to dst; cur and prev are the layout's expect().
func ddKeys(dst []string, pfx string, tb int64, cur, prev string, bits []int64) []string {
	type level struct {
		t int64
		l int
	}
	var lv []level
	for _, p := range []struct {
		t  int64
		ls string
	}{{tb - 1, prev}, {tb, cur}} {
		if p.ls == "" {
			continue
		}
		for _, x := range strings.Split(p.ls, ",") {
			n, _ := strconv.Atoi(x)
			lv = append(lv, level{p.t, n})
		}
	}
	type set struct {
		level  int
		bucket int64
	}
	seen := make(map[set]bool, len(bits)*len(lv))
	var kb []byte
	for li, x := range lv {
		kb = strconv.AppendInt(append(kb[:0], pfx...), x.t, 10)
		kb = strconv.AppendInt(append(kb, ':'), int64(x.l), 10)
		kb = append(kb, ':')
		n := len(kb)
		for _, b := range bits {
			k := set{li, b % (int64(1) << x.l)}
			if !seen[k] {
				seen[k] = true
				kb = strconv.AppendInt(kb[:n], k.bucket, 10)
				dst = append(dst, string(kb))
			}
		}
	}
	return dst
}

// layouts returns the dedupe layout at tb of each subscription: from the
// last script reply when it was for tb, else read in one pipelined round
// trip.
func (s *Store) layouts(ctx context.Context, subs []string, tb int64) (map[string]ddLayout, error) {
	out := make(map[string]ddLayout, len(subs))
	var read []string
	for _, sub := range subs {
		if v, ok := s.layout.Load(sub); ok && v.(ddLayout).tb == tb {
			out[sub] = v.(ddLayout)
		} else if _, dup := out[sub]; !dup {
			out[sub] = ddLayout{tb: -1}
			read = append(read, sub)
		}
	}
	if len(read) == 0 {
		return out, nil
	}
	pipe := s.rc.Pipeline()
	cmds := make([]*redis.SliceCmd, len(read))
	for i, sub := range read {
		cmds[i] = pipe.HMGet(ctx, s.keys(sub).DedupeMeta, strconv.FormatInt(tb, 10), strconv.FormatInt(tb-1, 10))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, classify(err)
	}
	for i, sub := range read {
		l := ddLayout{tb: tb}
		v := cmds[i].Val()
		if len(v) == 2 {
			l.cur, _ = v[0].(string)
			l.prev, _ = v[1].(string)
		}
		out[sub] = l
	}
	return out, nil
}

// remember keeps a layout a script reported for the next call.
func (s *Store) remember(sub string, l ddLayout) { s.layout.Store(sub, l) }
