package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/rating"
)

// Reports are the archive's answers (archive.Reports over ClickHouse).
type Reports interface {
	Usage(ctx context.Context, q archive.UsageQuery) ([]archive.UsageRow, error)
	Invoice(ctx context.Context, sub, period string, terms archive.InvoiceTerms) (archive.Invoice, error)
	Report(ctx context.Context, q archive.ReportQuery) (archive.UsageReport, error)
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

// getInvoice builds the invoice of ?period=YYYY-MM, as JSON or, with
// ?format=csv, CSV.
func (s *Server) getInvoice(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.reportsFor(r, who)
	if err != nil {
		return err
	}
	period := r.URL.Query().Get("period")
	if err := checkPeriod(period); err != nil {
		return err
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

// The archive's times are ClickHouse DateTimes (1970-01-01 to 2106-02-07):
// reports answer within whole months of that range.
var (
	minReportTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxReportTime = time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
)

// checkPeriod accepts YYYY-MM from 1970-01 to 2105-12.
func checkPeriod(period string) error {
	_, _, err := archive.ParsePeriod(period)
	if errors.Is(err, archive.ErrPeriodOutOfRange) {
		return &Error{Status: http.StatusBadRequest, Code: "out_of_range", Field: "period", Message: "period must be from 1970-01 to 2105-12"}
	}
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "period", Message: "period must be a month as YYYY-MM, e.g. 2026-11"}
	}
	return nil
}
