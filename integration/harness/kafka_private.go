package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PrivateKafka is a broker of the test's own, started by deploy/local/kafka.sh in a temporary
// state directory on free ports: a test that stops Kafka must not stop the broker that the
// other (parallel) tests use.
type PrivateKafka struct {
	t     *testing.T
	env   []string
	state string
	// Brokers is the broker's bootstrap address.
	Brokers []string
}

// KafkaScript is deploy/local/kafka.sh, which starts and stops brokers.
func KafkaScript() string { return filepath.Join(RepoRoot(), "deploy", "local", "kafka.sh") }

// StartPrivateKafka starts a private broker that the end of the test stops.
func StartPrivateKafka(t *testing.T) *PrivateKafka {
	t.Helper()
	if testing.Short() {
		t.Skip("a private Kafka broker takes a few seconds to start; skipped with -short")
	}
	lib := KafkaLibDir(t)
	port, cport := FreePort(t), FreePort(t)
	state := t.TempDir()
	k := &PrivateKafka{
		t:     t,
		state: state,
		env: append(os.Environ(),
			"PGOUTBOX_STATE_DIR="+state,
			fmt.Sprintf("PGOUTBOX_KAFKA_PORT=%d", port),
			fmt.Sprintf("PGOUTBOX_KAFKA_CONTROLLER_PORT=%d", cport),
			"PGOUTBOX_KAFKA_LIB_DIR="+lib,
			// Several private brokers start at once in the version matrix; on a busy 2-core
			// machine a restart has taken more than kafka.sh's default 90 s.
			"PGOUTBOX_KAFKA_READY_TIMEOUT="+Getenv("PGOUTBOX_KAFKA_READY_TIMEOUT", "240"),
		),
		Brokers: []string{fmt.Sprintf("127.0.0.1:%d", port)},
	}
	k.Start()
	t.Cleanup(k.Stop)
	return k
}

// NewPrivateKafka is a broker of the test's own that the caller configures completely through
// kafka.sh's environment env (e.g. extra listeners), reachable at brokers; nothing is started.
func NewPrivateKafka(t *testing.T, brokers, env []string) *PrivateKafka {
	return &PrivateKafka{t: t, env: env, Brokers: brokers}
}

// KafkaLibDir returns where kafka.sh keeps the resolved jars, so a private broker shares them.
func KafkaLibDir(t *testing.T) string {
	t.Helper()
	lib, err := exec.Command("bash", KafkaScript(), "libdir").Output()
	if err != nil {
		Unavailable(t, "cannot locate the Kafka jars (deploy/local/kafka.sh libdir): %v", err)
	}
	return strings.TrimSpace(string(lib))
}

func (k *PrivateKafka) script(arg string) {
	k.t.Helper()
	cmd := exec.Command("bash", KafkaScript(), arg)
	cmd.Env = k.env
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		k.t.Fatalf("kafka.sh %s: %v\n%s", arg, err, out)
	}
	k.t.Logf("private Kafka %s %s in %s", k.Brokers[0], arg, time.Since(start).Round(time.Millisecond))
}

// Start starts (or restarts) the broker, keeping its data.
func (k *PrivateKafka) Start() { k.script("start") }

// Stop stops the broker; its data stays for a restart.
func (k *PrivateKafka) Stop() { k.script("stop") }

// Pid is the broker's process id (the JVM), from kafka.sh's pid file.
func (k *PrivateKafka) Pid() int {
	k.t.Helper()
	b, err := os.ReadFile(filepath.Join(k.state, "kafka", "kafka.pid"))
	if err != nil {
		k.t.Fatalf("read the broker's pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		k.t.Fatalf("the broker's pid file: %v", err)
	}
	return pid
}
