package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// costSample is what a cost model compares before and after a measured
// window: CPU time of this process and of a redis-server, and the work
// redis-server did.
type costSample struct {
	selfCPU  time.Duration
	redisCPU time.Duration
	// commands counts every command redis-server executed, those run
	// inside scripts included (INFO commandstats).
	commands int64
	// usec is redis-server's time per command name (INFO commandstats:
	// scripts' time includes the commands they ran).
	usec map[string]int64
	// reads counts socket reads redis-server processed (total_reads_processed):
	// one per round trip, a pipeline included.
	reads int64
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sampleCost reads this process's CPU time and redis-server's INFO.
func sampleCost(rdb *redis.Client) (costSample, error) {
	s := costSample{selfCPU: selfCPU(), usec: map[string]int64{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "cpu", "stats", "commandstats").Result()
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "used_cpu_user" || k == "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			s.redisCPU += time.Duration(f * float64(time.Second))
		case k == "total_reads_processed":
			s.reads, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(k, "cmdstat_"):
			// calls=N,usec=…
			calls, rest, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			n, _ := strconv.ParseInt(calls, 10, 64)
			s.commands += n
			usec, _, _ := strings.Cut(strings.TrimPrefix(rest, "usec="), ",")
			u, _ := strconv.ParseInt(usec, 10, 64)
			s.usec[strings.TrimPrefix(k, "cmdstat_")] = u
		}
	}
	return s, nil
}

// printRedisCostModel prints the cost per operation between two samples.
// The INFO calls themselves (two) are negligible against thousands of ops.
func printRedisCostModel(title string, ops int64, before, after costSample, process string) {
	if ops <= 0 {
		return
	}
	per := func(d time.Duration) string {
		return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)/float64(ops))
	}
	perN := func(n int64) string { return fmt.Sprintf("%.2f", float64(n)/float64(ops)) }
	fmt.Printf("\ncost model, %s, per operation (%d operations):\n", title, ops)
	fmt.Printf("  %-58s %s\n", "CPU-ms "+process, per(after.selfCPU-before.selfCPU))
	fmt.Printf("  %-58s %s\n", "CPU-ms redis-server", per(after.redisCPU-before.redisCPU))
	fmt.Printf("  %-58s %s\n", "CPU-ms total", per(after.selfCPU-before.selfCPU+after.redisCPU-before.redisCPU))
	fmt.Printf("  %-58s %s\n", "Redis round trips (socket reads by redis-server)", perN(after.reads-before.reads))
	fmt.Printf("  %-58s %s\n", "Redis commands executed (those inside scripts included)", perN(after.commands-before.commands))
	type cmd struct {
		name string
		us   int64
	}
	var cmds []cmd
	for name, u := range after.usec {
		if d := u - before.usec[name]; d > 0 {
			cmds = append(cmds, cmd{name, d})
		}
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].us > cmds[j].us })
	var top []string
	for i, c := range cmds {
		if i == 6 {
			break
		}
		top = append(top, fmt.Sprintf("%s %.1f", c.name, float64(c.us)/float64(ops)))
	}
	fmt.Printf("  %-58s %s\n", "Redis µs by command (evalsha includes its commands)", strings.Join(top, ", "))
}
