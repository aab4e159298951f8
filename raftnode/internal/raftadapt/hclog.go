package raftadapt

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes raft's hclog output into our slog logger, one level
// lower than raft chooses: raft is chatty at info about routine events.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

// NewLogger is raft's logger writing to l (component=raft).
func NewLogger(l *slog.Logger) hclog.Logger {
	return &hclogAdapter{l: l.With("component", "raft")}
}

func (h *hclogAdapter) emit(level slog.Level, msg string, args ...any) {
	all := append(append([]any{}, h.args...), args...)
	h.l.Log(context.Background(), level, msg, all...)
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	switch level {
	case hclog.Trace, hclog.Debug:
		h.Debug(msg, args...)
	case hclog.Info:
		h.Info(msg, args...)
	case hclog.Warn:
		h.Warn(msg, args...)
	default:
		h.Error(msg, args...)
	}
}
func (h *hclogAdapter) Trace(msg string, args ...interface{}) {
	h.emit(slog.LevelDebug-4, msg, args...)
}
func (h *hclogAdapter) Debug(msg string, args ...interface{}) {
	h.emit(slog.LevelDebug-4, msg, args...)
}
func (h *hclogAdapter) Info(msg string, args ...interface{})  { h.emit(slog.LevelDebug, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...interface{})  { h.emit(slog.LevelWarn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...interface{}) { h.emit(slog.LevelError, msg, args...) }
func (h *hclogAdapter) IsTrace() bool                         { return false }
func (h *hclogAdapter) IsDebug() bool                         { return h.l.Enabled(context.Background(), slog.LevelDebug) }
func (h *hclogAdapter) IsInfo() bool                          { return true }
func (h *hclogAdapter) IsWarn() bool                          { return true }
func (h *hclogAdapter) IsError() bool                         { return true }
func (h *hclogAdapter) ImpliedArgs() []interface{}            { return h.args }
func (h *hclogAdapter) With(args ...interface{}) hclog.Logger {
	return &hclogAdapter{l: h.l, name: h.name, args: append(append([]any{}, h.args...), args...)}
}
func (h *hclogAdapter) Name() string { return h.name }
func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{l: h.l.With("sub", name), name: name, args: h.args}
}
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger { return h.Named(name) }
func (h *hclogAdapter) SetLevel(hclog.Level)                {}
func (h *hclogAdapter) GetLevel() hclog.Level               { return hclog.Info }
func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelInfo)
}
func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(nil).Writer()
}
