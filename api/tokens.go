package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/tokens"
)

// TokenResponse is the answer of POST /v1/customers/{id}/tokens; the token is
// shown once, only its hash is stored.
type TokenResponse struct {
	Token string `json:"token"`
	tokens.Info
}

type issueTokenRequest struct {
	// ExpiresIn is an ISO 8601 duration: PT<n>H, PT<n>M, PT<n>S, or P<n>D,
	// P<n>W, P<n>M, P<n>Y as for included credits.
	ExpiresIn string     `json:"expires_in,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// maxTokenLife bounds a token's expiry, like the catalog's dates.
const maxTokenLife = 10 * 366 * 24 * time.Hour

func (s *Server) issueToken(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req issueTokenRequest
	// The body is optional (a token without expiry needs none).
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return decodeError(err)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	var exp time.Time
	switch {
	case req.ExpiresIn != "" && req.ExpiresAt != nil:
		return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "expires_in", Message: "give expires_in or expires_at, not both"}
	case req.ExpiresIn != "":
		if exp, err = addISODuration(now, req.ExpiresIn); err != nil {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "expires_in", Message: err.Error()}
		}
	case req.ExpiresAt != nil:
		exp = *req.ExpiresAt
		if !exp.After(now) {
			return &Error{Status: http.StatusBadRequest, Code: "invalid", Field: "expires_at", Message: "expires_at must be in the future"}
		}
	}
	if !exp.IsZero() && exp.Sub(now) > maxTokenLife {
		return &Error{Status: http.StatusBadRequest, Code: "out_of_range", Field: "expires_at", Message: "a token may expire at most 10 years ahead"}
	}
	id := r.PathValue("id")
	tok, info, err := s.tokens.Issue(r.Context(), id, exp)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, TokenResponse{Token: tok, Info: info})
	return nil
}

// addISODuration adds PT<n>H/M/S, or a duration rating.AddDuration reads.
func addISODuration(t time.Time, d string) (time.Time, error) {
	if rest, ok := strings.CutPrefix(d, "PT"); ok && len(rest) >= 2 {
		n, err := strconv.Atoi(rest[:len(rest)-1])
		unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second}[rest[len(rest)-1]]
		if err == nil && n >= 1 && n <= 999999 && unit != 0 {
			return t.Add(time.Duration(n) * unit), nil
		}
	}
	e, err := rating.AddDuration(t, d)
	if err != nil {
		return time.Time{}, errors.New("want an ISO 8601 duration such as PT12H, P30D or P1Y, got " + strconv.Quote(d))
	}
	return e, nil
}

// listTokens lists a customer's tokens (an admin, or the customer itself),
// never their secrets.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, who principal) error {
	if _, err := s.ownedCustomer(r, who); err != nil {
		return err
	}
	id := r.PathValue("id")
	after, limit, err := listPage(r)
	if err != nil {
		return err
	}
	v, err := s.tokens.List(r.Context(), id)
	if err != nil {
		return err
	}
	tokenID := func(t tokens.Info) string { return t.ID }
	v, more := pageOf(v, tokenID, after, limit)
	return page(w, v, more, tokenID, nil)
}

// revokeToken deletes a token (an admin, or the customer itself, including
// the token of this request). Other nodes refuse it within tokens.CacheTTL.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, who principal) error {
	id := r.PathValue("id")
	if !who.may(id) {
		return forbidden()
	}
	err := s.tokens.Revoke(r.Context(), id, r.PathValue("token_id"))
	if errors.Is(err, tokens.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "customer " + id + " has no token " + r.PathValue("token_id")}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
