package bench

import "testing"

// A node restarted during the drain (a crash, a failover test) has a new
// INFO cpu counter: its CPU over the drain is unknown, not the difference
// of two processes' counters, and it adds nothing to the per-event sums.
func TestCPUDeltaOfARestartedNode(t *testing.T) {
	before := map[string]cpuSample{
		"a:1": {role: "master", cpu: 10, runID: "r1"},
		"b:2": {role: "master", cpu: 4, runID: "r2"},
	}
	after := map[string]cpuSample{
		"a:1": {role: "master", cpu: 2.5, runID: "r9"}, // restarted
		"b:2": {role: "master", cpu: 7, runID: "r2"},
	}
	got := cpuDelta(before, after, map[string]int64{"a:1": 1000, "b:2": 1000}, 2000, 10)
	if len(got) != 2 {
		t.Fatalf("%d nodes, want 2: %+v", len(got), got)
	}
	a, b := got[0], got[1]
	if !a.Restarted || a.CPUSeconds != 0 || a.UsPerEvent != 0 || a.UsPerEventAll != 0 || a.Util != 0 {
		t.Errorf("restarted node: %+v, want Restarted and no CPU figures", a)
	}
	if b.Restarted || b.CPUSeconds != 3 || b.UsPerEvent != 3000 || b.UsPerEventAll != 1500 {
		t.Errorf("steady node: %+v, want 3 s, 3000 µs per shard event, 1500 µs per drain event", b)
	}
}
