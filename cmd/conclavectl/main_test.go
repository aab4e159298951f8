package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestExitCodesAndErrors(t *testing.T) {
	for _, k := range []string{"CONCLAVE_API", "CONCLAVE_API_TOKEN", "CONCLAVE_API_JWT_SECRET"} {
		t.Setenv(k, "")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/peers" {
			io.WriteString(w, `[]`)
			return
		}
		w.WriteHeader(404)
		io.WriteString(w, `{"error":"no backend nosuch (name it by ID, URL or host)","code":"not_found"}`)
	}))
	defer srv.Close()

	var out, errb bytes.Buffer
	if code := run([]string{"--api", srv.URL, "show", "backend", "nosuch"}, &out, &errb); code != 1 {
		t.Fatalf("exit code %d", code)
	}
	if want := "error: no backend nosuch (name it by ID, URL or host) (HTTP 404)\n"; errb.String() != want || out.Len() != 0 {
		t.Fatalf("stderr %q, stdout %q", errb.String(), out.String())
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"--api", srv.URL, "show", "peers", "-o", "json"}, &out, &errb); code != 0 || out.String() != "[]\n" || errb.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"set", "backend", "-j", "{", "b-1"}, &out, &errb); code != 1 || !bytes.HasPrefix(errb.Bytes(), []byte("error: -j must be a JSON object")) {
		t.Fatalf("bad -j: exit %d, stderr %q", code, errb.String())
	}

	out.Reset()
	if code := run([]string{"--version"}, &out, &errb); code != 0 || out.String() != "conclavectl dev\n" {
		t.Fatalf("--version: exit %d, %q", code, out.String())
	}
}
