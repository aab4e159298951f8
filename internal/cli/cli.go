// Package cli holds what Conclave's binaries share on the command line:
// flags backed by environment variables, logging setup, and version text.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// EnvFlags maps flag names to the environment variables that back them.
type EnvFlags map[string]string

// Apply sets every flag not given on the command line from its environment
// variable, if that is set: a flag always wins over the environment.
func (e EnvFlags) Apply(fs *pflag.FlagSet) error {
	for name, env := range e {
		f := fs.Lookup(name)
		if f == nil || f.Changed {
			continue
		}
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("environment %s=%q: %w", env, v, err)
		}
	}
	return nil
}

// Annotate appends "(env NAME)" to each flag's usage, for --help.
func (e EnvFlags) Annotate(fs *pflag.FlagSet) {
	for name, env := range e {
		if f := fs.Lookup(name); f != nil {
			f.Usage += " (env " + env + ")"
		}
	}
}

// LevelTrace is below debug: very chatty internals.
const LevelTrace = slog.Level(-8)

// ParseLevel accepts trace, debug, info, warn, error, or b3scale's numeric
// levels (-1 trace … 3 error).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info", "1":
		return slog.LevelInfo, nil
	case "trace", "-1":
		return LevelTrace, nil
	case "debug", "0":
		return slog.LevelDebug, nil
	case "warn", "warning", "2":
		return slog.LevelWarn, nil
	case "error", "3":
		return slog.LevelError, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		return slog.Level(n), fmt.Errorf("unknown log level %d (want -1..3)", n)
	}
	return slog.LevelInfo, fmt.Errorf("unknown log level %q (want trace, debug, info, warn, error)", s)
}

// NewLogger builds the process logger from CONCLAVE_LOG_LEVEL and
// CONCLAVE_LOG_FORMAT (structured = JSON, plain = text), writing to w.
func NewLogger(w io.Writer) (*slog.Logger, error) {
	level, err := ParseLevel(os.Getenv("CONCLAVE_LOG_LEVEL"))
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := strings.ToLower(os.Getenv("CONCLAVE_LOG_FORMAT")); f {
	case "", "structured", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "plain", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("unknown CONCLAVE_LOG_FORMAT %q (want structured or plain)", f)
	}
}

// ParseBool reads a boolean environment value ("1", "true", "yes", "on").
func ParseBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
