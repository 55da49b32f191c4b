package archive

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Reports answers the API's usage and invoice questions from the archive.
type Reports struct {
	Conn driver.Conn
}

// Usage is archive.Usage on r's connection.
func (r Reports) Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error) {
	return Usage(ctx, r.Conn, q)
}

// Invoice is BuildInvoice on r's connection.
func (r Reports) Invoice(ctx context.Context, sub, period string, terms InvoiceTerms) (Invoice, error) {
	return BuildInvoice(ctx, r.Conn, sub, period, terms)
}
