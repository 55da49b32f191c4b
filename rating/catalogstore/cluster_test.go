package catalogstore_test

import "testing"

// clusterSuite names the suite whose subtests newStore gives a cluster client.
const clusterSuite = "TestStoreOnRedisCluster/"

// TestStoreOnRedisCluster is the catalog store's contract on Redis Cluster:
// every store test again on the shared cluster. The catalog's keys share the
// {catalog} hash tag, so its scripts run on one shard.
func TestStoreOnRedisCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"CreateIsIdempotentAndConflicts", TestCreateIsIdempotentAndConflicts},
		{"InvalidWritesLeaveNothing", TestInvalidWritesLeaveNothing},
		{"SubscriptionIdempotency", TestSubscriptionIdempotency},
		{"ReplacePlanKeepsSubscriptionsServed", TestReplacePlanKeepsSubscriptionsServed},
		{"FollowSwapsCatalogChangesIntoRater", TestFollowSwapsCatalogChangesIntoRater},
		{"ConcurrentCreatesMakeOneSubscription", TestConcurrentCreatesMakeOneSubscription},
		{"SyncCompilesOnlyNewSubscriptions", TestSyncCompilesOnlyNewSubscriptions},
	} {
		t.Run(tc.name, tc.fn)
	}
}
