package auth

import (
	"testing"
	"time"
)

func TestMintVerify(t *testing.T) {
	t.Parallel()
	tok, err := Mint("s3cret", "ops", []string{ScopeAgent}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify("s3cret", tok)
	if err != nil || !c.HasScope(ScopeAgent) || c.HasScope(ScopePeer) || c.Subject != "ops" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := Verify("other", tok); err == nil {
		t.Fatal("wrong secret verified")
	}
	old, _ := Mint("s3cret", "ops", []string{ScopeAdmin}, -time.Hour)
	if _, err := Verify("s3cret", old); err == nil {
		t.Fatal("expired token verified")
	}
	admin, _ := Mint("s3cret", "ops", []string{ScopeAdmin}, 0)
	if c, err := Verify("s3cret", admin); err != nil || !c.HasScope(ScopePeer) {
		t.Fatal("admin scope should grant every scope")
	}
	if _, err := Verify("s3cret", "not.a.token"); err == nil {
		t.Fatal("garbage verified")
	}
	if PeerTokenSource("", "x") != nil {
		t.Fatal("no secret should give no token source")
	}
	src := PeerTokenSource("s3cret", "p1")
	if c, err := Verify("s3cret", src()); err != nil || !c.HasScope(ScopePeer) {
		t.Fatal("peer token invalid")
	}
}
