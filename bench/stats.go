package bench

import (
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Hist is a log-bucketed latency histogram (2% relative precision, 1 µs to
// ~25 min); the maximum is exact. Not safe for concurrent use.
type Hist struct {
	b     []uint64
	n     uint64
	max   float64
	sumUs float64
}

const histBase = 1.02

var histLogBase = math.Log(histBase)

func histIndex(us float64) int {
	if us < 1 {
		return 0
	}
	return int(math.Log(us)/histLogBase) + 1
}

// Add records one latency.
func (h *Hist) Add(d time.Duration) {
	us := float64(d) / 1e3
	if us < 0 {
		us = 0
	}
	i := histIndex(us)
	if i >= len(h.b) {
		nb := make([]uint64, i+64)
		copy(nb, h.b)
		h.b = nb
	}
	h.b[i]++
	h.n++
	h.sumUs += us
	if us > h.max {
		h.max = us
	}
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	if len(o.b) > len(h.b) {
		nb := make([]uint64, len(o.b))
		copy(nb, h.b)
		h.b = nb
	}
	for i, c := range o.b {
		h.b[i] += c
	}
	h.n += o.n
	h.sumUs += o.sumUs
	h.max = max(h.max, o.max)
}

// Count of recorded values.
func (h *Hist) Count() uint64 { return h.n }

// Quantile q (0..1) in milliseconds: the upper edge of the bucket holding it.
func (h *Hist) Quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.n)))
	if want == 0 {
		want = 1
	}
	var c uint64
	for i, x := range h.b {
		c += x
		if c >= want {
			if i == 0 {
				return 0.001
			}
			return math.Min(math.Pow(histBase, float64(i))/1e3, h.max/1e3)
		}
	}
	return h.max / 1e3
}

// Max in milliseconds.
func (h *Hist) Max() float64 { return h.max / 1e3 }

// Mean in milliseconds.
func (h *Hist) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sumUs / float64(h.n) / 1e3
}

// Latency is a summary of a Hist, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Summary of h.
func (h *Hist) Summary() Latency {
	return Latency{Count: h.n, P50: h.Quantile(.5), P90: h.Quantile(.9), P99: h.Quantile(.99), P999: h.Quantile(.999), Max: h.Max(), Mean: h.Mean()}
}

// rssBytes is the resident set size of a process (0: self).
func rssBytes(pid int) int64 {
	path := "/proc/self/statm"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/statm"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func heapBytes() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
