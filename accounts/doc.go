// Package accounts is the write path of balance accounts outside the
// pipeline: it opens subscriptions' accounts from the catalog's terms, makes
// top-ups and adjustments (the API's), sweeps the breakage of idle
// subscriptions, and copies every ledger entry it writes to the archive.
// LedgerRow, the mapping of a balance ledger entry to its archive row, is
// shared with the engine, which archives the usage entries of its batches.
package accounts
