package bench

import (
	"os"
	"testing"
)

// The per-process CPU figures read /proc/<pid>/stat: this process is found
// as the engine, with the CPU it has spent, which only grows.
func TestSampleProcsFindsEngine(t *testing.T) {
	before := sampleProcs()
	x := 0
	for i := 0; i < 20_000_000; i++ {
		x += i % 7
	}
	_ = x
	after := sampleProcs()
	me, ok := after[os.Getpid()]
	if !ok || me.Name != "engine (bench process)" || me.CPUSeconds <= 0 {
		t.Fatalf("self: %+v, found %v", me, ok)
	}
	d := procDelta(before, after, 1000, 1)
	for _, p := range d {
		if p.PID == os.Getpid() && (p.CPUSeconds < 0 || p.UsPerEvent != 1e6*p.CPUSeconds/1000) {
			t.Errorf("delta %+v", p)
		}
	}
}
