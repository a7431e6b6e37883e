package testenv

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// PostgresCPU is the CPU time (user and system) used so far by the
// PostgreSQL cluster that serves backendPID: its postmaster and every child
// (backends, WAL writer, checkpointer, …), read from /proc. Benchmarks take
// it before and after a measured phase to report CPU-ms per operation on
// the database side. ok is false where /proc does not show the processes.
// Backends that exited between two samples are not counted: measure with a
// pool whose connections stay open.
func PostgresCPU(backendPID int) (d time.Duration, ok bool) {
	pm, _, ok := procStat(strconv.Itoa(backendPID))
	if !ok {
		return 0, false
	}
	_, ticks, ok := procStat(pm)
	if !ok {
		return 0, false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range ents {
		if n := e.Name(); n[0] < '0' || n[0] > '9' {
			continue
		}
		if pp, t, ok := procStat(e.Name()); ok && pp == pm {
			ticks += t
		}
	}
	// Linux reports clock ticks of 1/100 s (USER_HZ).
	return time.Duration(ticks) * 10 * time.Millisecond, true
}

// procStat reads a process's parent pid and its user+system clock ticks.
func procStat(pid string) (ppid string, ticks int64, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid … utime stime (fields 14 and 15)
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 > len(b) {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return "", 0, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return f[1], ut + st, true
}
