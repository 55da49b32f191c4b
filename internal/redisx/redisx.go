// Package redisx holds what every Redis user of creditmeter shares: one
// classification of Redis errors, so the catalog and the balances answer an
// outage the same way (the API's 503).
package redisx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is wrapped by every error that means Redis could not serve
// the call now (down, unreachable, loading, failing over); retrying is safe.
var ErrUnavailable = errors.New("redis unavailable")

// transient are the reply prefixes of a Redis that is up but cannot serve now.
var transient = []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "NOREPLICAS"}

// Unavailable reports whether err means Redis could not serve the call now.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	msg := err.Error()
	var re redis.Error
	if errors.As(err, &re) {
		msg = re.Error()
	}
	for _, p := range transient {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Classify wraps err in ErrUnavailable when it is an outage and returns it
// unchanged otherwise (nil stays nil).
func Classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !Unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
