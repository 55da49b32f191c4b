package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/rating"
)

// Events produces usage events to the usage topic (ingest.Writers).
type Events interface {
	PublishRaw(ctx context.Context, msgs ...kafka.Message) error
}

// Limits of POST /v1/events.
const (
	maxEventsPerRequest = 10_000
	maxEventsBody       = 8 << 20
)

// RejectedEvent is an item of a batch that was not produced, and why.
type RejectedEvent struct {
	Index int    `json:"index"`
	ID    string `json:"id,omitempty"`
	Error *Error `json:"error"`
}

// postEvents validates a batch item by item with the engine's own decoder and
// produces the valid items to the usage topic keyed by customer id, exactly
// as a Kafka producer would. Invalid items are reported, not produced. The
// CloudEvents content types take one structured CloudEvent or an array.
func (s *Server) postEvents(w http.ResponseWriter, r *http.Request, _ principal) error {
	if s.events == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "event intake is not configured"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventsBody))
	if err != nil {
		var big *http.MaxBytesError
		if errors.As(err, &big) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("the body exceeds %d bytes", maxEventsBody)}
		}
		return err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var items []json.RawMessage
	where := func(i int) string { return "events[" + strconv.Itoa(i) + "]" }
	decode := ingest.Decode
	var headers []kafka.Header
	switch strings.ToLower(mt) {
	case ingest.ContentTypeCloudEvent:
		return s.postCloudEvent(w, r, body)
	case ingest.ContentTypeCloudEventBatch:
		if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '[' {
			return &Error{Status: http.StatusBadRequest, Code: "malformed_json", Message: "send a JSON array of CloudEvents (" + ingest.ContentTypeCloudEventBatch + ")"}
		}
		if err := json.Unmarshal(body, &items); err != nil {
			return decodeError(err)
		}
		if len(items) == 0 {
			return &Error{Status: http.StatusBadRequest, Code: "required", Message: "send an array of at least one CloudEvent"}
		}
		where = func(i int) string { return "[" + strconv.Itoa(i) + "]" }
		decode = ingest.DecodeCloudEvent
		headers = cloudEventHeaders
	default:
		var req struct {
			Events []json.RawMessage `json:"events"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return decodeError(err)
		}
		if len(req.Events) == 0 {
			return &Error{Status: http.StatusBadRequest, Code: "required", Field: "events", Message: "send {\"events\": [ ... ]} with at least one event"}
		}
		items = req.Events
	}
	if len(items) > maxEventsPerRequest {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_many", Field: "events",
			Message: fmt.Sprintf("at most %d events per request, got %d", maxEventsPerRequest, len(items))}
	}
	msgs := make([]kafka.Message, 0, len(items))
	rejected := []RejectedEvent{}
	var ev rating.Event
	now, skew := time.Now(), s.futureSkew()
	for i, raw := range items {
		if ee := checkEvent(raw, decode, headers != nil, &ev, now, skew); ee != nil {
			field := where(i)
			if ee.Field != "" {
				field += "." + ee.Field
			}
			rejected = append(rejected, RejectedEvent{Index: i, ID: ev.ID, Error: &Error{Code: ee.Reason, Field: field, Message: clipNumbers(ee.Detail)}})
			continue
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil {
			return err
		}
		msgs = append(msgs, kafka.Message{Key: []byte(ev.CustomerID), Value: compact.Bytes(), Headers: headers})
	}
	if len(msgs) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error":    &Error{Code: "invalid_events", Field: rejected[0].Error.Field, Message: "no event of the batch is valid; see rejected"},
			"rejected": rejected,
		})
		return nil
	}
	if err := s.events.PublishRaw(r.Context(), msgs...); err != nil {
		s.log.Error("api: produce events", "events", len(msgs), "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the event topic is unavailable; send the batch again (event ids make that safe)"}
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"accepted": len(msgs), "rejected": rejected})
	return nil
}

// cloudEventHeaders mark a produced CloudEvent as structured mode, as the
// Kafka protocol binding says.
var cloudEventHeaders = []kafka.Header{{Key: "content-type", Value: []byte(ingest.ContentTypeCloudEvent)}}

// postCloudEvent takes one structured CloudEvent: 202 when produced, else
// the decoder's error naming the attribute (specversion, subject, data.x).
func (s *Server) postCloudEvent(w http.ResponseWriter, r *http.Request, body []byte) error {
	var ev rating.Event
	if ee := checkEvent(body, ingest.DecodeCloudEvent, true, &ev, time.Now(), s.futureSkew()); ee != nil {
		return &Error{Status: http.StatusBadRequest, Code: ee.Reason, Field: ee.Field, Message: clipNumbers(ee.Detail)}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return err
	}
	msg := kafka.Message{Key: []byte(ev.CustomerID), Value: compact.Bytes(), Headers: cloudEventHeaders}
	if err := s.events.PublishRaw(r.Context(), msg); err != nil {
		s.log.Error("api: produce event", "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the event topic is unavailable; send the event again (source and id make that safe)"}
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"accepted": 1, "rejected": []RejectedEvent{}})
	return nil
}

// checkEvent decodes raw into ev and checks its time as the engine will;
// nil when valid. A CloudEvent's error names CheckFuture's field as the
// CloudEvents attribute, time.
func checkEvent(raw []byte, decode func([]byte, *rating.Event) error, cloud bool, ev *rating.Event, now time.Time, skew time.Duration) *ingest.EventError {
	err := decode(raw, ev)
	if err == nil {
		err = ingest.CheckFuture(ev.Timestamp, now, skew)
	}
	if err == nil {
		return nil
	}
	var ee *ingest.EventError
	errors.As(err, &ee)
	if cloud && ee.Field == "timestamp" {
		ee.Field = "time"
	}
	return ee
}

func (s *Server) futureSkew() time.Duration {
	if s.skew <= 0 {
		return ingest.DefaultMaxFutureSkew
	}
	return s.skew
}
