package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/creditmeter/creditmeter/rating"
)

// Limits of an event, so one bad producer cannot blow up memory.
const (
	MaxIDLen      = 256  // id, customer_id, subscription_id, event_name
	MaxDims       = 64   // dimensions per event
	MaxDimKeyLen  = 128  // a dimension's name
	MaxDimStrLen  = 1024 // a dimension's string value
	MaxEventBytes = 64 << 10
)

// DefaultMaxFutureSkew is how far ahead of the engine's clock an event's
// timestamp may be (producers' clocks drift); beyond it the event is invalid.
const DefaultMaxFutureSkew = 5 * time.Minute

// minTime is the earliest timestamp accepted: the balance store and the
// archive count time from 1970.
var minTime = time.Unix(0, 0)

// CheckFuture refuses an event stamped more than maxSkew ahead of now: its
// credits would be drawn now but its time would put it in a later period.
func CheckFuture(ts, now time.Time, maxSkew time.Duration) error {
	if ts.Sub(now) > maxSkew {
		return invalid("timestamp", "%s is more than %s ahead of now (%s)", ts.UTC().Format(time.RFC3339Nano), maxSkew, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// EventError says why a message is not a valid event; Reason is
// ReasonMalformed or ReasonInvalid and Field names the JSON field at fault.
type EventError struct {
	Reason string
	Field  string
	Detail string
}

func (e *EventError) Error() string {
	if e.Field == "" {
		return e.Reason + ": " + e.Detail
	}
	return e.Reason + ": " + e.Field + ": " + e.Detail
}

// ErrEvent matches every *EventError with errors.Is.
var ErrEvent = errors.New("ingest: invalid event")

// Is makes errors.Is(err, ErrEvent) true.
func (e *EventError) Is(target error) bool { return target == ErrEvent }

func malformed(format string, args ...any) error {
	return &EventError{Reason: ReasonMalformed, Detail: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) error {
	return &EventError{Reason: ReasonInvalid, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Decode parses one event of the schema in the README into ev, reusing ev's
// Dims. It is strict: unknown or repeated fields, a missing required field, a
// bad timestamp or a dimension that is neither a string nor a number are
// errors. The strings of ev point into b, so b must not change while ev is in
// use; in exchange decoding allocates nothing for an event without escapes.
func Decode(b []byte, ev *rating.Event) error { return decode(b, ev, false) }

// errForeign is decode's answer, when asked, for a member the schema does
// not know: cheaper than the error when the event may be a CloudEvent.
var errForeign = errors.New("ingest: not creditmeter's event schema")

func decode(b []byte, ev *rating.Event, foreign bool) error {
	*ev = rating.Event{Dims: ev.Dims[:0]}
	if len(b) > MaxEventBytes {
		return malformed("event of %d bytes exceeds %d", len(b), MaxEventBytes)
	}
	d := decoder{b: b}
	d.ws()
	if !d.eat('{') {
		return malformed("not a JSON object")
	}
	const (
		seenID = 1 << iota
		seenCustomer
		seenSub
		seenName
		seenTS
		seenDims
	)
	seen := 0
	d.ws()
	if !d.eat('}') {
		for {
			d.ws()
			key, err := d.str()
			if err != nil {
				return err
			}
			d.ws()
			if !d.eat(':') {
				return malformed("expected ':' after %q at byte %d", key, d.i)
			}
			d.ws()
			var bit int
			switch key {
			case "id":
				bit = seenID
			case "customer_id":
				bit = seenCustomer
			case "subscription_id":
				bit = seenSub
			case "event_name":
				bit = seenName
			case "timestamp":
				bit = seenTS
			case "dimensions":
				bit = seenDims
			default:
				if foreign {
					return errForeign
				}
				return invalid(string(key), "unknown field")
			}
			if seen&bit != 0 {
				return invalid(key, "field given twice")
			}
			seen |= bit
			switch key {
			case "dimensions":
				if err := d.dims(ev); err != nil {
					return err
				}
			case "subscription_id":
				if d.null() {
					break
				}
				if ev.SubscriptionID, err = d.idField(key); err != nil {
					return err
				}
			case "timestamp":
				s, err := d.strField(key)
				if err != nil {
					return err
				}
				ts, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					return invalid(key, "not an RFC 3339 time: %q", s)
				}
				if ts.Before(minTime) {
					return invalid(key, "%q is before 1970", s)
				}
				ev.Timestamp = ts
			default:
				v, err := d.idField(key)
				if err != nil {
					return err
				}
				switch key {
				case "id":
					ev.ID = v
				case "customer_id":
					ev.CustomerID = v
				case "event_name":
					ev.Name = v
				}
			}
			d.ws()
			if d.eat(',') {
				continue
			}
			if d.eat('}') {
				break
			}
			return malformed("expected ',' or '}' at byte %d", d.i)
		}
	}
	d.ws()
	if d.i != len(d.b) {
		return malformed("trailing data at byte %d", d.i)
	}
	for _, f := range [...]struct {
		bit  int
		name string
	}{{seenID, "id"}, {seenCustomer, "customer_id"}, {seenName, "event_name"}, {seenTS, "timestamp"}} {
		if seen&f.bit == 0 {
			return invalid(f.name, "required")
		}
	}
	return nil
}

type decoder struct {
	b []byte
	i int
	// data names the dimensions object in errors: "dimensions", or "data"
	// for a CloudEvent.
	data string
}

func (d *decoder) dimsField() string {
	if d.data == "" {
		return "dimensions"
	}
	return d.data
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) null() bool {
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// str reads a JSON string. Without escapes it is a view of b; with escapes it
// is unescaped into a new string.
func (d *decoder) str() (string, error) {
	if !d.eat('"') {
		return "", malformed("expected a string at byte %d", d.i)
	}
	start := d.i
	escaped, high := false, false
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			raw := d.b[start:d.i]
			d.i++
			if high && !utf8.Valid(raw) {
				return "", malformed("invalid UTF-8 in string at byte %d", start)
			}
			if !escaped {
				if len(raw) == 0 {
					return "", nil
				}
				return unsafe.String(&raw[0], len(raw)), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start-1:d.i], &s); err != nil {
				return "", malformed("bad string escape at byte %d", start)
			}
			return s, nil
		case c == '\\':
			escaped = true
			d.i += 2
		case c < 0x20:
			return "", malformed("control character in string at byte %d", d.i)
		case c >= 0x80:
			high = true
			d.i++
		default:
			d.i++
		}
	}
	return "", malformed("unterminated string")
}

func (d *decoder) strField(field string) (string, error) {
	if d.i < len(d.b) && d.b[d.i] != '"' {
		return "", invalid(field, "must be a string")
	}
	return d.str()
}

// idField reads a required, non-empty, bounded string.
func (d *decoder) idField(field string) (string, error) {
	s, err := d.strField(field)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", invalid(field, "must not be empty")
	}
	if len(s) > MaxIDLen {
		return "", invalid(field, "longer than %d bytes", MaxIDLen)
	}
	return s, nil
}

func (d *decoder) dims(ev *rating.Event) error {
	if d.null() {
		return nil
	}
	if !d.eat('{') {
		return invalid(d.dimsField(), "must be an object")
	}
	d.ws()
	if d.eat('}') {
		return nil
	}
	for {
		d.ws()
		key, err := d.str()
		if err != nil {
			return err
		}
		if key == "" || len(key) > MaxDimKeyLen {
			return invalid(d.dimsField(), "dimension names must be 1 to %d bytes", MaxDimKeyLen)
		}
		if _, dup := ev.Dim(key); dup {
			return invalid(d.dimsField()+"."+key, "dimension given twice")
		}
		if len(ev.Dims) == MaxDims {
			return invalid(d.dimsField(), "more than %d dimensions", MaxDims)
		}
		d.ws()
		if !d.eat(':') {
			return malformed("expected ':' at byte %d", d.i)
		}
		d.ws()
		dim := rating.Dim{Key: key}
		if d.i >= len(d.b) {
			return malformed("unexpected end of event")
		}
		switch c := d.b[d.i]; {
		case c == '"':
			if dim.Str, err = d.str(); err != nil {
				return err
			}
			if len(dim.Str) > MaxDimStrLen {
				return invalid(d.dimsField()+"."+key, "string longer than %d bytes", MaxDimStrLen)
			}
		case c == '-' || (c >= '0' && c <= '9'):
			start := d.i
			if !d.number() {
				return malformed("bad JSON number at byte %d", start)
			}
			n, err := rating.ParseNumberBytes(d.b[start:d.i])
			if err != nil {
				return invalid(d.dimsField()+"."+key, "number %s is not exact within 18 digits", d.b[start:d.i])
			}
			dim.Num, dim.IsNum = n, true
		default:
			return invalid(d.dimsField()+"."+key, "must be a string or a number")
		}
		ev.Dims = append(ev.Dims, dim)
		d.ws()
		if d.eat(',') {
			continue
		}
		if d.eat('}') {
			return nil
		}
		return malformed("expected ',' or '}' in dimensions at byte %d", d.i)
	}
}

// number scans a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() bool {
	d.eat('-')
	switch {
	case d.eat('0'):
	case d.digits() == 0:
		return false
	}
	if d.eat('.') && d.digits() == 0 {
		return false
	}
	if d.eat('e') || d.eat('E') {
		if !d.eat('+') {
			d.eat('-')
		}
		if d.digits() == 0 {
			return false
		}
	}
	return true
}

func (d *decoder) digits() int {
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

// AppendJSON appends ev as the event JSON of the schema.
func AppendJSON(dst []byte, ev *rating.Event) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, ev.ID)
	dst = append(dst, `,"customer_id":`...)
	dst = appendString(dst, ev.CustomerID)
	if ev.SubscriptionID != "" {
		dst = append(dst, `,"subscription_id":`...)
		dst = appendString(dst, ev.SubscriptionID)
	}
	dst = append(dst, `,"event_name":`...)
	dst = appendString(dst, ev.Name)
	dst = append(dst, `,"timestamp":"`...)
	dst = ev.Timestamp.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if len(ev.Dims) > 0 {
		dst = append(dst, `,"dimensions":{`...)
		for i, dm := range ev.Dims {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, dm.Key)
			dst = append(dst, ':')
			if dm.IsNum {
				dst = append(dst, dm.Num.String()...)
			} else {
				dst = appendString(dst, dm.Str)
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
