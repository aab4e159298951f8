// Command probe is the health check of Conclave's container images, which
// are built FROM scratch and so have no shell or curl: it GETs one URL and
// exits 0 when the answer is 200, 1 otherwise.
//
//	probe [URL]    default http://127.0.0.1:42353/readyz (PROBE_URL overrides it)
//
// docker-compose.yml runs it as `test: ["CMD", "/probe"]`.
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	url := "http://127.0.0.1:42353/readyz"
	if v := os.Getenv("PROBE_URL"); v != "" {
		url = v
	}
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if url == "-h" || url == "--help" {
		fmt.Println("usage: probe [URL]   (exit 0 when URL answers 200; default http://127.0.0.1:42353/readyz)")
		return
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "probe: %s answered %d\n", url, resp.StatusCode)
		os.Exit(1)
	}
}
