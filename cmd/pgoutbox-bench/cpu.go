package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// CPU is the processor time a reader of the backlog cost, by process: on a shared machine the
// wall time depends on everyone else's load, the CPU time much less.
type CPU struct {
	Reader    float64 `json:"reader_seconds"`    // the relay, or pg_recvlogical
	Walsender float64 `json:"walsender_seconds"` // the slot's walsender (decoding, pgoutput)
	Kafka     float64 `json:"kafka_seconds"`     // the broker, all clients included
}

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuTime is the user and system time pid has used.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces: count from after it.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// cpuMeter follows, while a reader drains a backlog, the CPU time of the slot's walsender (a
// new process for each replication connection) and of the Kafka broker.
type cpuMeter struct {
	mu        sync.Mutex
	walsender time.Duration // its latest reading: it exits with the connection
	kafkaPID  int
	kafka0    time.Duration
	cancel    context.CancelFunc
	done      chan struct{}
}

func (b *bench) meterCPU(ctx context.Context, slot string) *cpuMeter {
	ctx, cancel := context.WithCancel(ctx)
	m := &cpuMeter{cancel: cancel, done: make(chan struct{}), kafkaPID: kafkaPID(b.root)}
	if m.kafkaPID > 0 {
		m.kafka0, _ = cpuTime(m.kafkaPID)
	}
	go func() {
		defer close(m.done)
		conn, err := pgx.Connect(ctx, b.opts.databaseURL)
		if err != nil {
			return
		}
		defer func() { _ = conn.Close(context.Background()) }()
		pid := 0
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if pid == 0 {
				_ = conn.QueryRow(ctx, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid)
			}
			if pid != 0 {
				if t, err := cpuTime(pid); err == nil {
					m.mu.Lock()
					m.walsender = t
					m.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// stop ends the metering and returns the walsender's and the broker's CPU time; the caller
// fills the reader's in.
func (m *cpuMeter) stop() CPU {
	m.cancel()
	<-m.done
	c := CPU{Walsender: m.walsender.Seconds()}
	if m.kafkaPID > 0 {
		if t, err := cpuTime(m.kafkaPID); err == nil {
			c.Kafka = (t - m.kafka0).Seconds()
		}
	}
	return c
}

// postgresCPU is the CPU time of each postgres process on the machine, by pid.
func postgresCPU() map[int]time.Duration {
	entries, _ := os.ReadDir("/proc")
	out := map[int]time.Duration{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			if t, err := cpuTime(pid); err == nil {
				out[pid] = t
			}
		}
	}
	return out
}

// cpuSince is what the processes of after used since before: a process started meanwhile
// counts whole, one that exited meanwhile is missed (a lower bound).
func cpuSince(before, after map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range after {
		d += t - before[pid]
	}
	return d
}

// machineCPU is the first line of /proc/stat: the time all cores spent busy and in all.
type machineCPU struct{ busy, total int64 }

func readMachineCPU() machineCPU {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	var m machineCPU
	for i, f := range strings.Fields(line)[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return machineCPU{}
		}
		m.total += v
		if i != 3 && i != 4 { // idle and iowait are not busy
			m.busy += v
		}
	}
	return m
}

// busySince is the share of all cores that were busy since start; 0 when unknown.
func (m machineCPU) busySince(start machineCPU) float64 {
	if m.total <= start.total || start.total == 0 {
		return 0
	}
	return float64(m.busy-start.busy) / float64(m.total-start.total)
}

// kafkaPID is the broker's process id, from deploy/local/kafka.sh status ("… (pid 4773, …)");
// 0 when unknown (a broker not started by the script).
func kafkaPID(root string) int {
	out, err := exec.CommandContext(context.Background(), filepath.Join(root, "deploy/local/kafka.sh"), "status").Output() //nolint:gosec // our own script
	if err != nil {
		return 0
	}
	s := string(out)
	i := strings.Index(s, "(pid ")
	if i < 0 {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimRight(strings.Fields(s[i+len("(pid "):])[0], ",)"))
	return pid
}
