package peercall

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A peer's answers as the client sees them: the bearer token and the body
// sent, a decoded answer, a not-leader refusal (retry elsewhere) and a
// failure without an error body.
func TestCallAnswersAndFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("got %s with Authorization %q", r.Method, r.Header.Get("Authorization"))
		}
		switch r.URL.Path {
		case Prefix + "readindex":
			b, _ := io.ReadAll(r.Body)
			if string(b) != "ping" {
				t.Errorf("body %q", b)
			}
			w.Write(JSON(ReadIndexResponse{Index: 42}))
		case Prefix + "apply":
			status, body := NotLeader()
			w.WriteHeader(status)
			w.Write(body)
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	c := New(func() string { return "tok" }, nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	var ri ReadIndexResponse
	if err := c.Call(ctx, addr, "readindex", []byte("ping"), &ri); err != nil || ri.Index != 42 {
		t.Fatalf("readindex: %+v, %v", ri, err)
	}
	var pe *Error
	if err := c.Call(ctx, addr, "apply", nil, nil); !errors.As(err, &pe) ||
		pe.Status != http.StatusServiceUnavailable || !pe.NotLeader || pe.Msg != "not the leader" {
		t.Fatalf("apply: %#v", err)
	}
	if err := c.Call(ctx, addr, "other", nil, nil); !errors.As(err, &pe) ||
		pe.Status != http.StatusTeapot || pe.NotLeader || !strings.Contains(pe.Msg, "answered 418") {
		t.Fatalf("other: %#v", err)
	}
}
