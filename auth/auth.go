// Package auth mints and verifies the HS256 JWTs that guard the admin API
// and peer-to-peer calls. Scopes are space-separated, as in OAuth and b3scale.
package auth

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scopes.
const (
	ScopeAdmin = "conclave:admin" // everything
	ScopeAgent = "conclave:agent" // register and update its own node only
	ScopePeer  = "conclave:peer"  // peer-to-peer calls between conclaved peers
)

// Claims are the token's claims.
type Claims struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

// HasScope reports whether the token grants s (admin grants everything).
func (c *Claims) HasScope(s string) bool {
	scopes := strings.Fields(c.Scope)
	return slices.Contains(scopes, s) || slices.Contains(scopes, ScopeAdmin)
}

// Mint signs a token for subject with the given scopes; ttl 0 means no expiry.
func Mint(secret, subject string, scopes []string, ttl time.Duration) (string, error) {
	if secret == "" {
		return "", errors.New("auth: no JWT secret set")
	}
	now := time.Now()
	c := Claims{Scope: strings.Join(scopes, " "), RegisteredClaims: jwt.RegisteredClaims{
		Subject: subject, IssuedAt: jwt.NewNumericDate(now),
	}}
	if ttl != 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

// Verify checks a token's signature (HS256 only) and expiry.
func Verify(secret, token string) (*Claims, error) {
	if secret == "" {
		return nil, errors.New("auth: no JWT secret set")
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(30*time.Second))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// PeerTokenSource mints short-lived peer tokens and reuses each for a while.
func PeerTokenSource(secret, id string) func() string {
	if secret == "" {
		return nil
	}
	var (
		tok     string
		expires time.Time
	)
	var mu = make(chan struct{}, 1)
	return func() string {
		mu <- struct{}{}
		defer func() { <-mu }()
		if time.Until(expires) < time.Minute {
			t, err := Mint(secret, "peer:"+id, []string{ScopePeer}, 10*time.Minute)
			if err != nil {
				return ""
			}
			tok, expires = t, time.Now().Add(10*time.Minute)
		}
		return tok
	}
}
