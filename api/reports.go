package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/rating"
)

// Reports are the archive's answers (archive.Reports over ClickHouse).
type Reports interface {
	Usage(ctx context.Context, q archive.UsageQuery) ([]archive.UsageRow, error)
	Invoice(ctx context.Context, sub, period string, terms archive.InvoiceTerms) (archive.Invoice, error)
}

func (s *Server) reportsFor(r *http.Request, who principal) (*rating.Subscription, error) {
	if s.reports == nil {
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the archive is not configured"}
	}
	return s.ownedSubscription(r, who)
}

func reportError(err error, field string) error {
	if errors.Is(err, archive.ErrInvalidQuery) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: field, Message: err.Error()}
	}
	return err
}

// getUsage serves rated usage from the archive: ?from&to (RFC 3339 or
// YYYY-MM-DD) and group_by feature|day.
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.reportsFor(r, who)
	if err != nil {
		return err
	}
	qv := r.URL.Query()
	q, err := archive.ParseUsageQuery(sub.ID, qv.Get("from"), qv.Get("to"), qv.Get("group_by"))
	if err != nil {
		return reportError(err, "from")
	}
	rows, err := s.reports.Usage(r.Context(), q)
	if err != nil {
		return reportError(err, "group_by")
	}
	if rows == nil {
		rows = []archive.UsageRow{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscription_id": sub.ID, "group_by": q.GroupBy, "rows": rows})
	return nil
}

// getInvoice builds the invoice of ?period=YYYY-MM, as JSON or, with
// ?format=csv, CSV.
func (s *Server) getInvoice(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.reportsFor(r, who)
	if err != nil {
		return err
	}
	period := r.URL.Query().Get("period")
	if _, _, err := archive.ParsePeriod(period); err != nil {
		return reportError(err, "period")
	}
	plan, err := s.cat.Plan(r.Context(), sub.PlanID)
	if err != nil {
		return err
	}
	value, _, _ := rating.EffectiveCreditValue(sub, plan)
	terms := archive.InvoiceTerms{CustomerID: sub.CustomerID, Currency: sub.Currency, CreditValue: value}
	if plan.Prepaid != nil {
		terms.CreditCurrency = plan.Prepaid.CreditCurrency
	}
	inv, err := s.reports.Invoice(r.Context(), sub.ID, period, terms)
	if err != nil {
		return reportError(err, "period")
	}
	switch r.URL.Query().Get("format") {
	case "", "json":
		writeJSON(w, http.StatusOK, inv)
		return nil
	case "csv":
		w.Header().Set("Content-Type", "text/csv")
		return inv.WriteCSV(w)
	default:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "format", Message: "format must be json or csv"}
	}
}
