package ingest

import (
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/rating"
)

// CloudEvents 1.0 in JSON, structured (one JSON object) or binary (Kafka
// ce_* headers, data in the message value). The mapping onto creditmeter's
// event is the README's "CloudEvents" table:
//
//	specversion "1.0" (else invalid)   type → event_name   subject → customer_id
//	source + "|" + id → id             time → timestamp    data → dimensions
//	subscriptionid (extension) → subscription_id
//
// The idempotency key is source and id together because the CloudEvents spec
// makes only that pair unique ("source + id MUST be unique"): two producers
// may both number their events 1, 2, 3. '|' cannot appear in a
// URI-reference, so the key splits back unambiguously.
const (
	CloudEventsSpecVersion     = "1.0"
	ContentTypeCloudEvent      = "application/cloudevents+json"
	ContentTypeCloudEventBatch = "application/cloudevents-batch+json"
	// MaxExtensions is how many extension attributes an event may carry.
	MaxExtensions = 32
)

// DecodeMessage decodes a Kafka message into ev: a CloudEvent in binary
// mode (a ce_specversion header), a structured CloudEvent (content-type
// application/cloudevents+json, or a JSON object with a specversion
// attribute), else creditmeter's own event JSON. Strings of ev point into
// m's value and headers. Creditmeter's own JSON decodes allocation-free.
func DecodeMessage(m *kafka.Message, ev *rating.Event) error {
	binary, ct := false, ""
	for i := range m.Headers {
		switch h := &m.Headers[i]; h.Key {
		case "ce_specversion":
			binary = true
		case "content-type":
			ct = view(h.Value)
		}
	}
	// The Kafka protocol binding: a content-type of the CloudEvents format
	// means structured mode; otherwise ce_specversion means binary mode.
	switch {
	case ct != "" && mediaTypeIs(ct, ContentTypeCloudEvent):
		return DecodeCloudEvent(m.Value, ev)
	case ct != "" && mediaTypeIs(ct, ContentTypeCloudEventBatch):
		*ev = rating.Event{Dims: ev.Dims[:0]}
		return invalid("content-type", "a CloudEvents batch is for HTTP; send one event per Kafka message")
	case binary:
		return DecodeCloudEventBinary(m.Headers, m.Value, ev)
	}
	return DecodeAny(m.Value, ev)
}

// DecodeAny decodes creditmeter's event JSON or, when the object has a
// specversion member, a structured CloudEvent. Only an event that fails as
// creditmeter's JSON is looked at twice, so the hot path pays nothing.
func DecodeAny(b []byte, ev *rating.Event) error {
	err := decode(b, ev, true)
	switch {
	case err == nil:
		return nil
	case len(b) <= MaxEventBytes && hasMember(b, "specversion"):
		return DecodeCloudEvent(b, ev)
	case err == errForeign:
		return Decode(b, ev)
	}
	return err
}

// DecodeCloudEvent decodes one structured-mode CloudEvent (JSON event
// format) into ev. Strict: a repeated attribute, a top-level member that is
// neither a CloudEvents attribute nor a valid extension name (lowercase
// letters and digits, so creditmeter field names such as customer_id are
// refused), an object or array as an extension value, data that is not an
// object of string/number values, and data_base64 are errors. Extensions
// other than subscriptionid are accepted and ignored.
func DecodeCloudEvent(b []byte, ev *rating.Event) error {
	*ev = rating.Event{Dims: ev.Dims[:0]}
	if len(b) > MaxEventBytes {
		return malformed("event of %d bytes exceeds %d", len(b), MaxEventBytes)
	}
	d := decoder{b: b, data: "data"}
	d.ws()
	if !d.eat('{') {
		return malformed("not a JSON object")
	}
	var a ceAttrs
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
			switch {
			case key == "data":
				if a.seen&ceData != 0 {
					return invalid(key, "attribute given twice")
				}
				a.seen |= ceData
				if err := d.dims(ev); err != nil {
					return err
				}
			case key == "data_base64":
				return invalid(key, "binary data is not supported; send data as a JSON object of dimensions")
			case d.null():
				// An attribute whose value is null is absent.
			case d.i < len(d.b) && d.b[d.i] == '"':
				s, err := d.str()
				if err != nil {
					return err
				}
				if err := a.set(key, s); err != nil {
					return err
				}
			default:
				if known(key) {
					return invalid(key, "must be a string")
				}
				if err := a.extension(key); err != nil {
					return err
				}
				if !d.scalar() {
					if d.i < len(d.b) && (d.b[d.i] == '{' || d.b[d.i] == '[') {
						return invalid(key, "an extension attribute must be a string, number or boolean")
					}
					return malformed("bad JSON value at byte %d", d.i)
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
	return a.finish(ev)
}

// DecodeCloudEventBinary decodes a binary-mode CloudEvent of the Kafka
// protocol binding: attributes in ce_* headers (UTF-8 strings), the data's
// media type in content-type (JSON or absent), the data, an object of
// dimensions, in value (empty: none). Other headers are ignored. Errors name
// the header (ce_subject) or data.
func DecodeCloudEventBinary(headers []kafka.Header, value []byte, ev *rating.Event) error {
	*ev = rating.Event{Dims: ev.Dims[:0]}
	if len(value) > MaxEventBytes {
		return malformed("event of %d bytes exceeds %d", len(value), MaxEventBytes)
	}
	a := ceAttrs{prefix: "ce_"}
	for i := range headers {
		h := &headers[i]
		name, ok := strings.CutPrefix(h.Key, "ce_")
		if !ok {
			if h.Key == "content-type" {
				if a.seen&ceContentType != 0 {
					return invalid(h.Key, "header given twice")
				}
				a.seen |= ceContentType
				a.contentType = view(h.Value)
			}
			continue
		}
		switch name {
		case "datacontenttype":
			return invalid(h.Key, "in binary mode the data's media type is the content-type header")
		case "data":
			return invalid(h.Key, "in binary mode the data is the message value")
		}
		if len(h.Value) > MaxDimStrLen || !utf8.Valid(h.Value) {
			return invalid(h.Key, "must be a UTF-8 string of at most %d bytes", MaxDimStrLen)
		}
		if known(name) {
			if err := a.set(name, view(h.Value)); err != nil {
				return err
			}
		} else if err := a.extension(name); err != nil {
			return err
		}
	}
	if err := a.check(); err != nil {
		return err
	}
	d := decoder{b: value, data: "data"}
	d.ws()
	if d.i < len(d.b) {
		if err := d.dims(ev); err != nil {
			return err
		}
		d.ws()
		if d.i != len(d.b) {
			return malformed("trailing data at byte %d", d.i)
		}
	}
	return a.finish(ev)
}

// Attribute bits of ceAttrs.seen.
const (
	ceSpec = 1 << iota
	ceID
	ceSource
	ceType
	ceSubject
	ceTime
	ceContentType
	ceSchema
	ceSubscription
	ceData
)

// ceAttrs collects an event's attributes as views of its bytes.
type ceAttrs struct {
	prefix                                  string // of field names: "" or "ce_"
	spec, id, source, typ, subject, ts, sub string
	contentType                             string
	seen                                    int
	ext                                     [MaxExtensions]string
	next                                    int
}

func known(name string) bool { return attrBit(name) != 0 }

func attrBit(name string) int {
	switch name {
	case "specversion":
		return ceSpec
	case "id":
		return ceID
	case "source":
		return ceSource
	case "type":
		return ceType
	case "subject":
		return ceSubject
	case "time":
		return ceTime
	case "datacontenttype":
		return ceContentType
	case "dataschema":
		return ceSchema
	case "subscriptionid":
		return ceSubscription
	}
	return 0
}

func (a *ceAttrs) field(name string) string {
	if a.prefix == "" {
		return name
	}
	return a.prefix + name
}

// set records a string attribute, or an extension's name.
func (a *ceAttrs) set(name, v string) error {
	bit := attrBit(name)
	if bit == 0 {
		return a.extension(name)
	}
	if a.seen&bit != 0 {
		return invalid(a.field(name), "attribute given twice")
	}
	a.seen |= bit
	switch bit {
	case ceSpec:
		a.spec = v
	case ceID:
		a.id = v
	case ceSource:
		a.source = v
	case ceType:
		a.typ = v
	case ceSubject:
		a.subject = v
	case ceTime:
		a.ts = v
	case ceContentType:
		a.contentType = v
	case ceSubscription:
		a.sub = v
	}
	return nil
}

// extension checks an extension attribute's name (CloudEvents: lowercase
// letters and digits) and that it is not repeated; its value is ignored.
func (a *ceAttrs) extension(name string) error {
	if name == "" || len(name) > MaxDimKeyLen {
		return invalid(a.field(name), "not a CloudEvents attribute: extension names are 1 to %d lowercase letters and digits", MaxDimKeyLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return invalid(a.field(name), "not a CloudEvents attribute: extension names are lowercase letters and digits")
		}
	}
	for _, e := range a.ext[:a.next] {
		if e == name {
			return invalid(a.field(name), "attribute given twice")
		}
	}
	if a.next == MaxExtensions {
		return invalid(a.field(name), "more than %d extension attributes", MaxExtensions)
	}
	a.ext[a.next] = name
	a.next++
	return nil
}

// check validates specversion and the data's media type: the two that
// decide whether the rest can be read at all.
func (a *ceAttrs) check() error {
	switch {
	case a.seen&ceSpec == 0:
		return invalid(a.field("specversion"), "required")
	case a.spec != CloudEventsSpecVersion:
		return invalid(a.field("specversion"), "must be %q, got %q", CloudEventsSpecVersion, a.spec)
	}
	if ct := a.contentType; ct != "" && !jsonMediaType(ct) {
		f := a.field("datacontenttype")
		if a.prefix != "" {
			f = "content-type"
		}
		return invalid(f, "data must be JSON (application/json), got %q", ct)
	}
	return nil
}

// finish checks the attributes and maps them onto ev.
func (a *ceAttrs) finish(ev *rating.Event) error {
	if err := a.check(); err != nil {
		return err
	}
	for _, r := range [...]struct {
		bit  int
		name string
		v    string
	}{{ceID, "id", a.id}, {ceSource, "source", a.source}, {ceType, "type", a.typ}, {ceSubject, "subject", a.subject}, {ceTime, "time", a.ts}} {
		switch {
		case a.seen&r.bit == 0:
			return invalid(a.field(r.name), "required")
		case r.v == "":
			return invalid(a.field(r.name), "must not be empty")
		case len(r.v) > MaxIDLen:
			return invalid(a.field(r.name), "longer than %d bytes", MaxIDLen)
		}
	}
	for i := 0; i < len(a.source); i++ {
		if c := a.source[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"<>\^`+"`{|}", c) >= 0 {
			return invalid(a.field("source"), "not a URI-reference: byte %q at %d must be percent-encoded", c, i)
		}
	}
	ts, err := time.Parse(time.RFC3339Nano, a.ts)
	if err != nil {
		return invalid(a.field("time"), "not an RFC 3339 time: %q", a.ts)
	}
	if ts.Before(minTime) {
		return invalid(a.field("time"), "%q is before 1970", a.ts)
	}
	if a.seen&ceSubscription != 0 {
		if a.sub == "" || len(a.sub) > MaxIDLen {
			return invalid(a.field("subscriptionid"), "must be 1 to %d bytes", MaxIDLen)
		}
		ev.SubscriptionID = a.sub
	}
	ev.ID = a.source + "|" + a.id
	ev.Name, ev.CustomerID, ev.Timestamp = a.typ, a.subject, ts
	return nil
}

// jsonMediaType: application/json, text/json or application/…+json, with
// any parameters.
func jsonMediaType(ct string) bool {
	return mediaTypeIs(ct, "application/json") || mediaTypeIs(ct, "text/json") ||
		mediaTypeHasSuffix(ct, "+json") && !mediaTypeIs(ct, ContentTypeCloudEvent) && !mediaTypeIs(ct, ContentTypeCloudEventBatch)
}

func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct)
}

func mediaTypeIs(ct, want string) bool { return strings.EqualFold(mediaType(ct), want) }

func mediaTypeHasSuffix(ct, suffix string) bool {
	mt := mediaType(ct)
	return len(mt) > len(suffix) && strings.EqualFold(mt[len(mt)-len(suffix):], suffix)
}

// view is b as a string without a copy; b must not change while it is used.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// scalar skips a JSON number, true, false or null.
func (d *decoder) scalar() bool {
	if d.i >= len(d.b) {
		return false
	}
	if c := d.b[d.i]; c == '-' || (c >= '0' && c <= '9') {
		return d.number()
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
			d.i += len(lit)
			return true
		}
	}
	return false
}

// skip skips any JSON value, nested at most 64 deep.
func (d *decoder) skip(depth int) bool {
	d.ws()
	if d.i >= len(d.b) || depth > 64 {
		return false
	}
	switch c := d.b[d.i]; c {
	case '"':
		_, err := d.str()
		return err == nil
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		d.i++
		d.ws()
		if d.eat(end) {
			return true
		}
		for {
			if c == '{' {
				d.ws()
				if _, err := d.str(); err != nil {
					return false
				}
				d.ws()
				if !d.eat(':') {
					return false
				}
			}
			if !d.skip(depth + 1) {
				return false
			}
			d.ws()
			if d.eat(',') {
				continue
			}
			return d.eat(end)
		}
	}
	return d.scalar()
}

// hasMember reports whether b is a JSON object with a top-level member name.
func hasMember(b []byte, name string) bool {
	d := decoder{b: b}
	d.ws()
	if !d.eat('{') {
		return false
	}
	for {
		d.ws()
		key, err := d.str()
		if err != nil {
			return false
		}
		if key == name {
			return true
		}
		d.ws()
		if !d.eat(':') || !d.skip(0) {
			return false
		}
		d.ws()
		if !d.eat(',') {
			return false
		}
	}
}
