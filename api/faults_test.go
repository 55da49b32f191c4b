package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/creditmeter/creditmeter/api"
	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// failingReports answers every report with err.
type failingReports struct{ err error }

func (f failingReports) Usage(context.Context, archive.UsageQuery) ([]archive.UsageRow, error) {
	return nil, f.err
}

func (f failingReports) Invoice(context.Context, string, string, archive.InvoiceTerms) (archive.Invoice, error) {
	return archive.Invoice{}, f.err
}

func (f failingReports) Report(context.Context, archive.ReportQuery) (archive.UsageReport, error) {
	return archive.UsageReport{}, f.err
}

// A store's failure is answered by its kind (fault.Status): an overloaded
// ClickHouse is a 503 to retry, not a 500.
func TestStoreFailuresAnsweredByKind(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"clickhouse memory limit", fmt.Errorf("usage: %w", &clickhouse.Exception{Code: 241, Message: "memory limit exceeded"}), 503},
		{"clickhouse unknown table", &clickhouse.Exception{Code: 60, Message: "unknown table"}, 500},
		{"invalid", fault.Errorf(fault.Invalid, "bad query"), 400},
		{"permanent", fault.Errorf(fault.Permanent, "broken"), 500},
		{"unclassified", errors.New("boom"), 500},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc, prefix := testenv.Keyspace(t)
			store, err := catalogstore.New(rc, prefix)
			if err != nil {
				t.Fatal(err)
			}
			srv := api.NewServer(api.Options{Catalog: store, Ledger: &fakeLedger{}, Reports: failingReports{c.err}, AdminTokens: []string{admin}})
			hs := httptest.NewServer(validated(t, srv))
			defer hs.Close()
			e := &env{t: t, url: hs.URL, srv: srv}
			e.seed()
			id := e.must(201, "POST", "/v1/subscriptions", admin, seedSub, "Idempotency-Key", "k-"+c.name).body["id"].(string)
			e.must(c.want, "GET", "/v1/subscriptions/"+id+"/usage?from=2026-01-01&to=2026-02-01", admin, "")
		})
	}
}
