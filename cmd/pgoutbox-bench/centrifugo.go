package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// e2eNamespace is the channel namespace of the end-to-end scenario. Its settings are the shipped
// deploy/centrifugo/config.yaml's "outbox" namespace (history, recovery, private channels), the
// same on every path, so that Centrifugo does the same work per publication on each.
const e2eNamespace = "e2e"

// e2eHMACSecret signs the subscribers' tokens for the scenario's private Centrifugo instances.
const e2eHMACSecret = "pgoutbox-bench-e2e-hmac-secret" //nolint:gosec // a key for private loopback instances, like the shipped laptop config's

// cfConfig is a Centrifugo v6 configuration (JSON; Centrifugo reads a file by its extension)
// for one path: loopback on port, the namespace above, and the path's own part (a consumer, or
// a broker).
func cfConfig(port int, part map[string]any) map[string]any {
	c := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "warn"},
		"health":      map[string]any{"enabled": true},
		"client":      map[string]any{"token": map[string]any{"hmac_secret_key": e2eHMACSecret}},
		"channel": map[string]any{"namespaces": []any{map[string]any{
			"name": e2eNamespace, "history_size": 1000, "history_ttl": "24h", "force_recovery": true,
		}}},
	}
	for k, v := range part {
		c[k] = v
	}
	return c
}

// kafkaConsumer is the shipped configuration's Kafka consumer (publication-data mode) on topic,
// with the headers that name the channel and the idempotency key, and a tags prefix ("" for none).
func kafkaConsumer(brokers []string, topic, channelHeader, idempotencyHeader, tagsPrefix string) map[string]any {
	mode := map[string]any{"enabled": true, "channels_header": channelHeader, "idempotency_key_header": idempotencyHeader}
	if tagsPrefix != "" {
		mode["tags_header_prefix"] = tagsPrefix
	}
	return map[string]any{"consumers": []any{map[string]any{
		"name": "bench", "enabled": true, "type": "kafka",
		"kafka": map[string]any{"brokers": brokers, "topics": []string{topic}, "consumer_group": topic,
			"publication_data_mode": mode},
	}}}
}

// centrifugoProc is a private Centrifugo server: its own configuration, port and log.
type centrifugoProc struct {
	cmd  *exec.Cmd
	port int
	log  *harness.SyncBuffer
	done chan struct{}
}

// startCentrifugo writes the configuration into dir and starts the shared v6.9.1 binary
// (deploy/local/centrifugo.sh install builds it once) on a free loopback port, and waits for
// /health.
func (b *bench) startCentrifugo(ctx context.Context, dir string, part map[string]any) (*centrifugoProc, error) {
	bin, err := b.centrifugoBin(ctx)
	if err != nil {
		return nil, err
	}
	port, err := harness.ListenPort()
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(cfConfig(port, part), "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("centrifugo-%d.json", port))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	c := &centrifugoProc{port: port, log: &harness.SyncBuffer{}, done: make(chan struct{})}
	c.cmd = exec.CommandContext(context.Background(), bin, "--config", path) //nolint:gosec // our binary and file
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start centrifugo: %w", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	err = harness.AwaitHealth(ctx, fmt.Sprintf("http://127.0.0.1:%d", port), c.done)
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("centrifugo did not answer /health: %w\n%s", err, c.log.Tail(30))
	}
	return c, nil
}

// centrifugoBin is the v6.9.1 binary deploy/local/centrifugo.sh builds (once) and prints.
func (b *bench) centrifugoBin(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(b.root, "deploy/local/centrifugo.sh"), "bin") //nolint:gosec // our own script
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("deploy/local/centrifugo.sh bin: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (c *centrifugoProc) pid() int { return c.cmd.Process.Pid }
func (c *centrifugoProc) wsURL() string {
	return fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", c.port)
}

// stop ends the server with SIGTERM, SIGKILL after 10 s.
func (c *centrifugoProc) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// e2eTokens signs the subscribers' connection and subscription tokens, as the app's backend would.
func e2eTokens() (*modelserver.Tokens, error) {
	tk, err := modelserver.NewHS256Tokens([]byte(e2eHMACSecret))
	if err != nil {
		return nil, err
	}
	tk.ConnectionTTL, tk.SubscriptionTTL = 2*time.Hour, 2*time.Hour
	return tk, nil
}
