package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// slogRedis is go-redis's logger writing through slog, so its lines (a
// failed dial, a connection pool warning) have the service's format and level.
type slogRedis struct{ log *slog.Logger }

func (l slogRedis) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	l.log.WarnContext(ctx, "redis client", "msg", msg)
}

// routeRedisLogs sends go-redis's own log lines to log. go-redis has one
// process-wide logger, so the last call wins.
func routeRedisLogs(log *slog.Logger) { redis.SetLogger(slogRedis{log}) }
