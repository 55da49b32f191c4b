// Package fault is creditmeter's one classification of failures: every
// store's sentinels carry a Kind, and Of also recognises the raw errors of
// Redis (go-redis), Kafka (kafka-go) and ClickHouse (clickhouse-go). The
// engine retries what may heal and stops on the rest; the API maps a Kind
// to its status (Status).
package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// Kind says what a failure means to the caller.
type Kind int

const (
	// Unknown: not classified. The engine retries it (a failure it cannot
	// name may heal, and it never skips data); the API answers 500.
	Unknown Kind = iota
	// Unavailable: the service could not serve the call now (down,
	// unreachable, loading, failing over, overloaded); retrying is safe.
	Unavailable
	// Conflict: the request collides with the stored state (an idempotency
	// key reused with other content, a state that moved meanwhile).
	Conflict
	// Invalid: the request or row is wrong; retrying the same cannot help.
	Invalid
	// Permanent: a bug or broken data (a script error, a wrong key type);
	// retrying cannot help and going on would skip data.
	Permanent
)

func (k Kind) String() string {
	switch k {
	case Unavailable:
		return "unavailable"
	case Conflict:
		return "conflict"
	case Invalid:
		return "invalid"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// The kinds as errors: errors.Is(err, ErrUnavailable) is Of(err) == Unavailable
// for the errors of this package.
var (
	ErrUnavailable = &kindError{Unavailable}
	ErrConflict    = &kindError{Conflict}
	ErrInvalid     = &kindError{Invalid}
	ErrPermanent   = &kindError{Permanent}
)

type kindError struct{ k Kind }

func (e *kindError) Error() string { return e.k.String() }

func kindErr(k Kind) error {
	switch k {
	case Unavailable:
		return ErrUnavailable
	case Conflict:
		return ErrConflict
	case Invalid:
		return ErrInvalid
	case Permanent:
		return ErrPermanent
	}
	return nil
}

// sentinel is a package's named error that carries a kind; its message is
// the package's own.
type sentinel struct {
	msg string
	k   Kind
}

func (s *sentinel) Error() string        { return s.msg }
func (s *sentinel) Is(target error) bool { return target == kindErr(s.k) }

// New returns a sentinel error with message msg and kind k, for a
// package's Err* variables (compared with errors.Is as usual).
func New(k Kind, msg string) error { return &sentinel{msg: msg, k: k} }

// wrapped gives err the kind k, keeping err's message and chain.
type wrapped struct {
	err error
	k   Kind
}

func (w *wrapped) Error() string        { return w.err.Error() }
func (w *wrapped) Unwrap() error        { return w.err }
func (w *wrapped) Is(target error) bool { return target == kindErr(w.k) }

// Wrap gives err the kind k (nil stays nil); Of(Wrap(k, err)) == k.
func Wrap(k Kind, err error) error {
	if err == nil || Of(err) == k {
		return err
	}
	return &wrapped{err: err, k: k}
}

// Errorf is fmt.Errorf with the result of kind k.
func Errorf(k Kind, format string, args ...any) error { return Wrap(k, fmt.Errorf(format, args...)) }

// Of classifies err. A kind carried in the chain wins, in the order
// Unavailable, Conflict, Invalid, Permanent (an error that is both an outage
// and something else is retried: the rest may be its consequence); then the
// drivers' errors are recognised.
func Of(err error) Kind {
	if err == nil {
		return Unknown
	}
	for _, k := range []Kind{Unavailable, Conflict, Invalid, Permanent} {
		if errors.Is(err, kindErr(k)) {
			return k
		}
	}
	return driver(err)
}

// Retryable reports whether err may heal on retry (Of(err) == Unavailable).
func Retryable(err error) bool { return Of(err) == Unavailable }

// Status is the HTTP status of a kind: 503, 409, 400, else 500.
func Status(k Kind) int {
	switch k {
	case Unavailable:
		return http.StatusServiceUnavailable
	case Conflict:
		return http.StatusConflict
	case Invalid:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// redisTransient are the reply prefixes of a Redis that is up but cannot
// serve now.
var redisTransient = []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "NOREPLICAS"}

// clickhouseTransient are ClickHouse exception codes of a server that may
// serve the same query later.
var clickhouseTransient = map[int32]bool{
	159: true, // TIMEOUT_EXCEEDED
	164: true, // READONLY
	202: true, // TOO_MANY_SIMULTANEOUS_QUERIES
	209: true, // SOCKET_TIMEOUT
	210: true, // NETWORK_ERROR
	241: true, // MEMORY_LIMIT_EXCEEDED
	242: true, // TABLE_IS_READ_ONLY
	252: true, // TOO_MANY_PARTS
	319: true, // UNKNOWN_STATUS_OF_INSERT
	999: true, // KEEPER_EXCEPTION
}

func driver(err error) Kind {
	// kafka.Error has Temporary and Timeout, so it is a net.Error too: first.
	var ke kafka.Error
	if errors.As(err, &ke) {
		if ke.Temporary() {
			return Unavailable
		}
		return Unknown
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return Unavailable
	}
	var ce *clickhouse.Exception
	if errors.As(err, &ce) {
		if clickhouseTransient[ce.Code] {
			return Unavailable
		}
		return Unknown
	}
	msg := err.Error()
	var re redis.Error
	isReply := errors.As(err, &re) && !errors.Is(err, redis.Nil)
	if isReply {
		msg = re.Error()
	}
	for _, p := range redisTransient {
		if strings.HasPrefix(msg, p) {
			return Unavailable
		}
	}
	if !isReply {
		return Unknown
	}
	if strings.HasPrefix(msg, "ERR max number of clients") {
		return Unavailable
	}
	// A reply error outside the scripts' own codes: a wrong key type or a
	// script that failed, i.e. a bug or broken data.
	if strings.HasPrefix(msg, "WRONGTYPE") || strings.HasPrefix(msg, "ERR") {
		return Permanent
	}
	return Unknown
}
