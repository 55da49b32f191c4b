package ingest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// HeaderReplayOf is set on an event dlq replay re-submits: the dead letter it
// came from, as <dlq topic>/<partition>/<offset>. A replayed event that fails
// again carries it into its new dead letter.
const HeaderReplayOf = "creditmeter-replay-of"

// Dead-letter pages: DefaultDeadLetterLimit entries unless asked, at most
// MaxDeadLetterLimit.
const (
	DefaultDeadLetterLimit = 50
	MaxDeadLetterLimit     = 500
)

// Position is a record's place in a topic.
type Position struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

func (p Position) String() string { return fmt.Sprintf("%s/%d/%d", p.Topic, p.Partition, p.Offset) }

// DeadLetterRecord is one record of the dead-letter topic, decoded.
type DeadLetterRecord struct {
	DLQ      Position  // where the dead letter is
	Original Position  // where the event was (offset -1 when unknown)
	Time     time.Time // when it was dead-lettered (the record's timestamp)
	Reason   string
	Field    string
	Detail   string
	// TruncatedFrom is the original value's size when the dead letter
	// keeps only a prefix of it (0: the value is whole); such an event
	// cannot be replayed.
	TruncatedFrom int
	ReplayOf      string // HeaderReplayOf, if the event was itself a replay
	// EventID and CustomerID are read from the value when it is a JSON
	// object that has them (empty otherwise).
	EventID, CustomerID string
	// ReplayedAt is when dlq replay re-submitted it (zero: never), if the
	// reader was asked (DeadLetterReader.Replayed).
	ReplayedAt time.Time
	Key, Value []byte
	// Headers are the event's own headers (creditmeter's removed).
	Headers []kafka.Header
}

// DeadLetterReader reads the dead-letter topic. It keeps nothing: each call
// reads the topic (from Since's offset on) as far as its end at the call.
type DeadLetterReader struct {
	Conn  Conn
	Topic string
	// Replayed, if set, fills ReplayedAt of a listed page's entries.
	Replayed func(ctx context.Context, page []*DeadLetterRecord) error
}

// Scan calls fn for every dead letter written at or after since (zero: all
// the topic retains), partition by partition in offset order, up to the end
// of each partition when Scan started.
func (d DeadLetterReader) Scan(ctx context.Context, since time.Time, fn func(*DeadLetterRecord) error) error {
	client := d.Conn.Client(30 * time.Second)
	defer closeIdle(client)
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{d.Topic}})
	if err != nil {
		return &RetryableError{Op: "dead letters: metadata", Err: d.Conn.explain(err)}
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != d.Topic {
			continue
		}
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return nil // no dead letter was ever written
			}
			return fmt.Errorf("dead letters: topic %s: %w", d.Topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	sort.Ints(parts)
	reqs := make([]kafka.OffsetRequest, 0, 3*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{d.Topic: reqs}})
	if err != nil {
		return &RetryableError{Op: "dead letters: offsets", Err: err}
	}
	bounds := map[int][2]int64{}
	for _, p := range lo.Topics[d.Topic] {
		if p.Error != nil {
			return &RetryableError{Op: fmt.Sprintf("dead letters: offsets of %s/%d", d.Topic, p.Partition), Err: p.Error}
		}
		bounds[p.Partition] = [2]int64{p.FirstOffset, p.LastOffset}
	}
	if !since.IsZero() {
		// The broker finds the first offset at or after since: older
		// records are not read at all.
		treqs := make([]kafka.OffsetRequest, 0, len(parts))
		for _, p := range parts {
			treqs = append(treqs, kafka.TimeOffsetOf(p, since))
		}
		to, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{d.Topic: treqs}})
		if err != nil {
			return &RetryableError{Op: "dead letters: offsets by time", Err: err}
		}
		for _, p := range to.Topics[d.Topic] {
			b := bounds[p.Partition]
			if p.Error != nil || len(p.Offsets) == 0 {
				continue // read the whole partition; records are filtered by time
			}
			for off := range p.Offsets {
				if off < 0 { // nothing that recent
					off = b[1]
				}
				b[0] = max(b[0], min(off, b[1]))
			}
			bounds[p.Partition] = b
		}
	}
	for _, p := range parts {
		b := bounds[p]
		if err := d.scanPartition(ctx, client, p, b[0], b[1], since, fn); err != nil {
			return err
		}
	}
	return nil
}

func (d DeadLetterReader) scanPartition(ctx context.Context, client *kafka.Client, p int, from, end int64, since time.Time, fn func(*DeadLetterRecord) error) error {
	empty := 0
	for off := from; off < end; {
		res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: d.Topic, Partition: p, Offset: off,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			return &RetryableError{Op: fmt.Sprintf("dead letters: fetch %s/%d at %d", d.Topic, p, off), Err: err}
		}
		before := off
		for off < end {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("dead letters: read %s/%d at %d: %w", d.Topic, p, off, err)
			}
			if r.Offset < off {
				continue // a batch may start before the offset asked
			}
			if r.Offset >= end {
				break
			}
			off = r.Offset + 1
			if !since.IsZero() && r.Time.Before(since) {
				continue
			}
			rec, err := decodeDeadLetter(d.Topic, p, r)
			if err != nil {
				return err
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if off == before {
			// Nothing at this offset (a gap of control records): the
			// high watermark says whether anything is left.
			if res.HighWatermark <= off {
				return nil
			}
			if empty++; empty > 3 {
				return fmt.Errorf("dead letters: %s/%d: no record readable at offset %d (high watermark %d)", d.Topic, p, off, res.HighWatermark)
			}
			continue
		}
		empty = 0
	}
	return nil
}

func decodeDeadLetter(topic string, p int, r *kafka.Record) (*DeadLetterRecord, error) {
	rec := &DeadLetterRecord{DLQ: Position{Topic: topic, Partition: p, Offset: r.Offset}, Original: Position{Offset: -1}, Time: r.Time.UTC()}
	var err error
	if r.Key != nil {
		if rec.Key, err = protocol.ReadAll(r.Key); err != nil {
			return nil, fmt.Errorf("dead letters: key at %s/%d/%d: %w", topic, p, r.Offset, err)
		}
	}
	if r.Value != nil {
		if rec.Value, err = protocol.ReadAll(r.Value); err != nil {
			return nil, fmt.Errorf("dead letters: value at %s/%d/%d: %w", topic, p, r.Offset, err)
		}
	}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderReason:
			rec.Reason = v
		case HeaderField:
			rec.Field = v
		case HeaderDetail:
			rec.Detail = v
		case HeaderTopic:
			rec.Original.Topic = v
		case HeaderPartition:
			rec.Original.Partition, _ = strconv.Atoi(v)
		case HeaderOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				rec.Original.Offset = n
			}
		case HeaderTruncated:
			rec.TruncatedFrom, _ = strconv.Atoi(v)
		case HeaderReplayOf:
			rec.ReplayOf = v
		default:
			rec.Headers = append(rec.Headers, kafka.Header(h))
		}
	}
	if rec.TruncatedFrom == 0 {
		rec.EventID, rec.CustomerID = eventIDs(rec.Value)
	}
	return rec, nil
}

// eventIDs are the event id and customer id in a dead letter's value, when
// it is a JSON object that has them (creditmeter's event or a CloudEvent).
func eventIDs(value []byte) (id, customer string) {
	var v struct {
		ID         any `json:"id"`
		CustomerID any `json:"customer_id"`
		Subject    any `json:"subject"`
	}
	if json.Unmarshal(value, &v) != nil {
		return "", ""
	}
	s := func(x any) string { t, _ := x.(string); return t }
	customer = s(v.CustomerID)
	if customer == "" {
		customer = s(v.Subject)
	}
	return s(v.ID), customer
}

// DeadLetterQuery selects a page of dead letters, newest first.
type DeadLetterQuery struct {
	Reason string    // only this reason (empty: all)
	Since  time.Time // only dead letters written at or after (zero: all)
	Limit  int       // entries per page (1..MaxDeadLetterLimit; 0: default)
	Cursor string    // NextCursor of the previous page (empty: the newest)
}

// DeadLetterPage is one page of dead letters.
type DeadLetterPage struct {
	// Counts are the dead letters per reason since Since, whatever Reason.
	Counts map[string]int64
	// Total is the number of dead letters the query selects (all pages).
	Total   int64
	Entries []*DeadLetterRecord
	// NextCursor continues after the last entry; empty on the last page.
	NextCursor string
}

// ErrBadCursor is a cursor this reader did not issue.
var ErrBadCursor = errors.New("cursor is not one this server issued")

// cursorKey orders dead letters newest first: by time, then partition and
// offset, descending. A cursor is the key of a page's last entry, so pages
// hold still while new dead letters arrive (they sort before page 1's end).
type cursorKey struct {
	nanos     int64
	partition int
	offset    int64
}

func keyOf(r *DeadLetterRecord) cursorKey {
	return cursorKey{r.Time.UnixNano(), r.DLQ.Partition, r.DLQ.Offset}
}

// before: a sorts before b (a is newer).
func (a cursorKey) before(b cursorKey) bool {
	if a.nanos != b.nanos {
		return a.nanos > b.nanos
	}
	if a.partition != b.partition {
		return a.partition > b.partition
	}
	return a.offset > b.offset
}

func (k cursorKey) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("d1.%d.%d.%d", k.nanos, k.partition, k.offset)))
}

func decodeCursor(s string) (cursorKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursorKey{}, ErrBadCursor
	}
	f := strings.Split(string(b), ".")
	if len(f) != 4 || f[0] != "d1" {
		return cursorKey{}, ErrBadCursor
	}
	var k cursorKey
	var e1, e2, e3 error
	k.nanos, e1 = strconv.ParseInt(f[1], 10, 64)
	k.partition, e2 = strconv.Atoi(f[2])
	k.offset, e3 = strconv.ParseInt(f[3], 10, 64)
	if e1 != nil || e2 != nil || e3 != nil {
		return cursorKey{}, ErrBadCursor
	}
	return k, nil
}

// List reads the topic once and returns the page q selects, holding at most
// a few pages of entries in memory whatever the topic's size.
func (d DeadLetterReader) List(ctx context.Context, q DeadLetterQuery) (*DeadLetterPage, error) {
	limit := q.Limit
	if limit == 0 {
		limit = DefaultDeadLetterLimit
	}
	if limit < 1 || limit > MaxDeadLetterLimit {
		return nil, fmt.Errorf("limit must be between 1 and %d", MaxDeadLetterLimit)
	}
	var after *cursorKey
	if q.Cursor != "" {
		k, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, err
		}
		after = &k
	}
	page := &DeadLetterPage{Counts: map[string]int64{}}
	var keep []*DeadLetterRecord
	trim := func() {
		sort.Slice(keep, func(i, j int) bool { return keyOf(keep[i]).before(keyOf(keep[j])) })
		if len(keep) > limit+1 {
			keep = keep[:limit+1]
		}
	}
	err := d.Scan(ctx, q.Since, func(r *DeadLetterRecord) error {
		page.Counts[r.Reason]++
		if q.Reason != "" && r.Reason != q.Reason {
			return nil
		}
		page.Total++
		if after != nil && !after.before(keyOf(r)) {
			return nil
		}
		r.Value = nil // a listed entry does not carry the event
		keep = append(keep, r)
		if len(keep) >= 4*(limit+1) {
			trim()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	trim()
	if len(keep) > limit {
		keep = keep[:limit]
		page.NextCursor = keyOf(keep[limit-1]).encode()
	}
	page.Entries = keep
	if d.Replayed != nil && len(keep) > 0 {
		if err := d.Replayed(ctx, keep); err != nil {
			return nil, err
		}
	}
	return page, nil
}
