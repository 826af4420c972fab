//go:build integration

package integration

import (
	"context"
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
	"go.yaml.in/yaml/v3"
)

// centrifugoVersion is the version deploy/local/centrifugo.sh builds (a test checks they agree).
const centrifugoVersion = "v6.9.1"

// centrifugoConfigPath is the configuration the tests run, the one shipped for users.
var centrifugoConfigPath = filepath.Join(repoRoot, "deploy", "centrifugo", "config.yaml")

// centrifugoConfig is the part of deploy/centrifugo/config.yaml the tests need to talk to it.
type centrifugoConfig struct {
	Client struct {
		Token struct {
			HMACSecretKey string `yaml:"hmac_secret_key"`
		} `yaml:"token"`
	} `yaml:"client"`
	HTTPAPI struct {
		Key string `yaml:"key"`
	} `yaml:"http_api"`
}

func readCentrifugoConfig(t testing.TB) centrifugoConfig {
	t.Helper()
	b, err := os.ReadFile(centrifugoConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var c centrifugoConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", centrifugoConfigPath, err)
	}
	if c.Client.Token.HMACSecretKey == "" || c.HTTPAPI.Key == "" {
		t.Fatalf("%s: want client.token.hmac_secret_key and http_api.key", centrifugoConfigPath)
	}
	return c
}

// needCentrifugo returns the Centrifugo binary: PGOUTBOX_TEST_CENTRIFUGO_BIN (set by `make
// test`), else the one deploy/local/centrifugo.sh caches in the state directory.
func needCentrifugo(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("PGOUTBOX_TEST_CENTRIFUGO_BIN")
	if bin == "" {
		state := getenv("PGOUTBOX_STATE_DIR", filepath.Join(os.Getenv("HOME"), ".cache", "pgoutbox"))
		bin = filepath.Join(state, "centrifugo", centrifugoVersion, "centrifugo")
	}
	if _, err := os.Stat(bin); err != nil {
		unavailable(t, "no Centrifugo binary at %s (%v); build it with `deploy/local/centrifugo.sh install`", bin, err)
	}
	return bin
}

// centrifugoProc is a private Centrifugo server (memory engine) on a free loopback port,
// consuming one topic with its own consumer group, run with the shipped configuration.
type centrifugoProc struct {
	t      *testing.T
	bin    string
	cfg    centrifugoConfig
	port   int
	env    []string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
	starts int
}

// startCentrifugo starts Centrifugo consuming topic from brokers; the test's end stops it.
func startCentrifugo(t *testing.T, brokers []string, topic string) *centrifugoProc {
	t.Helper()
	c := &centrifugoProc{t: t, bin: needCentrifugo(t), cfg: readCentrifugoConfig(t), port: freePort(t), log: &syncBuffer{}}
	c.env = append(os.Environ(),
		fmt.Sprintf("CENTRIFUGO_HTTP_SERVER_PORT=%d", c.port),
		"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_BROKERS="+strings.Join(brokers, " "), // lists are space-separated
		"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_TOPICS="+topic,
		"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_CONSUMER_GROUP="+topic,
	)
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("centrifugo log:\n%s", c.log.tail(60))
		}
	})
	c.start()
	return c
}

func (c *centrifugoProc) start() {
	c.t.Helper()
	cmd := exec.Command(c.bin, "--config", centrifugoConfigPath)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start centrifugo: %v", err)
	}
	c.cmd, c.done, c.starts = cmd, make(chan struct{}), c.starts+1
	done := c.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(c.url() + "/health")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			c.t.Fatalf("centrifugo exited at start-up:\n%s", c.log.tail(30))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("centrifugo did not answer /health within 30s:\n%s", c.log.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the server (SIGTERM, then SIGKILL after 10 s); safe to call twice.
func (c *centrifugoProc) stop() {
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

// restart stops and starts the server on the same port: the memory engine forgets every
// channel's history, so each channel gets a new epoch.
func (c *centrifugoProc) restart() {
	c.t.Helper()
	c.stop()
	c.start()
}

func (c *centrifugoProc) url() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

func (c *centrifugoProc) wsURL() string {
	return fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", c.port)
}

// streamPosition is a channel's position in Centrifugo's history.
type streamPosition = modelserver.StreamPosition

// api is the server API client the app's state endpoint uses (client/modelserver).
func (c *centrifugoProc) api() *modelserver.Centrifugo {
	return &modelserver.Centrifugo{URL: c.url(), APIKey: c.cfg.HTTPAPI.Key}
}

// streamTop returns the channel's current stream position: step 1 of the bootstrap recipe.
func (c *centrifugoProc) streamTop(ctx context.Context, channel string) (streamPosition, error) {
	return c.api().StreamPosition(ctx, channel)
}

// tokens signs tokens with the configured key, as an app's backend does.
func (c *centrifugoProc) tokens() *modelserver.Tokens {
	c.t.Helper()
	tk, err := modelserver.NewHS256Tokens([]byte(c.cfg.Client.Token.HMACSecretKey))
	if err != nil {
		c.t.Fatal(err)
	}
	tk.ConnectionTTL, tk.SubscriptionTTL = time.Hour, time.Hour
	return tk
}

// token returns a connection token for user.
func (c *centrifugoProc) token(user string) string {
	c.t.Helper()
	tok, err := c.tokens().Connection(user)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// subToken returns a subscription token letting user's connection subscribe to channel: the
// shipped configuration makes outbox channels private.
func (c *centrifugoProc) subToken(user, channel string) string {
	c.t.Helper()
	tok, err := c.tokens().Subscription(user, channel)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// clientHandshakeTimeout replaces centrifuge-go's 1 s default: two dozen clients dialling a
// loaded 2-core machine miss it, and the SDK's reconnect after a missed handshake races with
// its own resubscribe timer (a data race inside centrifuge-go v0.12.1, seen under -race).
const clientHandshakeTimeout = 15 * time.Second
