package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/app"
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

// followCatalog starts following the stores' catalog into a rater. Redis
// may be down at start: the rater then waits, empty, and readiness reports
// Redis. stop ends the following (the stores close the client).
func followCatalog(ctx context.Context, st *app.Stores, log *slog.Logger) *catalog {
	store, rc := st.Catalog, st.RC
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
	return &catalog{store: store, rater: rater, rc: rc, stop: func() { cancel(); wg.Wait() }}
}
