package balance

import "testing"

// TestStoreOnRedisCluster is the store's contract on Redis Cluster: the main
// store tests again, each on the shared cluster (newEnv sees the suite's name
// and opens a cluster client). Every key of a subscription carries its hash
// tag, so each script runs on one shard.
func TestStoreOnRedisCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"BurnDownOrder", TestBurnDownOrder},
		{"PartialDrawsAcrossLinesAndBatchResult", TestPartialDrawsAcrossLinesAndBatchResult},
		{"LateEventsWithinGrace", TestLateEventsWithinGrace},
		{"ExpiryBreakageExactlyOnce", TestExpiryBreakageExactlyOnce},
		{"TopUpLimitsChargeAndIdempotency", TestTopUpLimitsChargeAndIdempotency},
		{"Adjustments", TestAdjustments},
		{"GrantIdempotency", TestGrantIdempotency},
		{"RedeliveryAndDuplicateIDs", TestRedeliveryAndDuplicateIDs},
		{"ApplyValidationAndUnknown", TestApplyValidationAndUnknown},
		{"LargestAmountsExact", TestLargestAmountsExact},
		{"LowBalanceCrossings", TestLowBalanceCrossings},
		{"ReplayAfterCrash", TestReplayAfterCrash},
		{"ConcurrentInvariant", TestConcurrentInvariant},
		{"CheckAllowsUpToEffectiveAvailable", TestCheckAllowsUpToEffectiveAvailable},
		{"EligibilityBoundaries", TestEligibilityBoundaries},
		{"RefusalKeepsSweep", TestRefusalKeepsSweep},
		{"JournalReplaysFirstResults", TestJournalReplaysFirstResults},
		{"RestoreLostAccount", TestRestoreLostAccount},
		{"ScriptsMatchModel", TestScriptsMatchModel},
		{"UniqueCountChargesFirstValueOnce", TestUniqueCountChargesFirstValueOnce},
		{"UniqueCountMixedLine", TestUniqueCountMixedLine},
	} {
		t.Run(tc.name, tc.fn)
	}
}
