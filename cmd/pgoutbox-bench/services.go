package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// Machine describes where the figures were measured: they mean little without it, and this
// machine is shared, so the load at the start is part of the description.
type Machine struct {
	Cores      int     `json:"cores"`
	CPU        string  `json:"cpu"`
	MemoryMiB  int64   `json:"memory_mib"`
	Kernel     string  `json:"kernel"`
	Go         string  `json:"go"`
	PostgreSQL string  `json:"postgresql"`
	Kafka      string  `json:"kafka"`
	LoadAvg1   float64 `json:"load_avg_1m_at_start"`
	// OtherSlots are replication slots of others on the same cluster at the start: their
	// walsenders decode the same WAL and compete for the same two cores.
	OtherSlots []string `json:"other_slots_at_start"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%d cores (%s), %.1f GiB RAM, Linux %s, %s, PostgreSQL %s, Kafka %s; load average %.2f at start",
		m.Cores, m.CPU, float64(m.MemoryMiB)/1024, m.Kernel, m.Go, m.PostgreSQL, m.Kafka, m.LoadAvg1)
}

// checkServices fails with the fix when PostgreSQL or Kafka does not answer.
func (b *bench) checkServices(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := harness.CheckPostgres(cctx, b.opts.databaseURL); err != nil {
		return err
	}
	return harness.CheckKafka(cctx, b.brokers())
}

// loadAverage is the machine's 1-minute load average; 0 when it cannot be read.
func loadAverage() float64 {
	var avg float64
	if out, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(out), &avg)
	}
	return avg
}

// describeMachine reads the machine's cores, memory and versions; what cannot be read stays empty.
func (b *bench) describeMachine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: cpuModel(), MemoryMiB: memTotalMiB()}
	if out, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	m.LoadAvg1 = loadAverage()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(cctx, b.opts.databaseURL); err == nil {
		_ = conn.QueryRow(cctx, "SHOW server_version").Scan(&m.PostgreSQL)
		if rows, err := conn.Query(cctx, `SELECT slot_name || CASE WHEN active THEN ' (active)' ELSE '' END
			FROM pg_replication_slots ORDER BY 1`); err == nil {
			m.OtherSlots, _ = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		_ = conn.Close(context.Background())
	}
	m.Kafka = kafkaVersion(b.root)
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func memTotalMiB() int64 {
	kb, err := harness.ProcField("/proc/meminfo", "MemTotal")
	if err != nil {
		return 0
	}
	return kb >> 10
}

// kafkaVersion asks deploy/local/kafka.sh, which prints "... (pid N, Apache Kafka 4.4.0)".
func kafkaVersion(root string) string {
	out, err := exec.CommandContext(context.Background(), filepath.Join(root, "deploy/local/kafka.sh"), "status").Output() //nolint:gosec // our own script
	if err != nil {
		return "unknown"
	}
	s := string(out)
	if i := strings.Index(s, "Apache Kafka "); i >= 0 {
		return strings.TrimRight(strings.Fields(s[i+len("Apache Kafka "):])[0], ")")
	}
	return "unknown"
}

// buildRelay builds the relay binary, without the race detector (it would multiply both the
// time and the memory being measured).
func (b *bench) buildRelay(ctx context.Context) error {
	b.relayBin = filepath.Join(b.tmp, "pgoutbox")
	return harness.BuildPgoutbox(ctx, b.relayBin, false)
}

// pgBin finds a PostgreSQL client program, preferring the newest server installation's own
// (/usr/lib/postgresql/N/bin), where pg_recvlogical lives.
func pgBin(name string) (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionLess(dirs[i], dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		p := filepath.Join(dirs[i], name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in /usr/lib/postgresql/*/bin or $PATH: install PostgreSQL's client programs (`make up` does)", name)
	}
	return p, nil
}

// versionLess orders /usr/lib/postgresql/N/bin paths by N as a number.
func versionLess(a, b string) bool {
	var x, y int
	_, _ = fmt.Sscanf(filepath.Base(filepath.Dir(a)), "%d", &x)
	_, _ = fmt.Sscanf(filepath.Base(filepath.Dir(b)), "%d", &y)
	return x < y
}
