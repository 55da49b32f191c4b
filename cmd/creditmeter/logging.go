package main

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/creditmeter/creditmeter/internal/config"
)

var (
	logMu  sync.Mutex
	theLog = newLogger(os.Stderr, config.DefaultLog())
)

// newLogger writes to w at the level and in the format of l (validated).
func newLogger(w io.Writer, l config.Log) *slog.Logger {
	lv, err := l.SlogLevel()
	if err != nil {
		lv = slog.LevelInfo
	}
	o := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(l.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// setLogger makes l the logger of the command about to run (and slog's
// default, for packages that log through it).
func setLogger(l config.Log) {
	lg := newLogger(os.Stderr, l)
	logMu.Lock()
	theLog = lg
	logMu.Unlock()
	slog.SetDefault(lg)
}

// logger is the command's logger: --log-level and --log-format.
func logger() *slog.Logger {
	logMu.Lock()
	defer logMu.Unlock()
	return theLog
}
