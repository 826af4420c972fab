//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// The demo's tests run node: the page's rules and model unit tests (node's test runner), and the
// browser tests (playwright-core driving Debian's Chromium) against the demo's real parts,
// started here as `make demo` starts them — the relay, Centrifugo with the shipped configuration,
// the app — on this test's own outbox, topic and ports. A Go test rather than a step of
// services.sh: it reuses the harness (private names, free ports, the relay's SIGKILL, the slot
// dropped at the end), and under CI=true a missing node or chromium fails it like any other
// missing service.

// TestDemo_PageRules: the page's bootstrap/apply rules (the checkpoint package's cases) and its
// optimistic-update model.
func TestDemo_PageRules(t *testing.T) {
	t.Parallel()
	node := harness.NeedNode(t, false)
	harness.RunNode(t, node, nil, "--test", "--test-reporter=tap", "deploy/demo/test/")
}

// TestDemo_Browser: two Chromium pages on the demo: a change on one appears on the other, a
// rejected change rolls back and never shows elsewhere, a relay SIGKILL, a Centrifugo restart
// (new epoch: the pages bootstrap again) and a page reload in a burst all end with the pages
// equal to the database, the commit→screen latency over 300
// changes, no console errors. PGOUTBOX_DEMO_SCREENSHOT=path also writes the README's picture, deploy/demo/two-pages.png.
func TestDemo_Browser(t *testing.T) {
	t.Parallel()
	node := harness.NeedNode(t, true)
	e := harness.NewOutbox(t, 3)
	prefix := e.Name + "_"
	t.Cleanup(func() {
		harness.ExecInCleanup(t, e.DatabaseURL, fmt.Sprintf(`DROP TABLE IF EXISTS %stasks, %sboards`, prefix, prefix))
	})

	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/demo").CombinedOutput(); err != nil {
		t.Fatalf("build cmd/demo: %v\n%s", err, out)
	}
	cf := harness.StartCentrifugo(t, e.Brokers, e.Name)
	port := harness.FreePort(t)
	appEnv := append(e.Env(),
		"PGOUTBOX_DEMO_TABLE_PREFIX="+prefix,
		fmt.Sprintf("PGOUTBOX_DEMO_ADDR=127.0.0.1:%d", port),
		"PGOUTBOX_DEMO_CENTRIFUGO_URL="+cf.URL(),
		"PGOUTBOX_DEMO_CENTRIFUGO_CONFIG="+harness.CentrifugoConfigPath(),
	)
	// demo init adds the outbox's mutation_id and rejected columns, which the relay checks at start.
	initCmd := exec.Command(bin, "init")
	initCmd.Env = appEnv
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("demo init: %v\n%s", err, out)
	}
	relayEnv := []string{"PGOUTBOX_MUTATION_ID_COLUMN=mutation_id", "PGOUTBOX_REJECTED_COLUMN=rejected"}
	var mu sync.Mutex
	relay := e.StartRelay(t, relayEnv...)

	app := exec.Command(bin, "serve")
	app.Env = appEnv
	appLog := &harness.SyncBuffer{}
	app.Stdout, app.Stderr = appLog, appLog
	app.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = app.Process.Signal(syscall.SIGTERM)
		_ = app.Wait()
		if t.Failed() {
			t.Logf("demo app log:\n%s", appLog.Tail(40))
		}
	})
	appURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, appURL+"/healthz", 30*time.Second)

	// The browser test asks for the relay's crash and restart here.
	ctl := http.NewServeMux()
	ctl.HandleFunc("POST /relay/kill", func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		relay.Kill()
		t.Log("relay SIGKILLed")
	})
	ctl.HandleFunc("POST /relay/start", func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		relay = e.StartRelay(t, relayEnv...)
		t.Log("relay restarted")
	})
	ctl.HandleFunc("POST /centrifugo/restart", func(http.ResponseWriter, *http.Request) {
		cf.Restart() // same port; the memory engine's history is gone: a new epoch
		t.Log("Centrifugo restarted")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctlSrv := &http.Server{Handler: ctl, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ctlSrv.Serve(ln) }()
	t.Cleanup(func() { _ = ctlSrv.Close() })

	artifacts, err := filepath.Abs(filepath.Join(repoRoot, "deploy", "demo", "test-results"))
	if err != nil {
		t.Fatal(err)
	}
	harness.RunNode(t, node, []string{
		"DEMO_URL=" + appURL,
		"DEMO_CONTROL=http://" + ln.Addr().String(),
		"DEMO_ARTIFACTS=" + artifacts,
		"DEMO_SCREENSHOT=" + os.Getenv("PGOUTBOX_DEMO_SCREENSHOT"),
	}, "--test", "--test-reporter=spec", "--test-concurrency=1", "deploy/demo/e2e/browser.test.mjs")
}

func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	err := harness.Eventually(context.Background(), timeout, 100*time.Millisecond, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return harness.Stop(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answers %s", url, resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s did not answer: %v", url, err)
	}
}
