package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/realtimehub/realtime"
)

// jwtIdentity returns an AuthenticateIdentity function that accepts HS256
// tokens signed with secret, from "Authorization: Bearer <token>" or, for
// browsers (which cannot set headers on a WebSocket), the "token" query
// parameter. The user ID is the "sub" claim; "exp" is required and becomes
// the connection's expiry (close 3000 then, unless refreshed). The other
// registered claims are kept in the Identity's Claims.
func jwtIdentity(secret []byte) func(*http.Request) (*realtime.Identity, error) {
	parse := jwtParser(secret)
	return func(r *http.Request) (*realtime.Identity, error) {
		raw := r.URL.Query().Get("token")
		// The scheme is case-insensitive (RFC 7235 §2.1): "bearer" works too.
		if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			raw = strings.TrimSpace(tok)
		}
		if raw == "" {
			return nil, errors.New("no token")
		}
		return parse(raw)
	}
}

// jwtRefresh returns the Refresh hook: the same checks on a token a client
// sends in a refresh command.
func jwtRefresh(secret []byte) func(context.Context, string) (*realtime.Identity, error) {
	parse := jwtParser(secret)
	return func(_ context.Context, raw string) (*realtime.Identity, error) { return parse(raw) }
}

// jwtParser returns a function that checks an HS256 token signed with
// secret and returns its Identity.
func jwtParser(secret []byte) func(string) (*realtime.Identity, error) {
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	key := func(*jwt.Token) (any, error) { return secret, nil }
	return func(raw string) (*realtime.Identity, error) {
		claims := jwt.MapClaims{}
		if _, err := parser.ParseWithClaims(raw, claims, key); err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		sub, _ := claims.GetSubject()
		if sub == "" {
			return nil, errors.New("token has no subject")
		}
		exp, err := claims.GetExpirationTime()
		if err != nil || exp == nil {
			return nil, errors.New("token has no expiry")
		}
		return &realtime.Identity{UserID: sub, ExpiresAt: exp.Time, Claims: claims}, nil
	}
}

// MintToken returns an HS256 token for user signed with secret, valid for
// ttl: what a backend gives its clients (and what `make token` prints for
// development).
func MintToken(secret []byte, user string, ttl time.Duration) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString(secret)
}

// apiKeyAuth returns the server API's Authorize: the request must carry
// "Authorization: apikey <key>" (the scheme is case-insensitive).
func apiKeyAuth(key string) func(*http.Request) error {
	return func(r *http.Request) error {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "apikey") ||
			subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(key)) != 1 {
			return errors.New("wrong or missing API key")
		}
		return nil
	}
}
