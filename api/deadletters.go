package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/creditmeter/creditmeter/ingest"
)

// DeadLetters lists the dead-letter topic (ingest.DeadLetterReader).
type DeadLetters interface {
	List(ctx context.Context, q ingest.DeadLetterQuery) (*ingest.DeadLetterPage, error)
}

var reasonPattern = regexp.MustCompile(`^[a-z_]{1,64}$`)

type deadLetterJSON struct {
	Reason        string          `json:"reason"`
	Field         string          `json:"field,omitempty"`
	Detail        string          `json:"detail"`
	DeadLetterAt  time.Time       `json:"dead_lettered_at"`
	Original      ingest.Position `json:"original"`
	DeadLetter    ingest.Position `json:"dead_letter"`
	EventID       string          `json:"event_id,omitempty"`
	CustomerID    string          `json:"customer_id,omitempty"`
	TruncatedFrom int             `json:"truncated_from,omitempty"`
	ReplayOf      string          `json:"replay_of,omitempty"`
	ReplayedAt    *time.Time      `json:"replayed_at,omitempty"`
}

type deadLettersJSON struct {
	Counts     map[string]int64 `json:"counts"`
	Total      int64            `json:"total"`
	Entries    []deadLetterJSON `json:"entries"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

// listDeadLetters serves GET /v1/dead-letters: ?reason, ?since (RFC 3339),
// ?limit (1..ingest.MaxDeadLetterLimit) and ?cursor, newest first.
func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request, _ principal) error {
	if s.deadLetters == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the dead-letter topic is not configured"}
	}
	qs := r.URL.Query()
	q := ingest.DeadLetterQuery{Reason: qs.Get("reason"), Cursor: qs.Get("cursor")}
	if q.Reason != "" && !reasonPattern.MatchString(q.Reason) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "reason", Message: "reason must be a dead-letter reason such as unknown_customer"}
	}
	if v := qs.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "since", Message: "since must be an RFC 3339 time, e.g. 2026-11-30T12:00:00Z"}
		}
		q.Since = t
	}
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > ingest.MaxDeadLetterLimit {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "limit",
				Message: fmt.Sprintf("limit must be an integer from 1 to %d", ingest.MaxDeadLetterLimit)}
		}
		q.Limit = n
	}
	page, err := s.deadLetters.List(r.Context(), q)
	var retry *ingest.RetryableError
	switch {
	case errors.Is(err, ingest.ErrBadCursor):
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "cursor", Message: "cursor must be a next_cursor of this list"}
	case errors.As(err, &retry):
		s.log.Warn("api: dead-letter topic unavailable", "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the dead-letter topic or the replay records are unavailable; retry"}
	case err != nil:
		return err
	}
	out := deadLettersJSON{Counts: page.Counts, Total: page.Total, Entries: make([]deadLetterJSON, len(page.Entries)), NextCursor: page.NextCursor}
	for i, d := range page.Entries {
		e := deadLetterJSON{Reason: d.Reason, Field: d.Field, Detail: d.Detail, DeadLetterAt: d.Time, Original: d.Original,
			DeadLetter: d.DLQ, EventID: d.EventID, CustomerID: d.CustomerID, TruncatedFrom: d.TruncatedFrom, ReplayOf: d.ReplayOf}
		if !d.ReplayedAt.IsZero() {
			at := d.ReplayedAt
			e.ReplayedAt = &at
		}
		out.Entries[i] = e
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
