package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// MeterReports answers a meter's value from the archive (archive.Reports
// does); a Reports without it answers 503.
type MeterReports interface {
	Meter(ctx context.Context, q archive.MeterQuery) ([]archive.MeterValue, error)
}

// getMeter serves one event-based meter's value over ?from&to, whole or
// per ?window=hour|day|month, with the meter's own aggregation: the way to
// read the reporting meters (MAX, LATEST, AVG) and a UNIQUE_COUNT's count.
func (s *Server) getMeter(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.reportsFor(r, who)
	if err != nil {
		return err
	}
	mr, ok := s.reports.(MeterReports)
	if !ok {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the archive does not answer meter queries"}
	}
	f, err := s.cat.Feature(r.Context(), r.PathValue("feature_id"))
	if errors.Is(err, catalogstore.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Field: "feature_id", Message: "no feature " + r.PathValue("feature_id")}
	}
	if err != nil {
		return err
	}
	if f.Meter.Kind != rating.MeterEventBased {
		return &Error{Status: http.StatusBadRequest, Code: "meter_not_event_based", Field: "feature_id", Message: "only event-based meters are recorded in the archive"}
	}
	qv := r.URL.Query()
	from, to, err := reportRange(qv) // the same from/to rules as usage
	if err != nil {
		return err
	}
	q := archive.MeterQuery{Subscription: sub.ID, Feature: f.ID, Aggregation: string(f.Meter.Aggregation), From: from, To: to, Window: qv.Get("window")}
	switch q.Window {
	case archive.WindowNone, archive.WindowHour, archive.WindowDay, archive.WindowMonth:
	default:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "window", Message: "window must be hour, day or month"}
	}
	vals, err := mr.Meter(r.Context(), q)
	if err != nil {
		return reportError(err, "")
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscription_id": sub.ID, "feature_id": f.ID, "aggregation": f.Meter.Aggregation,
		"window": q.Window, "values": vals})
	return nil
}
