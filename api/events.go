package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
// as a Kafka producer would. Invalid items are reported, not produced.
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
	var req struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return decodeError(err)
	}
	switch {
	case len(req.Events) == 0:
		return &Error{Status: http.StatusBadRequest, Code: "required", Field: "events", Message: "send {\"events\": [ ... ]} with at least one event"}
	case len(req.Events) > maxEventsPerRequest:
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_many", Field: "events",
			Message: fmt.Sprintf("at most %d events per request, got %d", maxEventsPerRequest, len(req.Events))}
	}
	msgs := make([]kafka.Message, 0, len(req.Events))
	rejected := []RejectedEvent{}
	var ev rating.Event
	now, skew := time.Now(), s.skew
	if skew <= 0 {
		skew = ingest.DefaultMaxFutureSkew
	}
	for i, raw := range req.Events {
		err := ingest.Decode(raw, &ev)
		if err == nil {
			err = ingest.CheckFuture(ev.Timestamp, now, skew)
		}
		if err != nil {
			var ee *ingest.EventError
			errors.As(err, &ee)
			field := "events[" + strconv.Itoa(i) + "]"
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
		msgs = append(msgs, kafka.Message{Key: []byte(ev.CustomerID), Value: compact.Bytes()})
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
