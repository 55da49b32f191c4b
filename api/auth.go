package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/creditmeter/creditmeter/tokens"
)

// principal is who called: an admin, or the customer a token is scoped to.
type principal struct {
	admin    bool
	customer string
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
	for _, a := range s.admins {
		if subtle.ConstantTimeCompare(a, []byte(tok)) == 1 {
			return principal{admin: true}, nil
		}
	}
	if s.cat == nil {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unknown token"}
	}
	id, err := s.tokens.Customer(r.Context(), tok)
	if errors.Is(err, tokens.ErrNotFound) {
		return principal{}, &Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unknown token"}
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
