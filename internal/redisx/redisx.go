// Package redisx holds what every Redis user of creditmeter shares: the
// Redis side of fault's classification, so the catalog and the balances
// answer an outage the same way (the API's 503).
package redisx

import (
	"errors"
	"fmt"

	"github.com/creditmeter/creditmeter/internal/fault"
)

// ErrUnavailable is wrapped by every error that means Redis could not serve
// the call now (down, unreachable, loading, failing over); retrying is safe.
// It is of kind fault.Unavailable.
var ErrUnavailable = fault.New(fault.Unavailable, "redis unavailable")

// Unavailable reports whether err means Redis could not serve the call now
// (fault.Of(err) == fault.Unavailable).
func Unavailable(err error) bool { return fault.Of(err) == fault.Unavailable }

// Classify wraps err in ErrUnavailable when it is an outage and returns it
// unchanged otherwise (nil stays nil).
func Classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !Unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
