// Command conclavectl operates a Conclave cluster over its admin API.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/conclave-lb/conclave/ctl"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes conclavectl with args and returns the exit code: 0, or 1
// after printing "error: …" on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := ctl.NewRootCommand(version)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}
