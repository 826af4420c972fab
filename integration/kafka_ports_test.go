//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/segmentio/kafka-go"
)

// TestKafkaScript_ControllerPortFollowsClientPort: two brokers of kafka.sh given only their
// client ports (PGOUTBOX_KAFKA_PORT) run side by side, each with its KRaft controller on its
// client port + 1. With a fixed default controller port the second broker would find it taken.
func TestKafkaScript_ControllerPortFollowsClientPort(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts two Kafka brokers; skipped with -short")
	}
	lib := harness.KafkaLibDir(t)
	for i := range 2 {
		port := freePortPair(t)
		state := t.TempDir()
		env := append(withoutEnv(os.Environ(), "PGOUTBOX_KAFKA_CONTROLLER_PORT"),
			"PGOUTBOX_STATE_DIR="+state,
			fmt.Sprintf("PGOUTBOX_KAFKA_PORT=%d", port),
			"PGOUTBOX_KAFKA_LIB_DIR="+lib,
		)
		run := func(arg string) {
			cmd := exec.Command("bash", harness.KafkaScript(), arg)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("broker %d: kafka.sh %s: %v\n%s", i, arg, err, out)
			}
		}
		run("start")
		t.Cleanup(func() { run("stop") })

		props, err := os.ReadFile(filepath.Join(state, "kafka", "server.properties"))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("CONTROLLER://127.0.0.1:%d", port+1)
		if !strings.Contains(string(props), want) {
			t.Errorf("broker %d on client port %d: server.properties lacks %s", i, port, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		client := &kafka.Client{Addr: kafka.TCP(fmt.Sprintf("127.0.0.1:%d", port)), Timeout: 10 * time.Second}
		_, err = client.Metadata(ctx, &kafka.MetadataRequest{})
		cancel()
		if err != nil {
			t.Errorf("broker %d on client port %d does not answer: %v", i, port, err)
		}
		t.Logf("broker %d: client port %d, controller port %d", i, port, port+1)
	}
}

// freePortPair returns a loopback port p such that p and p+1 were both free a moment ago.
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := harness.FreePort(t)
		if p >= 65535 {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err == nil {
			_ = l.Close()
			return p
		}
	}
	t.Fatal("no two adjacent free ports on 127.0.0.1")
	return 0
}

// withoutEnv drops the variable key from an environment list.
func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
