package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// nodeUse is one Centrifugo node's resources over a scenario.
type nodeUse struct {
	name    string
	pid     int
	peakRSS int64
	cpu     float64 // share of one core
}

// meter samples the CPU time of the topology's processes and the machine's busy share.
type meter struct {
	nodes []nodeUse
	relay int
	kafka []int
	last  time.Time
}

type sample struct {
	at      time.Time
	cpu     map[int]time.Duration
	pg      map[int]time.Duration // every postgres process
	machine [2]int64              // busy, total jiffies
}

func newMeter(env map[string]string, relayPID int) *meter {
	m := &meter{relay: relayPID}
	if env["PGOUTBOX_TOPOLOGY"] == "cluster" {
		for _, n := range []string{"centrifugo-1", "centrifugo-2"} {
			m.nodes = append(m.nodes, nodeUse{name: n})
		}
		for _, n := range []string{"kafka-1", "kafka-2", "kafka-3"} {
			m.kafka = append(m.kafka, clusterPID(n))
		}
	} else {
		m.nodes = append(m.nodes, nodeUse{name: "centrifugo"})
		m.kafka = append(m.kafka, pidFile(os.ExpandEnv("$HOME/.cache/pgoutbox/kafka/kafka.pid")))
	}
	m.refreshNodes()
	return m
}

// refreshNodes looks the nodes' pids up again (a killed node comes back with another).
func (m *meter) refreshNodes() {
	for i := range m.nodes {
		if m.nodes[i].name == "centrifugo" {
			out, _ := exec.CommandContext(context.Background(), "deploy/local/centrifugo.sh", "pid").Output()
			m.nodes[i].pid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
		} else {
			m.nodes[i].pid = clusterPID(m.nodes[i].name)
		}
	}
}

func clusterPID(node string) int {
	out, _ := exec.CommandContext(context.Background(), "deploy/local/cluster.sh", "pid", node).Output()
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid
}

func pidFile(path string) int {
	b, _ := os.ReadFile(path) //nolint:gosec // the pid file of deploy/local/kafka.sh
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// peak records the nodes' RSS, at most once a second.
func (m *meter) peak() {
	if time.Since(m.last) < time.Second {
		return
	}
	m.last = time.Now()
	for i := range m.nodes {
		if rss := statusKB(m.nodes[i].pid, "VmRSS:") << 10; rss > m.nodes[i].peakRSS {
			m.nodes[i].peakRSS = rss
		}
		if m.nodes[i].pid == 0 || statusKB(m.nodes[i].pid, "VmRSS:") == 0 {
			m.refreshNodes()
		}
	}
}

func (m *meter) sample() sample {
	s := sample{at: time.Now(), cpu: map[int]time.Duration{}, pg: map[int]time.Duration{}}
	pids := []int{m.relay}
	pids = append(pids, m.kafka...)
	for _, n := range m.nodes {
		pids = append(pids, n.pid)
	}
	for _, p := range pids {
		s.cpu[p] = cpuTime(p)
	}
	// PostgreSQL: every postgres process on the machine (other users' backends included).
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "postgres" {
			s.pg[pid] = cpuTime(pid)
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
		for i, v := range f {
			n, _ := strconv.ParseInt(v, 10, 64)
			s.machine[1] += n
			if i != 3 && i != 4 { // idle, iowait
				s.machine[0] += n
			}
		}
	}
	return s
}

func (m *meter) fill(r *result, a, b sample) {
	secs := b.at.Sub(a.at).Seconds()
	share := func(pid int) float64 { return (b.cpu[pid] - a.cpu[pid]).Seconds() / secs }
	r.relayCPU = share(m.relay)
	for _, k := range m.kafka {
		r.kafkaCPU += share(k)
	}
	// Backends that ended during the run are missed: a lower bound.
	var pg time.Duration
	for pid, t := range b.pg {
		pg += t - a.pg[pid]
	}
	r.pgCPU = pg.Seconds() / secs
	if d := b.machine[1] - a.machine[1]; d > 0 {
		r.busy = float64(b.machine[0]-a.machine[0]) / float64(d)
	}
	for _, n := range m.nodes {
		n.cpu = share(n.pid) // a node killed mid-run: its successor's share, from its start
		r.nodes = append(r.nodes, n)
	}
}

// cpuTime is the user and system time of pid (0 if it is gone).
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || pid == 0 {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil || pid == 0 {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func printTable(o options, rows []result) {
	fmt.Printf("\nFan-out: %d subscribers on %d channels, %d commits/s for %v (commit→client = the commit's clock_timestamp() to the subscriber's receive time)\n\n",
		o.subscribers, o.channels, o.commitRate, o.duration)
	fmt.Println("| scenario | deliveries/s | p50 | p99 | p99.9 | gaps | dups | re-syncs | Centrifugo peak RSS / CPU per node | relay CPU | Kafka CPU | PostgreSQL CPU | machine busy | after the kill |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		var nodes []string
		for _, n := range r.nodes {
			nodes = append(nodes, fmt.Sprintf("%s %d MiB / %.0f%%", n.name, n.peakRSS>>20, n.cpu*100))
		}
		kill := ""
		if r.affected > 0 {
			kill = fmt.Sprintf("%d clients back, %d recovered, all within %v", r.affected, r.recoveries, ms(r.recovered))
		}
		fmt.Printf("| %s | %.0f | %v | %v | %v | %d | %d | %d | %s | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %s |\n",
			r.name, float64(r.deliveries)/r.seconds, ms(r.p50), ms(r.p99), ms(r.p999), r.gaps, r.dups, r.resyncs,
			strings.Join(nodes, "; "), r.relayCPU*100, r.kafkaCPU*100, r.pgCPU*100, r.busy*100, kill)
	}
}
