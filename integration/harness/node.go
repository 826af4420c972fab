package harness

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// NeedNode installs the demo's pinned npm packages (deploy/demo/npm.sh: npm ci, @pgoutbox/models
// built into client/models/dist, playwright-core) and returns the node binary; with chromium it
// also needs Debian's Chromium, for the browser tests. Under CI=true a missing node or Chromium
// fails the test, like any other missing service.
func NeedNode(t testing.TB, chromium bool) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		Unavailable(t, "node is not installed (Debian: apt-get install nodejs npm)")
	}
	args := []string{}
	if chromium {
		args = append(args, "chromium")
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "deploy", "demo", "npm.sh"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		Unavailable(t, "deploy/demo/npm.sh: %v\n%s", err, out)
	}
	if chromium {
		if _, err := os.Stat("/usr/bin/chromium"); err != nil {
			Unavailable(t, "no /usr/bin/chromium (Debian's chromium package): %v", err)
		}
	}
	return node
}

// RunNode runs node with args in the repository, logging its output line by line, and fails the
// test when node fails.
func RunNode(t *testing.T, node string, env []string, args ...string) {
	t.Helper()
	if err := StartNode(t, node, env, nil, args...).Wait(); err != nil {
		t.Fatalf("node %s: %v", strings.Join(args, " "), err)
	}
}

// Node is a node process of a test (StartNode).
type Node struct {
	done chan struct{}
	err  error
}

// StartNode starts node with args in the repository and returns at once. Every line it prints is
// logged and, when onLine is not nil, passed to onLine (in order, from one goroutine). It is
// killed after 10 minutes, or when the test ends.
func StartNode(t *testing.T, node string, env []string, onLine func(string), args ...string) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), env...)
	// Chromium's helpers inherit node's output: once node has exited, stop waiting for them.
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start node %s: %v", strings.Join(args, " "), err)
	}
	n := &Node{done: make(chan struct{})}
	var lines sync.WaitGroup
	lines.Add(1)
	go func() {
		defer lines.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			t.Log(sc.Text())
			if onLine != nil {
				onLine(sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, pr) // a line past the buffer: the rest is dropped, node not blocked
	}()
	go func() {
		n.err = cmd.Wait()
		_ = pw.Close()
		lines.Wait()
		cancel()
		close(n.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-n.done
	})
	return n
}

// Done is closed when node has exited and its output has been read.
func (n *Node) Done() <-chan struct{} { return n.done }

// Wait waits for node to exit and returns its error (nil: exit status 0).
func (n *Node) Wait() error {
	<-n.done
	return n.err
}

// ServeModelsPage serves, on mux, the page of the live-models browser tests
// (integration/testdata/models-property: a model per channel of its URL, and window.harness for
// the driver), the built @pgoutbox/models it imports (/models/) and centrifuge's ESM build
// (/vendor/centrifuge.js), both from client/models as NeedNode builds it. The app serves the rest:
// /config ({"centrifugo": WebSocket URL}), /api/token, /api/subscription-token and /api/state.
func ServeModelsPage(mux *http.ServeMux) {
	models := filepath.Join(RepoRoot(), "client", "models")
	mux.Handle("GET /models/", http.StripPrefix("/models/", http.FileServer(http.Dir(filepath.Join(models, "dist")))))
	mux.Handle("GET /vendor/centrifuge.js", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(models, "node_modules", "centrifuge", "build", "index.mjs"))
	}))
	mux.Handle("GET /", http.FileServer(http.Dir(filepath.Join(RepoRoot(), "integration", "testdata", "models-property"))))
}
