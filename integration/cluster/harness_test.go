//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

var (
	repoRoot      = filepath.Join("..", "..")
	clusterScript = filepath.Join(repoRoot, "deploy", "local", "cluster.sh")
	// relayBinary is pgoutbox, built once without the race detector: the relay runs as a real
	// process (so that a SIGKILL is a real crash) beside six other servers on two cores.
	relayBinary string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgoutbox-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	relayBinary = filepath.Join(dir, "pgoutbox")
	if out, err := exec.Command("go", "build", "-o", relayBinary, "../../cmd/pgoutbox").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build pgoutbox: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// unavailable fails the test under CI=true and skips it otherwise.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a missing service is a failure, not a skip)", msg)
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", msg)
}

// topology is the running cluster, as `cluster.sh env` prints it.
type topology struct {
	DatabaseURL string
	Brokers     []string
	RedisURL    string
	APIKey      string
	HMACSecret  string
	// RelayEnv is the relay's settings for this topology (PGOUTBOX_KAFKA_REQUEST_TIMEOUT).
	RelayEnv []string
}

func needCluster(t *testing.T) topology {
	t.Helper()
	if out, err := exec.Command(clusterScript, "status").CombinedOutput(); err != nil {
		unavailable(t, "the cluster topology is not running (`PGOUTBOX_TOPOLOGY=cluster make up`):\n%s", out)
	}
	out, err := exec.Command(clusterScript, "env").Output()
	if err != nil {
		t.Fatalf("cluster.sh env: %v", err)
	}
	env := map[string]string{}
	var relayEnv []string
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
			if strings.HasPrefix(k, "PGOUTBOX_KAFKA_") && k != "PGOUTBOX_KAFKA_BROKERS" {
				relayEnv = append(relayEnv, line)
			}
		}
	}
	top := topology{
		DatabaseURL: env["PGOUTBOX_DATABASE_URL"],
		Brokers:     strings.Split(env["PGOUTBOX_KAFKA_BROKERS"], ","),
		RedisURL:    env["PGOUTBOX_REDIS_URL"],
		APIKey:      env["PGOUTBOX_CENTRIFUGO_API_KEY"],
		RelayEnv:    relayEnv,
	}
	keys, err := modelserver.ReadCentrifugoKeys(filepath.Join(repoRoot, "deploy", "centrifugo", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	top.HMACSecret = keys.HMACSecret
	if top.DatabaseURL == "" || len(top.Brokers) != 3 || top.RedisURL == "" || top.APIKey == "" || top.HMACSecret == "" {
		t.Fatalf("cluster.sh env is incomplete: %q", out)
	}
	return top
}

// clusterCmd runs cluster.sh (start NODE, pid NODE...) and returns its trimmed stdout.
func clusterCmd(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(clusterScript, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// nodePID is the process id of a cluster node (kafka-1, redis...).
func nodePID(t *testing.T, node string) int {
	t.Helper()
	var pid int
	if _, err := fmt.Sscan(clusterCmd(t, "pid", node), &pid); err != nil {
		t.Fatalf("pid of %s: %v", node, err)
	}
	return pid
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// uniqueName is cl_<test>_<random>: PostgreSQL- and Kafka-safe, and `make test-cluster` finds a
// slot a test forgot by its cl_ prefix.
func uniqueName(t *testing.T) string {
	base := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(base) > 30 {
		base = base[len(base)-30:]
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "cl_" + strings.Trim(base, "_") + "_" + hex.EncodeToString(b[:])
}

// syncBuffer is a process's output, kept for the failure report.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4<<20 {
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := strings.Split(strings.TrimRight(s.b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// proc is a child process of the test: a relay, a Centrifugo node or haproxy.
type proc struct {
	name string
	bin  string
	args []string
	env  []string
	cmd  *exec.Cmd
	done chan struct{}
	out  *syncBuffer
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	if p.out == nil {
		p.out = &syncBuffer{}
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL: a crash.
func (p *proc) kill() {
	if p.running() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stop ends the process with SIGTERM (SIGKILL after 20 s).
func (p *proc) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

// waitHTTP waits until url answers 200 while p runs.
func (p *proc) waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !p.running() {
			t.Fatalf("%s exited at start-up:\n%s", p.name, p.out.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: no answer from %s within %v:\n%s", p.name, url, timeout, p.out.tail(30))
}

// stack is one test's pipeline on the cluster: its own outbox table, slot, publication and
// topic (replication factor 3), its relay, two Centrifugo nodes of its own (Redis engine on the
// cluster's Redis, one consumer group, consuming its topic) and an haproxy in front of them.
type stack struct {
	t          *testing.T
	top        topology
	name       string
	partitions int
	relay      *proc
	nodes      [2]*proc
	nodePorts  [2]int
	lb         *proc
	lbPort     int

	// The relay runs under a supervisor, as in production (systemd's Restart=, compose's
	// restart:): whenever it exits it is started again a second later.
	superviseStop chan struct{}
	superviseDone chan struct{}
	relayMu       sync.Mutex
	relayExits    []string // why each unplanned exit happened (the relay's last lines)
	relayKills    int
}

func newStack(t *testing.T, partitions int) *stack {
	t.Helper()
	s := &stack{t: t, top: needCluster(t), name: uniqueName(t), partitions: partitions}
	t.Cleanup(s.cleanup)
	if out, err := s.pgoutbox("setup", "--partitions", fmt.Sprint(partitions), "--replication-factor", "3"); err != nil {
		t.Fatalf("pgoutbox setup: %v\n%s", err, out)
	}
	s.exec(fmt.Sprintf(`CREATE TABLE %s_counters (channel text PRIMARY KEY, value bigint NOT NULL)`, s.name))
	s.relay = &proc{name: "relay", bin: relayBinary, args: []string{"run"}, env: append(s.relayEnv(), s.top.RelayEnv...)}
	for i := range s.nodes {
		s.nodePorts[i] = freePort(t)
		s.nodes[i] = &proc{name: fmt.Sprintf("centrifugo-%d", i+1), bin: centrifugoBin(t),
			args: []string{"--config", filepath.Join(repoRoot, "deploy", "centrifugo", "config.yaml")},
			env: []string{
				fmt.Sprintf("CENTRIFUGO_HTTP_SERVER_PORT=%d", s.nodePorts[i]),
				"CENTRIFUGO_ENGINE_TYPE=redis",
				"CENTRIFUGO_ENGINE_REDIS_ADDRESS=" + s.top.RedisURL,
				"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_BROKERS=" + strings.Join(s.top.Brokers, " "),
				"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_TOPICS=" + s.name,
				"CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_CONSUMER_GROUP=" + s.name,
				fmt.Sprintf("CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_INSTANCE_ID=%s-%d", s.name, i+1),
			}}
	}
	s.lbPort = freePort(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(s.lbPort, s.nodePorts[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	s.lb = &proc{name: "haproxy", bin: "haproxy", args: []string{"-db", "-f", cfg}}
	return s
}

// haproxyConfig is deploy/local/cluster.sh's configuration on the test's ports.
func haproxyConfig(port int, nodes []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
  maxconn 2000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  option http-server-close
  retries 3
  option redispatch
frontend websocket
  bind 127.0.0.1:%d
  default_backend centrifugo
backend centrifugo
  balance leastconn
  option httpchk GET /health
  default-server inter 1s fall 2 rise 2
`, port)
	for i, p := range nodes {
		fmt.Fprintf(&b, "  server centrifugo-%d 127.0.0.1:%d check\n", i+1, p)
	}
	return b.String()
}

func centrifugoBin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "deploy", "local", "centrifugo.sh"), "bin").Output()
	if err != nil {
		unavailable(t, "no Centrifugo binary: deploy/local/centrifugo.sh bin: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// relayEnv is the outbox's settings, common to `pgoutbox setup` and `pgoutbox run`.
func (s *stack) relayEnv() []string {
	return append([]string{},
		"PGOUTBOX_DATABASE_URL="+s.top.DatabaseURL,
		"PGOUTBOX_KAFKA_BROKERS="+strings.Join(s.top.Brokers, ","),
		"PGOUTBOX_TABLE="+s.name,
		"PGOUTBOX_SLOT="+s.name,
		"PGOUTBOX_PUBLICATION="+s.name,
		"PGOUTBOX_TOPIC="+s.name,
		"PGOUTBOX_HTTP_ADDR=",
		"PGOUTBOX_LOG_LEVEL=info",
	)
}

func (s *stack) pgoutbox(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBinary, args...)
	cmd.Env = append(os.Environ(), s.relayEnv()...)
	return cmd.CombinedOutput()
}

func (s *stack) exec(sql string, args ...any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.top.DatabaseURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
}

// start runs the relay (supervised), both Centrifugo nodes and haproxy.
func (s *stack) start() {
	s.t.Helper()
	s.relay.start(s.t)
	s.superviseStop, s.superviseDone = make(chan struct{}), make(chan struct{})
	go s.supervise()
	for i, n := range s.nodes {
		n.start(s.t)
		n.waitHTTP(s.t, fmt.Sprintf("http://127.0.0.1:%d/health", s.nodePorts[i]), 60*time.Second)
	}
	s.lb.start(s.t)
	s.lb.waitHTTP(s.t, s.lbURL()+"/health", 30*time.Second)
}

func (s *stack) lbURL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.lbPort) }
func (s *stack) wsURL() string {
	return fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", s.lbPort)
}

// supervise starts the relay again a second after each exit, until the test ends.
func (s *stack) supervise() {
	defer close(s.superviseDone)
	for {
		s.relayMu.Lock()
		done := s.relay.done
		s.relayMu.Unlock()
		select {
		case <-s.superviseStop:
			return
		case <-done:
		}
		s.relayMu.Lock()
		s.relayExits = append(s.relayExits, s.relay.out.tail(2))
		s.relayMu.Unlock()
		select {
		case <-s.superviseStop:
			return
		case <-time.After(time.Second):
		}
		s.relayMu.Lock()
		s.relay.start(s.t)
		s.relayMu.Unlock()
	}
}

// crashRelay SIGKILLs the relay; its supervisor starts a new one, whose exactly-once tail read
// finds what the dead one had sent.
func (s *stack) crashRelay() {
	s.t.Helper()
	s.relayMu.Lock()
	s.relayKills++
	s.relay.kill()
	s.relayMu.Unlock()
	s.t.Logf("relay SIGKILLed; its supervisor starts it again")
}

// relayStarts is how often the relay was started, and the last lines of each run that ended
// without a SIGKILL from the test (a start-up that failed, a crash).
func (s *stack) relayStarts() (starts, unplanned int, lastLines []string) {
	s.relayMu.Lock()
	defer s.relayMu.Unlock()
	return len(s.relayExits) + 1, len(s.relayExits) - s.relayKills, s.relayExits
}

func (s *stack) cleanup() {
	if s.superviseStop != nil {
		close(s.superviseStop)
		<-s.superviseDone
	}
	for _, p := range []*proc{s.lb, s.nodes[0], s.nodes[1], s.relay} {
		if p != nil {
			p.stop()
		}
	}
	if s.t.Failed() {
		for _, p := range []*proc{s.relay, s.nodes[0], s.nodes[1]} {
			if p != nil && p.out != nil {
				s.t.Logf("%s output:\n%s", p.name, p.out.tail(40))
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.top.DatabaseURL)
	if err != nil {
		s.t.Errorf("cleanup: %v", err)
		return
	}
	defer func() { _ = conn.Close(context.Background()) }()
	// The slot's walsender ends a moment after the relay: retry the drop for a while.
	for {
		_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, s.name)
		if err == nil || ctx.Err() != nil {
			if err != nil {
				s.t.Errorf("drop slot %s: %v", s.name, err)
			}
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, sql := range []string{
		fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, s.name),
		fmt.Sprintf(`DROP TABLE IF EXISTS %s, %s_counters`, s.name, s.name),
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			s.t.Errorf("cleanup %s: %v", sql, err)
		}
	}
	client := &kafka.Client{Addr: kafka.TCP(s.top.Brokers...), Timeout: 30 * time.Second}
	_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{s.name}})
}

// streamTop is the channel's stream position from Centrifugo's server API (history, limit 0),
// asked through haproxy: any node answers from Redis.
func (s *stack) streamTop(ctx context.Context, channel string) (offset uint64, epoch string, err error) {
	body, _ := json.Marshal(map[string]any{"channel": channel, "limit": 0})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.lbURL()+"/api/history", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-API-Key", s.top.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Result struct {
			Offset uint64 `json:"offset"`
			Epoch  string `json:"epoch"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, "", fmt.Errorf("history of %s: %s: %w", channel, resp.Status, err)
	}
	if out.Error != nil {
		return 0, "", fmt.Errorf("history of %s: error %d %s", channel, out.Error.Code, out.Error.Message)
	}
	return out.Result.Offset, out.Result.Epoch, nil
}

// token is a connection token for user, as an app's backend would sign it.
func (s *stack) token(user string) string { return s.sign(user, "") }

// subToken is a subscription token for user on channel: the shipped configuration makes outbox
// channels private.
func (s *stack) subToken(user, channel string) string { return s.sign(user, channel) }

// sign signs with modelserver's Tokens, as the app's backend does, valid for the longest case.
func (s *stack) sign(user, channel string) string {
	return signToken(s.top.HMACSecret, time.Hour, user, channel)
}

// signToken is a connection token for user, or with a channel a subscription token for it. The
// secret was checked non-empty when the topology was read, so an error here is a bug.
func signToken(secret string, ttl time.Duration, user, channel string) string {
	tk, err := modelserver.NewHS256Tokens([]byte(secret))
	if err != nil {
		panic(err)
	}
	tk.ConnectionTTL, tk.SubscriptionTTL = ttl, ttl
	tok, err := tk.Connection(user)
	if channel != "" {
		tok, err = tk.Subscription(user, channel)
	}
	if err != nil {
		panic(err)
	}
	return tok
}

// partitionLeaders maps each partition of the test's topic to its leader's node id.
func (s *stack) partitionLeaders(ctx context.Context) (map[int]int, error) {
	client := &kafka.Client{Addr: kafka.TCP(s.top.Brokers...), Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{s.name}})
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for _, tp := range md.Topics {
		for _, p := range tp.Partitions {
			out[p.ID] = p.Leader.ID
		}
	}
	return out, nil
}

// endOffsets are the next offsets of every partition of the test's topic.
func (s *stack) endOffsets(ctx context.Context) (map[int]int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(s.top.Brokers...), Timeout: 10 * time.Second}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for p := range s.partitions {
		req.Topics[s.name] = append(req.Topics[s.name], kafka.LastOffsetOf(p))
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[s.name] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// readTopic reads every record of the test's topic and counts each (channel, value) pair,
// skipping the sink's barrier records.
func (s *stack) readTopic(ctx context.Context) (map[string]map[int64]int, int, error) {
	ends, err := s.endOffsets(ctx)
	if err != nil {
		return nil, 0, err
	}
	seen := map[string]map[int64]int{}
	total := 0
	for p, end := range ends {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.top.Brokers, Topic: s.name, Partition: p, MaxWait: time.Second})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				_ = r.Close()
				return nil, 0, fmt.Errorf("read partition %d: %w", p, err)
			}
			if harness.IsBarrier(m.Headers) {
				if m.Offset+1 >= end {
					break
				}
				continue // the sink's barrier record: no event
			}
			var data struct{ V int64 }
			if err := json.Unmarshal(m.Value, &data); err != nil {
				_ = r.Close()
				return nil, 0, fmt.Errorf("partition %d offset %d: %s: %w", p, m.Offset, m.Value, err)
			}
			ch := string(m.Key)
			if seen[ch] == nil {
				seen[ch] = map[int64]int{}
			}
			seen[ch][data.V]++
			total++
			if m.Offset+1 >= end {
				break
			}
		}
		_ = r.Close()
	}
	return seen, total, nil
}
