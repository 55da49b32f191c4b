package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay the dead-letter topic",
		Args:  cobra.NoArgs,
	}
	cfg := config.Default()
	withConfig(cmd, &cfg) // --log-* like every command
	cmd.AddCommand(newDLQReplayCmd())
	return cmd
}

// replayBatch dead letters are produced, then marked replayed, together.
const replayBatch = 500

// replayLockTTL: a replay that dies leaves the lock for this long at most.
const replayLockTTL = 2 * time.Minute

// maxListed still-failing dead letters are printed one per line.
const maxListed = 50

func newDLQReplayCmd() *cobra.Command {
	cfg := config.Default()
	var o replayOptions
	var since string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "replay [--reason R] [--since T] [--dry-run] [--json]",
		Short: "Re-submit dead letters to the usage topic after a catalog fix, each once",
		Long: `replay reads the dead-letter topic (--kafka-dlq-topic) and re-submits to the
usage topic (--kafka-topic) every dead letter that the current catalog now
accepts: it is decoded and rated as the engine would, and one that would
fail again is not sent but reported under "still failing" with its reason.
A dead letter whose value was cut to the broker's limit cannot be replayed.

The event goes back with its key, value and headers (creditmeter's own
removed) plus creditmeter-replay-of naming the dead letter, so its original
event id keeps the engine's duplicate check working. Each dead letter
replayed is recorded in Redis (<prefix>dlq-replayed:<dlq topic>, one field
per DLQ partition/offset) once the broker has the event: a second replay
skips it, so replaying twice charges once. Two replays do not run at once
(a Redis lock, <prefix>dlq-replay-lock).

--since takes an RFC 3339 time or a duration back from now (24h);
--dry-run reports what would be replayed and sends and records nothing.
It prints the counts by reason of what it replayed, skipped as already
replayed, and what still fails (one line per dead letter, the first 50).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.since, err = parseSince(since, time.Now()); err != nil {
				return err
			}
			kconn, err := cfg.Kafka.Conn()
			if err != nil {
				return err
			}
			rc, _, err := config.NewRedisClient(cfg.Redis, config.RedisTuning{})
			if err != nil {
				return err
			}
			defer rc.Close()
			o.reader = ingest.DeadLetterReader{Conn: kconn, Topic: cfg.Kafka.DLQTopic}
			o.rc = rc
			if !o.dryRun {
				w := ingest.NewWriters(kconn.Brokers, cfg.Kafka.Topic, cfg.Kafka.DLQTopic, ingest.WithConn(kconn),
					ingest.MaxMessageBytes(cfg.Kafka.MaxMessageBytes))
				defer w.Close()
				o.publish = w.PublishRaw
			}
			rep, err := replay(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			rep.print(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.reason, "reason", "", "replay only dead letters of this reason (e.g. unknown_customer)")
	f.StringVar(&since, "since", "", "replay only dead letters written at or after this time (RFC 3339) or this long ago (e.g. 24h)")
	f.BoolVar(&o.dryRun, "dry-run", false, "report what would be replayed; send and record nothing")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&o.prefix, "redis-key-prefix", "creditmeter:", "prefix of every Redis key creditmeter writes (serve's)")
	f.DurationVar(&o.grace, "grace-window", 15*time.Minute, "serve's --grace-window, to rate late events as the engine does")
	withConfig(cmd, &cfg, config.GroupKafka, config.GroupRedis)
	return cmd
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-11-30T12:00:00Z) or a positive duration (24h)", s)
}

type replayOptions struct {
	reader  ingest.DeadLetterReader
	rc      redis.UniversalClient
	publish func(context.Context, ...kafka.Message) error // nil: dry run
	prefix  string
	reason  string
	since   time.Time
	grace   time.Duration
	dryRun  bool
}

// replayReport is what a replay did, by reason of the dead letters.
type replayReport struct {
	DryRun       bool            `json:"dry_run"`
	Read         int             `json:"read"` // dead letters selected by --reason and --since
	Replayed     map[string]int  `json:"replayed"`
	AlreadyDone  map[string]int  `json:"already_replayed"`
	StillFailing map[string]int  `json:"still_failing"`
	Failing      []failingLetter `json:"failing"` // the first maxListed
}

type failingLetter struct {
	DeadLetter string `json:"dead_letter"` // dlq topic/partition/offset
	Reason     string `json:"reason"`      // why it was dead-lettered
	Now        string `json:"now"`         // why it fails today
	Field      string `json:"field,omitempty"`
	Detail     string `json:"detail"`
	EventID    string `json:"event_id,omitempty"`
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func byReason(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func (r *replayReport) print(w io.Writer) {
	verb := "replayed"
	if r.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(w, "dead letters selected: %d\n", r.Read)
	fmt.Fprintf(w, "%s: %d%s\n", verb, sum(r.Replayed), byReason(r.Replayed))
	fmt.Fprintf(w, "already replayed: %d%s\n", sum(r.AlreadyDone), byReason(r.AlreadyDone))
	fmt.Fprintf(w, "still failing: %d%s\n", sum(r.StillFailing), byReason(r.StillFailing))
	for _, f := range r.Failing {
		fmt.Fprintf(w, "  %s %s → %s", f.DeadLetter, f.Reason, f.Now)
		if f.Field != "" {
			fmt.Fprintf(w, " [%s]", f.Field)
		}
		if f.EventID != "" {
			fmt.Fprintf(w, " event %s", f.EventID)
		}
		fmt.Fprintf(w, ": %s\n", f.Detail)
	}
	if n := sum(r.StillFailing) - len(r.Failing); n > 0 {
		fmt.Fprintf(w, "  … and %d more\n", n)
	}
}

func replayedKey(prefix, topic string) string { return prefix + "dlq-replayed:" + topic }

func replayField(p ingest.Position) string { return fmt.Sprintf("%d/%d", p.Partition, p.Offset) }

// replay re-submits the dead letters o selects that the catalog now
// accepts, each at most once (see the command's help).
func replay(ctx context.Context, o replayOptions) (*replayReport, error) {
	rep := &replayReport{DryRun: o.publish == nil, Replayed: map[string]int{}, AlreadyDone: map[string]int{},
		StillFailing: map[string]int{}, Failing: []failingLetter{}}
	cat, err := catalogstore.New(o.rc, o.prefix)
	if err != nil {
		return nil, err
	}
	rater := rating.NewRater(nil)
	rater.SetGraceWindow(o.grace)
	if _, err := cat.Refresh(ctx, rater); err != nil {
		return nil, fmt.Errorf("load the catalog: %w", err)
	}
	done := replayedKey(o.prefix, o.reader.Topic)
	if publishing := o.publish != nil; publishing {
		lock := o.prefix + "dlq-replay-lock"
		owner := fmt.Sprintf("%d", time.Now().UnixNano())
		ok, err := o.rc.SetNX(ctx, lock, owner, replayLockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("replay lock: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("another dlq replay holds %s (it expires within %s of its last batch)", lock, replayLockTTL)
		}
		defer func() {
			if v, _ := o.rc.Get(context.WithoutCancel(ctx), lock).Result(); v == owner {
				o.rc.Del(context.WithoutCancel(ctx), lock)
			}
		}()
	}

	var batch []*ingest.DeadLetterRecord
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		defer func() { batch = batch[:0] }()
		fields := make([]string, len(batch))
		for i, d := range batch {
			fields[i] = replayField(d.DLQ)
		}
		marks, err := o.rc.HMGet(ctx, done, fields...).Result()
		if err != nil {
			return fmt.Errorf("read replay records: %w", err)
		}
		var msgs []kafka.Message
		var sent []*ingest.DeadLetterRecord
		for i, d := range batch {
			if marks[i] != nil {
				rep.AlreadyDone[d.Reason]++
				continue
			}
			rep.Replayed[d.Reason]++
			h := append(append([]kafka.Header(nil), d.Headers...), kafka.Header{Key: ingest.HeaderReplayOf, Value: []byte(d.DLQ.String())})
			msgs = append(msgs, kafka.Message{Key: d.Key, Value: d.Value, Headers: h})
			sent = append(sent, d)
		}
		if o.publish == nil || len(msgs) == 0 {
			return nil
		}
		if err := o.publish(ctx, msgs...); err != nil {
			return fmt.Errorf("re-submit %d events: %w", len(msgs), err)
		}
		// Recorded once the broker has them: a crash in between sends them
		// again on the next replay, and the engine's duplicate check (by
		// event id, within --dedupe-window) absorbs that.
		now := time.Now().UTC().Format(time.RFC3339Nano)
		vals := make([]any, 0, 2*len(sent))
		for _, d := range sent {
			vals = append(vals, replayField(d.DLQ), now+" "+d.EventID)
		}
		if err := o.rc.HSet(ctx, done, vals...).Err(); err != nil {
			return fmt.Errorf("record %d replayed dead letters: %w", len(sent), err)
		}
		return o.rc.PExpire(ctx, o.prefix+"dlq-replay-lock", replayLockTTL).Err()
	}

	var ev rating.Event
	var lines []rating.Line
	err = o.reader.Scan(ctx, o.since, func(d *ingest.DeadLetterRecord) error {
		if o.reason != "" && d.Reason != o.reason {
			return nil
		}
		rep.Read++
		why, field, detail := "", "", ""
		switch {
		case d.TruncatedFrom > 0:
			why, detail = "truncated", fmt.Sprintf("the dead letter keeps %d of the event's %d bytes", len(d.Value), d.TruncatedFrom)
		default:
			if err := ingest.DecodeMessage(&kafka.Message{Value: d.Value, Headers: d.Headers}, &ev); err != nil { // as the engine reads it
				why, detail = ingest.ReasonMalformed, err.Error()
				if ee := (*ingest.EventError)(nil); errors.As(err, &ee) {
					why, field, detail = ee.Reason, ee.Field, ee.Detail
				}
				break
			}
			if err := ingest.CheckFuture(ev.Timestamp, time.Now(), ingest.DefaultMaxFutureSkew); err != nil {
				why, field, detail = ingest.ReasonInvalid, "timestamp", err.Error()
				break
			}
			var rerr error
			lines, rerr = rater.Rate(&ev, lines[:0])
			if rerr != nil {
				why, field, detail = rateFailure(ctx, cat, &ev, rerr)
			}
		}
		if why != "" {
			rep.StillFailing[d.Reason]++
			if len(rep.Failing) < maxListed {
				rep.Failing = append(rep.Failing, failingLetter{DeadLetter: d.DLQ.String(), Reason: d.Reason, Now: why,
					Field: field, Detail: detail, EventID: d.EventID})
			}
			return nil
		}
		batch = append(batch, d)
		if len(batch) >= replayBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return rep, err
	}
	return rep, nil
}

// rateFailure names a rating failure with the engine's dead-letter reasons.
func rateFailure(ctx context.Context, cat *catalogstore.Store, ev *rating.Event, err error) (reason, field, detail string) {
	reason = ingest.RateReason(err)
	if reason == ingest.ReasonNoSubscription {
		if _, cerr := cat.Customer(ctx, ev.CustomerID); errors.Is(cerr, catalogstore.ErrNotFound) {
			reason = ingest.ReasonUnknownCust
		}
	}
	return reason, ingest.ReasonField(reason), err.Error()
}

// replayedAt fills ReplayedAt of listed dead letters from dlq replay's
// records.
func replayedAt(rc redis.UniversalClient, prefix, topic string) func(context.Context, []*ingest.DeadLetterRecord) error {
	key := replayedKey(prefix, topic)
	return func(ctx context.Context, page []*ingest.DeadLetterRecord) error {
		fields := make([]string, len(page))
		for i, d := range page {
			fields[i] = replayField(d.DLQ)
		}
		marks, err := rc.HMGet(ctx, key, fields...).Result()
		if err != nil {
			return &ingest.RetryableError{Op: "read replay records", Err: err}
		}
		for i, m := range marks {
			s, _ := m.(string)
			at, _, _ := strings.Cut(s, " ")
			if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
				page[i].ReplayedAt = t
			}
		}
		return nil
	}
}
