package natsserver

import (
	"context"
	"fmt"
	"log/slog"
)

// serverLog writes the server's own lines to a slog.Logger: its warnings
// (a JetStream API queue over its limit dropping requests, a slow
// consumer, a route lost) and errors are what an operator needs to see;
// its notices (startup, a route made) are informational; debug and trace
// lines are not enabled.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Noticef(format string, v ...any) { l.put(slog.LevelInfo, format, v) }
func (l serverLog) Warnf(format string, v ...any)   { l.put(slog.LevelWarn, format, v) }
func (l serverLog) Errorf(format string, v ...any)  { l.put(slog.LevelError, format, v) }

// Fatalf is an error the server stops for; the process goes on (the hub
// sees the server gone and says so).
func (l serverLog) Fatalf(format string, v ...any) { l.put(slog.LevelError, format, v) }
func (l serverLog) Debugf(format string, v ...any) { l.put(slog.LevelDebug, format, v) }
func (l serverLog) Tracef(format string, v ...any) { l.put(slog.LevelDebug, format, v) }

func (l serverLog) put(level slog.Level, format string, v []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}
