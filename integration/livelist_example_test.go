//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/centrifugal/centrifuge-go"
)

// TestExample_LiveList runs the server of docs/build-a-live-model.md (client/examples/livelist)
// as the page would use it, against the real relay, Kafka and Centrifugo: the state endpoint's
// bootstrap, tokens only for a signed-in user and the one channel, an added item arriving as an
// event with its mutation id, a replay answering the first outcome, a refusal published as a
// rejected event, a NUL character refused with a 400.
func TestExample_LiveList(t *testing.T) {
	t.Parallel()
	e, relayEnv := harness.NewSchemaOutbox(t, 1)
	schema := e.Name
	e.StartRelay(t, relayEnv...)
	cf := harness.StartCentrifugo(t, e.Brokers, schema)

	bin := filepath.Join(t.TempDir(), "livelist")
	if out, err := exec.Command("go", "build", "-o", bin, "../client/examples/livelist").CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	port := harness.FreePort(t)
	app := exec.Command(bin)
	app.Env = append(e.Env(),
		"DATABASE_URL="+e.DatabaseURL+sep(e.DatabaseURL)+"search_path="+schema,
		"CENTRIFUGO_URL="+cf.URL(),
		modelserver.EnvCentrifugoAPIKey+"="+cf.Keys.APIKey,
		modelserver.EnvCentrifugoHMACSecret+"="+cf.Keys.HMACSecret,
		"APP_PASSWORD=s3cret",
		fmt.Sprintf("ADDR=127.0.0.1:%d", port),
	)
	appLog := &harness.SyncBuffer{}
	app.Stdout, app.Stderr = appLog, appLog
	app.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = app.Process.Kill()
		_ = app.Wait()
		if t.Failed() {
			t.Logf("example's log:\n%s", appLog.Tail(30))
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	// call makes a request as user (password s3cret unless user is "", no credentials).
	call := func(method, path, user, body string, out any) int {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, "s3cret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %s: %v", method, path, b, err)
			}
		}
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for call("GET", "/api/token", "alice", "", nil) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the example did not answer /api/token within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Tokens and state only for a signed-in user, and only for the list's channel.
	for _, tc := range []struct {
		path, user string
		want       int
	}{
		{"/api/token", "", 401},
		{"/api/subscription-token?channel=outbox:items", "", 401},
		{"/api/subscription-token?channel=outbox:other", "alice", 403},
		{"/api/state?channel=outbox:other", "alice", 403},
	} {
		if got := call("GET", tc.path, tc.user, "", nil); got != tc.want {
			t.Errorf("GET %s as %q: %d, want %d", tc.path, tc.user, got, tc.want)
		}
	}

	type item struct{ ID, Title string }
	var st struct {
		Data      []item
		Bootstrap struct {
			Position harness.StreamPosition
			Snapshot string
		}
	}
	if code := call("GET", "/api/state?channel=outbox:items", "alice", "", &st); code != 200 || len(st.Data) != 0 || st.Bootstrap.Snapshot == "" {
		t.Fatalf("state: %d %+v", code, st)
	}
	var tok, subTok struct{ Token string }
	call("GET", "/api/token", "alice", "", &tok)
	call("GET", "/api/subscription-token?channel=outbox:items", "alice", "", &subTok)
	client := centrifuge.NewJsonClient(cf.WSURL(), centrifuge.Config{Token: tok.Token, HandshakeTimeout: harness.ClientHandshakeTimeout})
	t.Cleanup(client.Close)
	sub, err := client.NewSubscription("outbox:items", centrifuge.SubscriptionConfig{
		Token: subTok.Token, Positioned: true, Recoverable: true,
		GetState: func(centrifuge.SubscriptionGetStateEvent) (centrifuge.StreamPosition, error) {
			return centrifuge.StreamPosition{Offset: st.Bootstrap.Position.Offset, Epoch: st.Bootstrap.Position.Epoch}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	pubs := make(chan centrifuge.PublicationEvent, 10)
	sub.OnPublication(func(ev centrifuge.PublicationEvent) { pubs <- ev })
	if err := sub.Subscribe(); err != nil {
		t.Fatal(err)
	}
	if err := client.Connect(); err != nil {
		t.Fatal(err)
	}

	type outcome struct {
		XID      string
		Rejected bool
		Reason   string
	}
	var first, again, refused outcome
	add := `{"mutationId":"m-1","name":"add","data":{"id":"i1","title":"Milk"}}`
	if code := call("POST", "/api/mutations", "alice", add, &first); code != 200 || first.XID == "" || first.Rejected {
		t.Fatalf("add: %d %+v", code, first)
	}
	if code := call("POST", "/api/mutations", "alice", add, &again); code != 200 || again != first {
		t.Errorf("replayed add: %d %+v, want %+v", code, again, first)
	}
	long := fmt.Sprintf(`{"mutationId":"m-2","name":"add","data":{"id":"i2","title":%q}}`, strings.Repeat("x", 81))
	if code := call("POST", "/api/mutations", "alice", long, &refused); code != 200 || !refused.Rejected || refused.Reason == "" {
		t.Errorf("too long a title: %d %+v, want a refusal", code, refused)
	}
	if code := call("POST", "/api/mutations", "alice", `{"mutationId":"m-3","name":"add","data":{"id":"i3","title":"a\u0000b"}}`, nil); code != 400 {
		t.Errorf("a NUL character: %d, want 400", code)
	}

	// Two events, in commit order: the add with its mutation id, then the refusal.
	for i, want := range []struct{ mutation, rejected, xid string }{{"m-1", "", first.XID}, {"m-2", "true", refused.XID}} {
		select {
		case p := <-pubs:
			if p.Tags["mutation-id"] != want.mutation || p.Tags["rejected"] != want.rejected || p.Tags["xid"] != want.xid {
				t.Errorf("event %d: tags %v data %s, want mutation %s rejected %q xid %s", i, p.Tags, p.Data, want.mutation, want.rejected, want.xid)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("event %d did not arrive within 60s", i)
		}
	}
	select {
	case p := <-pubs:
		t.Errorf("an extra event: tags %v data %s (a replay must write nothing)", p.Tags, p.Data)
	case <-time.After(2 * time.Second):
	}
	if call("GET", "/api/state?channel=outbox:items", "alice", "", &st); len(st.Data) != 1 || st.Data[0].Title != "Milk" {
		t.Errorf("state after: %+v, want [Milk]", st.Data)
	}
}

// sep is the separator before a URL's next query parameter.
func sep(url string) string {
	if strings.Contains(url, "?") {
		return "&"
	}
	return "?"
}

// TestExample_LiveListPage type-checks the walkthrough's page (client/examples/livelist/web/app.ts,
// shown verbatim in docs/build-a-live-model.md) against @pgoutbox/models' types, strict.
func TestExample_LiveListPage(t *testing.T) {
	t.Parallel()
	harness.NeedNode(t, false)
	models, err := filepath.Abs(needModelsPackage(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(models, "node_modules", "typescript", "bin", "tsc"), "-p", ".")
	cmd.Dir = filepath.Join(repoRoot, "client", "examples", "livelist", "web")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc client/examples/livelist/web: %v\n%s", err, out)
	}
}
