package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/rating"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// catalogRefresh is how often serve checks the catalog version; catalog
// changes reach the rater within it.
const catalogRefresh = 250 * time.Millisecond

// catalog is the running catalog: the Redis store and a rater kept current.
type catalog struct {
	store *catalogstore.Store
	rater *rating.Rater
	rc    redis.UniversalClient
	stop  func()
}

// openCatalog connects the catalog store and starts following it into a
// rater. Redis may be down at start: the rater then waits, empty, and readiness
// reports Redis.
func openCatalog(ctx context.Context, cfg config.Redis, prefix string, log *slog.Logger) (*catalog, error) {
	rc, conn, err := config.NewRedisClient(cfg, config.RedisTuning{})
	if err != nil {
		return nil, err
	}
	// A wrong TLS, password or ACL setting stops serve here; Redis being
	// down does not (it may come up later).
	actx, acancel := context.WithTimeout(ctx, 2*time.Second)
	err = config.CheckRedisACL(actx, rc, conn, prefix)
	acancel()
	if se := (*config.SettingError)(nil); errors.As(err, &se) {
		rc.Close()
		return nil, err
	}
	store, err := catalogstore.New(rc, prefix)
	if err != nil {
		rc.Close()
		return nil, err
	}
	rater := rating.NewRater(nil)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last string
		store.Follow(ctx, rater, catalogRefresh, func(err error) {
			// Log a repeated error once, not every tick.
			if msg := err.Error(); msg != last {
				last = msg
				log.Warn("catalog refresh", "err", err)
			}
		})
	}()
	return &catalog{store: store, rater: rater, rc: rc, stop: func() { cancel(); wg.Wait(); rc.Close() }}, nil
}
