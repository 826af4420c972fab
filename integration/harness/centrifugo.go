package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
)

// CentrifugoVersion is the version deploy/local/centrifugo.sh builds (a test checks they agree).
const CentrifugoVersion = "v6.9.1"

// CentrifugoConfigPath is the configuration the tests run, the one shipped for users.
func CentrifugoConfigPath() string {
	return filepath.Join(RepoRoot(), "deploy", "centrifugo", "config.yaml")
}

func readCentrifugoKeys(t testing.TB) modelserver.CentrifugoKeys {
	t.Helper()
	k, err := modelserver.ReadCentrifugoKeys(CentrifugoConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// needCentrifugo returns the Centrifugo binary: PGOUTBOX_TEST_CENTRIFUGO_BIN (set by `make
// test`), else the one deploy/local/centrifugo.sh caches in the state directory.
func needCentrifugo(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("PGOUTBOX_TEST_CENTRIFUGO_BIN")
	if bin == "" {
		state := Getenv("PGOUTBOX_STATE_DIR", filepath.Join(os.Getenv("HOME"), ".cache", "pgoutbox"))
		bin = filepath.Join(state, "centrifugo", CentrifugoVersion, "centrifugo")
	}
	if _, err := os.Stat(bin); err != nil {
		Unavailable(t, "no Centrifugo binary at %s (%v); build it with `deploy/local/centrifugo.sh install`", bin, err)
	}
	return bin
}

// Centrifugo is a private Centrifugo server (memory engine) on a free loopback port,
// consuming one topic with its own consumer group, run with the shipped configuration.
type Centrifugo struct {
	t      *testing.T
	bin    string
	Keys   modelserver.CentrifugoKeys
	port   int
	env    []string
	cmd    *exec.Cmd
	log    *SyncBuffer
	done   chan struct{}
	starts int
}

// StartCentrifugo starts Centrifugo consuming topic from brokers; the test's end stops it.
func StartCentrifugo(t *testing.T, brokers []string, topic string) *Centrifugo {
	t.Helper()
	c := &Centrifugo{t: t, bin: needCentrifugo(t), Keys: readCentrifugoKeys(t), port: FreePort(t), log: &SyncBuffer{}}
	c.env = append(os.Environ(),
		fmt.Sprintf("CENTRIFUGO_HTTP_SERVER_PORT=%d", c.port),
		"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_BROKERS="+strings.Join(brokers, " "), // lists are space-separated
		"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_TOPICS="+topic,
		"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_CONSUMER_GROUP="+topic,
	)
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("centrifugo log:\n%s", c.log.Tail(60))
		}
	})
	c.Start()
	return c
}

// Start starts the server and waits until it answers /health.
func (c *Centrifugo) Start() {
	c.t.Helper()
	cmd := exec.Command(c.bin, "--config", CentrifugoConfigPath())
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start centrifugo: %v", err)
	}
	c.cmd, c.done, c.starts = cmd, make(chan struct{}), c.starts+1
	done := c.done
	go func() { _ = cmd.Wait(); close(done) }()
	err := AwaitHealth(context.Background(), c.URL(), done)
	if err != nil {
		c.t.Fatalf("centrifugo did not answer /health: %v\n%s", err, c.log.Tail(30))
	}
}

// AwaitHealth waits (at most 30 s) until the Centrifugo at baseURL answers GET /health with 200;
// done closed means the process exited, which ends the wait at once.
func AwaitHealth(ctx context.Context, baseURL string, done <-chan struct{}) error {
	return Eventually(ctx, 30*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-done:
			return Stop(errors.New("centrifugo exited at start-up"))
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/health", nil)
		if err != nil {
			return Stop(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health answers %s", resp.Status)
		}
		return nil
	})
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s); safe to call twice.
func (c *Centrifugo) Stop() {
	if c.cmd == nil {
		return
	}
	select {
	case <-c.done:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	c.cmd = nil
}

// Restart stops and starts the server on the same port: the memory engine forgets every
// channel's history, so each channel gets a new epoch.
func (c *Centrifugo) Restart() {
	c.t.Helper()
	c.Stop()
	c.Start()
}

// URL is the server's base URL (API, /health).
func (c *Centrifugo) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

// WSURL is the server's WebSocket endpoint for clients.
func (c *Centrifugo) WSURL() string {
	return fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", c.port)
}

// StreamPosition is a channel's position in Centrifugo's history.
type StreamPosition = modelserver.StreamPosition

// API is the server API client the app's state endpoint uses (client/modelserver).
func (c *Centrifugo) API() *modelserver.Centrifugo {
	return &modelserver.Centrifugo{URL: c.URL(), APIKey: c.Keys.APIKey}
}

// StreamTop returns the channel's current stream position: step 1 of the bootstrap recipe.
func (c *Centrifugo) StreamTop(ctx context.Context, channel string) (StreamPosition, error) {
	return c.API().StreamPosition(ctx, channel)
}

// Tokens signs tokens with the configured key, as an app's backend does.
func (c *Centrifugo) Tokens() *modelserver.Tokens {
	c.t.Helper()
	tk, err := modelserver.NewHS256Tokens([]byte(c.Keys.HMACSecret))
	if err != nil {
		c.t.Fatal(err)
	}
	tk.ConnectionTTL, tk.SubscriptionTTL = time.Hour, time.Hour
	return tk
}

// Token returns a connection token for user.
func (c *Centrifugo) Token(user string) string {
	c.t.Helper()
	tok, err := c.Tokens().Connection(user)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// SubToken returns a subscription token letting user's connection subscribe to channel: the
// shipped configuration makes outbox channels private.
func (c *Centrifugo) SubToken(user, channel string) string {
	c.t.Helper()
	tok, err := c.Tokens().Subscription(user, channel)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// ClientHandshakeTimeout replaces centrifuge-go's 1 s default: two dozen clients dialling a
// loaded 2-core machine miss it, and the SDK's reconnect after a missed handshake races with
// its own resubscribe timer (a data race inside centrifuge-go v0.12.1, seen under -race).
const ClientHandshakeTimeout = 15 * time.Second
