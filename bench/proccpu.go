package bench

import (
	"os"
	"strconv"
	"strings"
)

// ProcCPU is one local process's CPU over a drain: user + system time from
// /proc/<pid>/stat before and after, per event. The engine is this process
// (the load generator is idle while it drains); the private broker is its
// child; ClickHouse is every clickhouse process on the box (shared: other
// clients' queries count too). Redis is measured by INFO cpu (RedisCPU).
type ProcCPU struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`
	UsPerEvent float64 `json:"us_per_event"`
	Util       float64 `json:"util"` // CPU seconds / drain seconds (1 = a whole core)
}

// userHZ is the kernel's clock tick for /proc times (USER_HZ, 100 on Linux).
const userHZ = 100

// procSample maps pid to (name, CPU seconds so far) for the processes above.
type procSample map[int]ProcCPU

func sampleProcs() procSample {
	self := os.Getpid()
	out := procSample{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, secs, ok := procStat(pid)
		if !ok {
			continue
		}
		var name string
		switch {
		case pid == self:
			name = "engine (bench process)"
		case ppid == self:
			name = "broker (" + comm + ")"
		case strings.HasPrefix(comm, "clickhouse"):
			name = "clickhouse"
		default:
			continue
		}
		out[pid] = ProcCPU{Name: name, PID: pid, CPUSeconds: secs}
	}
	return out
}

// procStat reads a process's command name, parent and utime+stime.
func procStat(pid int) (string, int, float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, 0, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", 0, 0, false
	}
	f := strings.Fields(s[close+1:]) // state ppid ... utime(12) stime(13), counted from state = 0
	if len(f) < 13 {
		return "", 0, 0, false
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return "", 0, 0, false
	}
	return s[open+1 : close], ppid, (ut + st) / userHZ, true
}

// procDelta is each process's CPU between two samples, per event.
func procDelta(before, after procSample, events int64, secs float64) []ProcCPU {
	var out []ProcCPU
	for pid, a := range after {
		b, ok := before[pid]
		if !ok || events <= 0 || secs <= 0 {
			continue
		}
		d := a.CPUSeconds - b.CPUSeconds
		out = append(out, ProcCPU{Name: a.Name, PID: pid, CPUSeconds: d, UsPerEvent: 1e6 * d / float64(events), Util: d / secs})
	}
	return out
}
