package bench

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/credit"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// GenConfig shapes a stream of AI-agent usage events.
type GenConfig struct {
	Customers []string  // customer ids; activity is Zipf-distributed over them
	ZipfS     float64   // Zipf exponent s > 1 (default 1.1: a few customers dominate)
	DupRate   float64   // share of sends that repeat a recent event (same id and body): a producer retry
	LateRate  float64   // share of events whose timestamp is up to 10 minutes old (within the grace window)
	NotBefore time.Time // late events are not older than this (the subscriptions' start)
	LLMShare  float64   // share of llm.call events (SUM(tokens)); the rest are email.sent (COUNT)
	Seed      uint64
	Tag       string // distinguishes the ids of one stream from another's
}

// Gen produces events. Each event id carries the time it was generated
// (microseconds since the epoch, base 36, after the last '-'), so the balance
// side can measure freshness without shared state. Not safe for concurrent use.
type Gen struct {
	c      GenConfig
	r      *rand.Rand
	zipf   *rand.Zipf
	seq    uint64
	recent []kafka.Message // ring of recent sends, the pool of duplicates
	ri     int
	ev     rating.Event
	dims   [2]rating.Dim

	Events, Dups, Late int64 // counts of what was generated
	// Want is what the unique events must draw, by customer index: the
	// exactly-once check compares the stores with it.
	Want []Usage
}

// Usage is a count of unique events and the credits they are rated at.
type Usage struct {
	Events int64
	Micro  credit.Amount
}

// The seed plan's rates (internal/seed PlanJSON): 1 email = 1 AIT,
// 1 token = 0.001 AIT. Kept apart from the rater so the check is independent.
const (
	emailMicro = credit.Unit
	tokenMicro = credit.Unit / 1000
)

var models = []string{"gpt-large", "claude-mid", "small-fast"}

// NewGen starts a stream.
func NewGen(c GenConfig) *Gen {
	if c.ZipfS <= 1 {
		c.ZipfS = 1.1
	}
	if c.LLMShare == 0 {
		c.LLMShare = 0.4
	}
	r := rand.New(rand.NewPCG(c.Seed, 0x5eed))
	return &Gen{c: c, r: r, zipf: rand.NewZipf(r, c.ZipfS, 1, uint64(len(c.Customers)-1)), recent: make([]kafka.Message, 0, 4096),
		Want: make([]Usage, len(c.Customers))}
}

// Next appends one message to dst: a new event or, at DupRate, a repeat.
func (g *Gen) Next(dst []kafka.Message, now time.Time) []kafka.Message {
	if len(g.recent) > 0 && g.r.Float64() < g.c.DupRate {
		g.Dups++
		return append(dst, g.recent[g.r.IntN(len(g.recent))])
	}
	g.seq++
	g.Events++
	// Customers are shuffled by a fixed permutation so the hot ones are not
	// the first created.
	ci := int(g.zipf.Uint64()*2654435761) % len(g.c.Customers)
	cust := g.c.Customers[ci]
	ts := now
	if g.c.LateRate > 0 && g.r.Float64() < g.c.LateRate {
		g.Late++
		// 1 to 10 minutes late, but never before the subscriptions began.
		span := min(10*time.Minute, now.Sub(g.c.NotBefore)-time.Second)
		if span > time.Second {
			ts = now.Add(-span/10 - time.Duration(g.r.Int64N(int64(span*9/10))))
		}
	}
	id := make([]byte, 0, 40)
	id = append(id, g.c.Tag...)
	id = append(id, '-')
	id = strconv.AppendUint(id, g.seq, 36)
	id = append(id, '-')
	id = strconv.AppendInt(id, now.UnixMicro(), 36)
	g.ev = rating.Event{ID: string(id), CustomerID: cust, Timestamp: ts}
	if g.r.Float64() < g.c.LLMShare {
		g.ev.Name = "llm.call"
		// Heavy-tailed token counts: most calls are small, a few large.
		tokens := int64(1 + g.r.ExpFloat64()*800)
		g.dims[0] = rating.Dim{Key: "tokens", Num: rating.NumberOf(tokens), IsNum: true}
		g.dims[1] = rating.Dim{Key: "model", Str: models[g.r.IntN(len(models))]}
		g.ev.Dims = g.dims[:]
		g.Want[ci].Micro += credit.Amount(tokens) * tokenMicro
	} else {
		g.ev.Name = "email.sent"
		g.dims[0] = rating.Dim{Key: "model", Str: models[g.r.IntN(len(models))]}
		g.ev.Dims = g.dims[:1]
		g.Want[ci].Micro += emailMicro
	}
	g.Want[ci].Events++
	m := kafka.Message{Key: []byte(cust), Value: ingest.AppendJSON(make([]byte, 0, 192), &g.ev)}
	if len(g.recent) < cap(g.recent) {
		g.recent = append(g.recent, m)
	} else {
		g.recent[g.ri] = m
		g.ri = (g.ri + 1) % len(g.recent)
	}
	return append(dst, m)
}

// ProducedAt reads the generation time out of an event id made by Gen.
func ProducedAt(id string) (time.Time, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(id[i+1:], 36, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}
