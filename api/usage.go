package api

import (
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// getUsage serves a subscription's rated usage from the archive.
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request, who principal) error {
	sub, err := s.reportsFor(r, who)
	if err != nil {
		return err
	}
	q, err := s.usageQuery(r, false)
	if err != nil {
		return err
	}
	q.Subscriptions = []string{sub.ID}
	rep, err := s.subscriptionUsage(r.Context(), q)
	if err != nil {
		return usageError(err)
	}
	return writeUsage(w, r, q, rep, map[string]any{"subscription_id": sub.ID})
}

// getCustomerUsage serves the usage of all a customer's subscriptions.
func (s *Server) getCustomerUsage(w http.ResponseWriter, r *http.Request, who principal) error {
	id := r.PathValue("id")
	if !who.may(id) {
		return forbidden()
	}
	if s.reports == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the archive is not configured"}
	}
	if _, err := s.cat.Customer(r.Context(), id); err != nil {
		return err
	}
	q, err := s.usageQuery(r, false)
	if err != nil {
		return err
	}
	subs, err := s.cat.CustomerSubscriptions(r.Context(), id)
	if err != nil {
		return err
	}
	// Its subscriptions use rated_usage's primary key; the customer filter
	// keeps a line charged to another customer out.
	q.Customers = []string{id}
	for _, sub := range subs {
		q.Subscriptions = append(q.Subscriptions, sub.ID)
	}
	rep := archive.UsageReport{Groups: q.Groups, Rows: []archive.ReportRow{}}
	if len(subs) > 0 {
		if rep, err = s.reports.Report(r.Context(), q); err != nil {
			return usageError(err)
		}
	}
	return writeUsage(w, r, q, rep, map[string]any{"customer_id": id})
}

// getAllUsage serves usage across customers (admin).
func (s *Server) getAllUsage(w http.ResponseWriter, r *http.Request, _ principal) error {
	if s.reports == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the archive is not configured"}
	}
	q, err := s.usageQuery(r, true)
	if err != nil {
		return err
	}
	rep, err := s.reports.Report(r.Context(), q)
	if err != nil {
		return usageError(err)
	}
	return writeUsage(w, r, q, rep, map[string]any{})
}

// subscriptionUsage answers a query of one subscription by feature or by
// day, unfiltered, from the daily rollup as before (fast for whole days);
// anything else from rated_usage.
func (s *Server) subscriptionUsage(ctx context.Context, q archive.ReportQuery) (archive.UsageReport, error) {
	limit := q.Limit
	if limit == 0 {
		limit = archive.DefaultReportRows
	}
	if len(q.Groups) != 1 || (q.Groups[0] != archive.GroupByFeature && q.Groups[0] != archive.GroupByDay) ||
		len(q.Features) > 0 || len(q.Dims) > 0 || q.Cursor != "" {
		return s.reports.Report(ctx, q)
	}
	rows, err := s.reports.Usage(ctx, archive.UsageQuery{Subscription: q.Subscriptions[0], From: q.From, To: q.To, GroupBy: q.Groups[0]})
	if err != nil || len(rows) > limit {
		if err != nil {
			return archive.UsageReport{}, err
		}
		return s.reports.Report(ctx, q)
	}
	rep := archive.UsageReport{Groups: q.Groups, Rows: make([]archive.ReportRow, 0, len(rows))}
	for _, u := range rows {
		rep.Rows = append(rep.Rows, archive.ReportRow{Day: u.Day, Feature: u.Feature, Quantity: u.Quantity, Credits: u.Credits,
			FundedCredits: u.FundedCredits, UnfundedCredits: u.UnfundedCredits, CreditCurrency: u.CreditCurrency,
			MoneyValue: u.MoneyValue, MoneyCurrency: u.MoneyCurrency, Events: u.Events})
	}
	return rep, nil
}

// usageParams are the query parameters of the usage routes; across is the
// admin's route across customers, which also filters by customer and
// subscription.
var usageParams = []string{"from", "to", "group_by", "feature", "dim", "format", "limit", "cursor"}

// reportRange reads a report's from and to (usage, meters), naming the one
// that is wrong.
func reportRange(qv url.Values) (from, to time.Time, _ error) {
	bad := func(field, msg string) (time.Time, time.Time, error) {
		return time.Time{}, time.Time{}, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: field, Message: msg}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := qv.Get(p.name)
		if v == "" {
			return bad(p.name, p.name+" is required: a date (YYYY-MM-DD, UTC midnight) or an RFC 3339 time")
		}
		uq, err := archive.ParseUsageQuery("", v, v, "")
		if err != nil {
			return bad(p.name, p.name+" must be a date (YYYY-MM-DD, UTC midnight) or an RFC 3339 time")
		}
		*p.t = uq.From
	}
	switch {
	case from.Before(minReportTime):
		return bad("from", "from must be 1970-01-01 or later")
	case to.After(maxReportTime):
		return bad("to", "to must be 2106-01-01 or earlier")
	case !from.Before(to):
		return bad("from", "from must be before to")
	case to.Sub(from) > 366*24*time.Hour:
		return bad("to", "to must be at most 366 days after from")
	}
	return from, to, nil
}

// usageQuery reads the usage parameters, naming the one that is wrong: an
// unknown parameter is refused rather than ignored.
func (s *Server) usageQuery(r *http.Request, across bool) (archive.ReportQuery, error) {
	qv := r.URL.Query()
	bad := func(field, msg string) (archive.ReportQuery, error) {
		return archive.ReportQuery{}, &Error{Status: http.StatusBadRequest, Code: "invalid", Field: field, Message: msg}
	}
	for name := range qv {
		if !slices.Contains(usageParams, name) && !(across && (name == "customer" || name == "subscription")) {
			known := strings.Join(usageParams, ", ")
			if across {
				known += ", customer, subscription"
			}
			return bad(name, "unknown parameter "+name+"; usage takes "+known)
		}
	}
	var q archive.ReportQuery
	var err error
	if q.From, q.To, err = reportRange(qv); err != nil {
		return q, err
	}
	q.Groups = splitList(qv["group_by"])
	if len(q.Groups) == 0 {
		q.Groups = []string{archive.GroupByFeature}
	}
	if err := archive.CheckGroups(q.Groups); err != nil {
		return bad("group_by", strings.TrimPrefix(err.Error(), archive.ErrInvalidQuery.Error()+": "))
	}
	q.Features = splitList(qv["feature"])
	for _, f := range q.Features {
		if _, err := s.cat.Feature(r.Context(), f); errors.Is(err, catalogstore.ErrNotFound) {
			return bad("feature", "no feature "+f)
		} else if err != nil {
			return q, err
		}
	}
	for _, d := range qv["dim"] {
		key, value, ok := strings.Cut(d, ":")
		if !ok || key == "" {
			return bad("dim", "dim must be key:value, e.g. dim=model:gpt-x")
		}
		if q.Dims == nil {
			q.Dims = map[string][]string{}
		}
		q.Dims[key] = append(q.Dims[key], value)
	}
	if across {
		q.Customers, q.Subscriptions = splitList(qv["customer"]), splitList(qv["subscription"])
	}
	if v := qv.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > archive.MaxReportRows {
			return bad("limit", "limit must be 1 to "+strconv.Itoa(archive.MaxReportRows))
		}
		q.Limit = n
	}
	q.Cursor = qv.Get("cursor")
	switch qv.Get("format") {
	case "", "json", "csv":
	default:
		return bad("format", "format must be json or csv")
	}
	return q, nil
}

// usageError names the cursor when the archive refuses it.
func usageError(err error) error {
	if errors.Is(err, archive.ErrBadCursor) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "cursor", Message: "cursor is not a next_cursor of this query"}
	}
	return reportError(err, "")
}

// splitList reads a repeated, comma-separated parameter.
func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// writeUsage answers a report as JSON (with head's fields) or, with
// format=csv, as CSV whose next page's cursor is in a header.
func writeUsage(w http.ResponseWriter, r *http.Request, q archive.ReportQuery, rep archive.UsageReport, head map[string]any) error {
	if r.URL.Query().Get("format") == "csv" {
		if rep.NextCursor != "" {
			w.Header().Set("Creditmeter-Next-Cursor", rep.NextCursor)
		}
		w.Header().Set("Content-Type", "text/csv")
		return writeUsageCSV(w, q, rep)
	}
	head["group_by"] = strings.Join(rep.Groups, ",")
	head["rows"] = rep.Rows
	if rep.NextCursor != "" {
		head["next_cursor"] = rep.NextCursor
	}
	writeJSON(w, http.StatusOK, head)
	return nil
}

func writeUsageCSV(w http.ResponseWriter, q archive.ReportQuery, rep archive.UsageReport) error {
	cw := csv.NewWriter(w)
	header := slices.Clone(rep.Groups)
	for i, g := range header {
		switch g {
		case archive.GroupByCustomer, archive.GroupBySubscription:
			header[i] += "_id"
		}
	}
	qty := slices.Contains(q.Groups, archive.GroupByFeature) || len(q.Features) == 1
	if qty {
		header = append(header, "quantity")
	}
	header = append(header, "credits", "funded_credits", "unfunded_credits", "credit_currency", "money_value", "money_currency", "events")
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, row := range rep.Rows {
		rec := make([]string, 0, len(header))
		for _, g := range rep.Groups {
			rec = append(rec, groupValue(row, g))
		}
		if qty {
			v := ""
			if row.Quantity != nil {
				v = row.Quantity.String()
			}
			rec = append(rec, v)
		}
		rec = append(rec, row.Credits.String(), row.FundedCredits.String(), row.UnfundedCredits.String(), row.CreditCurrency,
			row.MoneyValue.String(), row.MoneyCurrency, strconv.FormatUint(row.Events, 10))
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func groupValue(row archive.ReportRow, g string) string {
	switch g {
	case archive.GroupByHour:
		return row.Hour
	case archive.GroupByDay:
		return row.Day
	case archive.GroupByMonth:
		return row.Month
	case archive.GroupByFeature:
		return row.Feature
	case archive.GroupByCustomer:
		return row.CustomerID
	case archive.GroupBySubscription:
		return row.SubscriptionID
	}
	return row.Dimensions[strings.TrimPrefix(g, archive.DimPrefix)]
}
