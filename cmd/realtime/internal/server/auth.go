package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// jwtAuth returns an Authenticate function that accepts HS256 tokens signed
// with secret, from "Authorization: Bearer <token>" or, for browsers (which
// cannot set headers on a WebSocket), the "token" query parameter. The user
// ID is the "sub" claim; "exp" is required.
func jwtAuth(secret []byte) func(*http.Request) (string, error) {
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	key := func(*jwt.Token) (any, error) { return secret, nil }
	return func(r *http.Request) (string, error) {
		raw := r.URL.Query().Get("token")
		// The scheme is case-insensitive (RFC 7235 §2.1): "bearer" works too.
		if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			raw = strings.TrimSpace(tok)
		}
		if raw == "" {
			return "", errors.New("no token")
		}
		var claims jwt.RegisteredClaims
		if _, err := parser.ParseWithClaims(raw, &claims, key); err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		if claims.Subject == "" {
			return "", errors.New("token has no subject")
		}
		return claims.Subject, nil
	}
}
