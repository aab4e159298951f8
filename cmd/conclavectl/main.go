// Command conclavectl operates a Conclave cluster over its admin API.
package main

import (
	"fmt"
	"os"

	"github.com/conclave-lb/conclave/ctl"
)

var version = "dev"

func main() {
	if err := ctl.NewRootCommand(version).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
