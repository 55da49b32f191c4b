// Package lowbalance exports, at scrape time, the subscriptions below their
// low-balance threshold (a Prometheus collector over the balance store's
// low set), and keeps that set repaired. It reads balances; it never writes
// them.
package lowbalance
