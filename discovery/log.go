package discovery

import (
	"context"
	"log/slog"
	"strings"
)

// logBridge turns memberlist's log lines ("[WARN] memberlist: …") into
// slog records at debug level, keeping memberlist's own level as an
// attribute. memberlist never logs key material.
type logBridge struct{ log *slog.Logger }

func (b *logBridge) Write(p []byte) (int, error) {
	if !b.log.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	line := strings.TrimSpace(string(p))
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = strings.ToLower(line[1:i]), strings.TrimSpace(line[i+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	b.log.Debug(line, "source", "memberlist", "memberlist_level", level)
	return len(p), nil
}
