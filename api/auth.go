package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/creditmeter/creditmeter/tokens"
)

// principal is who called: an admin (by the name of its token), or the
// customer a token is scoped to.
type principal struct {
	admin    bool
	name     string // the admin token's name
	customer string
}

type adminToken struct {
	name   string
	secret []byte
}

// admin is the name of the admin token tok, if it is one. Every configured
// token is compared, in constant time.
func (s *Server) admin(tok string) (string, bool) {
	name, found := "", false
	for _, a := range s.admins {
		if subtle.ConstantTimeCompare(a.secret, []byte(tok)) == 1 && !found {
			name, found = a.name, true
		}
	}
	return name, found
}

// may reports whether who may see customerID's data.
func (p principal) may(customerID string) bool { return p.admin || p.customer == customerID }

func (s *Server) authenticate(r *http.Request, need Access) (principal, error) {
	if need == Public {
		return principal{}, nil
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "a bearer token is required (Authorization: Bearer <token>)"}
	}
	if name, ok := s.admin(tok); ok {
		return principal{admin: true, name: name}, nil
	}
	if s.cat == nil {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unknown token"}
	}
	id, err := s.tokens.Customer(r.Context(), tok)
	if errors.Is(err, tokens.ErrNotFound) {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unknown token"}
	}
	if errors.Is(err, tokens.ErrExpired) {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: "token_expired", Message: "the token has expired; ask for a new one"}
	}
	if err != nil {
		return principal{}, err
	}
	if need == Admin {
		// who, for the audit line of a refused write; the caller ignores it
		return principal{customer: id}, &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "this route needs an admin token"}
	}
	return principal{customer: id}, nil
}

func forbidden() error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "this token may not access another customer's data"}
}
