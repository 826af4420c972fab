//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"go/version"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"go.yaml.in/yaml/v3"
)

// The deployment files are tested here without Docker (this machine has no engine): each file
// is parsed and checked against the binary's own settings and against the other files, the
// image's build commands are run as the Dockerfile runs them, and Prometheus' configuration
// goes through promtool. They need no service.

var repoRoot = ".."

// dockerStage is one FROM ... AS name stage of a Dockerfile, with its instructions.
type dockerStage struct {
	name, from string
	instrs     [][2]string // instruction (upper case), arguments
}

// parseDockerfile reads the instructions, joining continued lines and dropping comments.
func parseDockerfile(t *testing.T, file string) []*dockerStage {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stages []*dockerStage
	var line string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || text == "" && line == "" {
			continue
		}
		if cont, ok := strings.CutSuffix(text, `\`); ok {
			line += cont + " "
			continue
		}
		line += text
		instr, args, _ := strings.Cut(line, " ")
		instr, args, line = strings.ToUpper(instr), strings.TrimSpace(args), ""
		if instr == "FROM" {
			f := strings.Fields(args)
			s := &dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%s: %s before the first FROM", file, instr)
		}
		st := stages[len(stages)-1]
		st.instrs = append(st.instrs, [2]string{instr, args})
	}
	return stages
}

func (s *dockerStage) all(instr string) []string {
	var out []string
	for _, in := range s.instrs {
		if in[0] == instr {
			out = append(out, in[1])
		}
	}
	return out
}

// execForm parses the JSON array form of CMD, ENTRYPOINT and HEALTHCHECK CMD: the one that
// needs no shell, which a scratch image does not have.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("%s %s: want the exec form [\"/path\", ...] (the image has no shell): %v", what, args, err)
	}
	return argv
}

// pinned reports whether an image reference names a version: a digest, or a tag other than latest.
func pinned(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	i := strings.LastIndex(ref, ":")
	return i > strings.LastIndex(ref, "/") && ref[i+1:] != "" && ref[i+1:] != "latest"
}

// binarySettings returns the PGOUTBOX_* variables and the flags that `pgoutbox <command> --help`
// lists: the binary's own word for what it accepts.
func binarySettings(t *testing.T, command string) (env, flags map[string]bool) {
	t.Helper()
	cmd := exec.Command(harness.RelayBinary, command, "--help")
	cmd.Env = []string{} // the help must not depend on the caller's environment
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgoutbox %s --help: %v\n%s", command, err, out)
	}
	env, flags = map[string]bool{}, map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env (PGOUTBOX_[A-Z0-9_]+)`).FindAllStringSubmatch(string(out), -1) {
		env[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)$`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(env) < 10 || len(env) != len(flags) {
		t.Fatalf("pgoutbox %s --help: found %d variables and %d flags; has the help format changed?\n%s", command, len(env), len(flags), out)
	}
	return env, flags
}

func kafkaVersionOfScripts(t *testing.T) string {
	t.Helper()
	pom, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "local", "kafka", "pom.xml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(pom)
	if m == nil {
		t.Fatal("no <kafka.version> in deploy/local/kafka/pom.xml")
	}
	return string(m[1])
}

// TestDockerfile: multi-stage, every base image pinned, a Go at least as new as go.mod asks,
// static binaries (the build commands of the image, run here as written), a non-root final
// stage whose ENTRYPOINT is pgoutbox and whose HEALTHCHECK runs a binary that the image holds
// and that works.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t, filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	names := map[string]bool{}
	var build *dockerStage
	for _, s := range stages {
		switch {
		case s.from == "scratch" || names[s.from]:
		case !pinned(s.from):
			t.Errorf("FROM %s: pin a version", s.from)
		}
		if img, tag, _ := strings.Cut(s.from, ":"); img == "golang" {
			build = s
			gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			want := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
			have, _, _ := strings.Cut(tag, "-")
			if want == nil || version.Compare("go"+have, "go"+string(want[1])) < 0 {
				t.Errorf("FROM %s: go.mod asks for Go %s", s.from, want[1])
			}
		}
		names[s.name] = true
	}
	if build == nil {
		t.Fatal("no golang build stage")
	}

	final := stages[len(stages)-1]
	if final.from != "scratch" {
		t.Logf("runtime stage FROM %s (not scratch)", final.from)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Error("the runtime stage runs as root: add USER")
	} else if u, _, _ := strings.Cut(users[len(users)-1], ":"); u == "0" || u == "root" {
		t.Errorf("USER %s: run as an unprivileged user", users[len(users)-1])
	}
	copied := map[string]bool{} // paths in the image, from COPY <src...> <dir/>
	for _, args := range final.all("COPY") {
		f := slices.DeleteFunc(strings.Fields(args), func(s string) bool { return strings.HasPrefix(s, "--") })
		dst := f[len(f)-1]
		for _, src := range f[:len(f)-1] {
			if strings.HasSuffix(dst, "/") {
				copied[dst+path.Base(src)] = true
			} else {
				copied[dst] = true
			}
		}
	}
	entry := final.all("ENTRYPOINT")
	if len(entry) != 1 {
		t.Fatalf("runtime stage: %d ENTRYPOINTs, want one", len(entry))
	}
	if argv := execForm(t, "ENTRYPOINT", entry[0]); path.Base(argv[0]) != "pgoutbox" || !copied[argv[0]] {
		t.Errorf("ENTRYPOINT %s: want the pgoutbox binary the stage copies (%v)", entry[0], copied)
	}
	hc := final.all("HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("runtime stage: %d HEALTHCHECKs, want one", len(hc))
	}
	_, cmdArgs, ok := strings.Cut(hc[0], "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s: no CMD", hc[0])
	}
	probe := execForm(t, "HEALTHCHECK CMD", cmdArgs)
	if !copied[probe[0]] {
		t.Errorf("HEALTHCHECK runs %s, which the stage does not copy (%v)", probe[0], copied)
	}
	runEnv, _ := binarySettings(t, "run")
	for _, args := range final.all("ENV") {
		name, _, _ := strings.Cut(args, "=")
		if strings.HasPrefix(name, "PGOUTBOX_") && !runEnv[name] {
			t.Errorf("ENV %s: pgoutbox run does not know it", name)
		}
	}

	// The build stage's commands, run here as written (output in a temporary directory).
	out := t.TempDir()
	env := append(os.Environ(), build.all("ENV")...)
	var built []string
	for _, args := range build.all("RUN") {
		if !strings.Contains(args, "go build") {
			continue
		}
		for _, m := range regexp.MustCompile(`-o /out/(\S+)`).FindAllStringSubmatch(args, -1) {
			built = append(built, filepath.Join(out, m[1]))
		}
		cmd := exec.Command("sh", "-c", strings.ReplaceAll(args, "/out/", out+"/"))
		cmd.Dir, cmd.Env = repoRoot, env
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", args, err, b)
		}
	}
	for _, bin := range built {
		if err := checkStatic(bin); err != nil {
			t.Errorf("%s: %v: a scratch image has no libc or loader", filepath.Base(bin), err)
		}
	}
	checkProbe(t, filepath.Join(out, path.Base(probe[0])), probe[1:])
}

// checkStatic reports an error when the ELF file needs a dynamic loader or shared libraries.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked (has an ELF interpreter)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}

// checkProbe runs the image's health probe, as built for it, against a healthy and an
// unhealthy endpoint, on the port that PGOUTBOX_HTTP_ADDR names (how the image configures it).
func checkProbe(t *testing.T, bin string, args []string) {
	t.Helper()
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	probe := func() error {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PGOUTBOX_HTTP_ADDR=:" + port}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := probe(); err != nil {
		t.Errorf("health probe against a healthy /healthz: %v", err)
	}
	healthy.Store(false)
	if err := probe(); err == nil {
		t.Error("health probe against an unhealthy /healthz: exit 0")
	}
}

// compose is the part of docker-compose.yml that the tests read.
type compose struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
			Target     string `yaml:"target"`
		} `yaml:"build"`
		Command     []string `yaml:"command"`
		Environment any      `yaml:"environment"` // a map or a list of NAME=value
		Healthcheck *struct {
			Test    []string `yaml:"test"`
			Disable bool     `yaml:"disable"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Volumes []string `yaml:"volumes"`
		Ports   []string `yaml:"ports"`
	} `yaml:"services"`
}

// envOf returns a service's environment as a map, whichever form the file uses.
func envOf(t *testing.T, v any) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch e := v.(type) {
	case nil:
	case map[string]any:
		for k, val := range e {
			out[k] = fmt.Sprint(val)
		}
	case []any:
		for _, kv := range e {
			k, val, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = val
		}
	default:
		t.Fatalf("environment of type %T", v)
	}
	return out
}

// TestCompose checks docker-compose.yml: pinned images, the Kafka version of the local scripts,
// PostgreSQL for logical decoding with a finite max_slot_wal_keep_size, only settings that the
// binary knows, healthchecks behind every service_healthy condition, the start order
// (services → setup → relay → demo), files that exist, and Prometheus scraping the relay.
func TestCompose(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"postgres", "kafka", "setup", "pgoutbox", "demo", "prometheus"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("no service %q", name)
		}
	}
	stages := map[string]bool{}
	for _, s := range parseDockerfile(t, filepath.Join(repoRoot, "deploy", "Dockerfile")) {
		stages[s.name] = true
	}
	settings := map[string][2]map[string]bool{}
	for _, cmd := range []string{"run", "setup"} {
		env, flags := binarySettings(t, cmd)
		settings[cmd] = [2]map[string]bool{env, flags}
	}

	for name, s := range c.Services {
		if s.Image == "" || !pinned(s.Image) {
			t.Errorf("%s: image %q: pin a version (no latest, no missing tag)", name, s.Image)
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(repoRoot, s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: build: %v", name, err)
			}
			if s.Build.Target != "" && !stages[s.Build.Target] {
				t.Errorf("%s: build target %q is not a stage of the Dockerfile", name, s.Build.Target)
			}
		}
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("%s: volume %s: %v", name, v, err)
				}
			}
		}
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which does not exist", name, dep)
			case d.Condition == "service_healthy" && (target.Healthcheck == nil || target.Healthcheck.Disable || len(target.Healthcheck.Test) == 0):
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		// Every PGOUTBOX_* variable must be one the binary reads (the demo reads the same names).
		command := "run"
		if len(s.Command) > 0 && s.Command[0] == "setup" {
			command = "setup"
		}
		for k := range envOf(t, s.Environment) {
			if strings.HasPrefix(k, "PGOUTBOX_") && !settings[command][0][k] {
				t.Errorf("%s: %s is not a setting of pgoutbox %s", name, k, command)
			}
		}
	}

	for svc, want := range map[string]string{"setup": "setup", "pgoutbox": "run"} {
		s := c.Services[svc]
		if len(s.Command) == 0 || s.Command[0] != want || s.Build == nil || s.Build.Target != "pgoutbox" {
			t.Errorf("%s: want the pgoutbox image running %q, got image %s command %v", svc, want, s.Image, s.Command)
			continue
		}
		for _, arg := range s.Command[1:] {
			if flag, ok := strings.CutPrefix(arg, "--"); ok && !settings[want][1][strings.SplitN(flag, "=", 2)[0]] {
				t.Errorf("%s: pgoutbox %s has no flag %s", svc, want, arg)
			}
		}
	}
	wantDeps := map[string]map[string]string{
		"setup":    {"postgres": "service_healthy", "kafka": "service_healthy"},
		"pgoutbox": {"setup": "service_completed_successfully"},
		"demo":     {"pgoutbox": "service_healthy"},
	}
	for svc, deps := range wantDeps {
		for dep, cond := range deps {
			if got := c.Services[svc].DependsOn[dep].Condition; got != cond {
				t.Errorf("%s depends on %s with condition %q, want %q", svc, dep, got, cond)
			}
		}
	}
	if hc := c.Services["pgoutbox"].Healthcheck; hc == nil || len(hc.Test) < 2 || hc.Test[1] != "/usr/local/bin/healthcheck" {
		t.Errorf("pgoutbox: healthcheck %+v, want [CMD /usr/local/bin/healthcheck] (the image's probe)", hc)
	}

	pg := c.Services["postgres"]
	if major, _, _ := strings.Cut(strings.TrimPrefix(pg.Image, "postgres:"), "."); !strings.HasPrefix(pg.Image, "postgres:") {
		t.Errorf("postgres: image %s, want the official postgres image", pg.Image)
	} else if n, err := strconv.Atoi(major); err != nil || n < 14 {
		t.Errorf("postgres: image %s, want a current major version", pg.Image)
	}
	args := strings.Join(pg.Command, " ")
	if !strings.Contains(args, "wal_level=logical") {
		t.Errorf("postgres: command %v lacks wal_level=logical", pg.Command)
	}
	if m := regexp.MustCompile(`max_slot_wal_keep_size=(\S+)`).FindStringSubmatch(args); m == nil || m[1] == "-1" {
		t.Errorf("postgres: command %v: set a finite max_slot_wal_keep_size", pg.Command)
	}
	if want := "apache/kafka:" + kafkaVersionOfScripts(t); c.Services["kafka"].Image != want {
		t.Errorf("kafka: image %s, want %s (the version of deploy/local/kafka/pom.xml)", c.Services["kafka"].Image, want)
	}

	// Prometheus loads deploy/prometheus and scrapes the relay where the relay listens.
	prom := c.Services["prometheus"]
	if !slices.Contains(prom.Volumes, "./deploy/prometheus:/etc/prometheus:ro") ||
		!slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus: want deploy/prometheus mounted on /etc/prometheus and its prometheus.yml loaded; got %v %v", prom.Volumes, prom.Command)
	}
	addr := envOf(t, c.Services["pgoutbox"].Environment)["PGOUTBOX_HTTP_ADDR"]
	for _, args := range parseDockerfile(t, filepath.Join(repoRoot, "deploy", "Dockerfile"))[len(stages)-1].all("ENV") {
		if v, ok := strings.CutPrefix(args, "PGOUTBOX_HTTP_ADDR="); ok && addr == "" {
			addr = v
		}
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("pgoutbox's PGOUTBOX_HTTP_ADDR %q (compose or image): %v", addr, err)
	}
	var pcfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	pb, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(pb, &pcfg); err != nil {
		t.Fatal(err)
	}
	scraped := false
	for _, sc := range pcfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			// The job must be "pgoutbox": alerts.yml's PgoutboxRelayDown watches up{job="pgoutbox"}.
			scraped = scraped || sc.JobName == "pgoutbox" && slices.Contains(st.Targets, "pgoutbox:"+port)
		}
	}
	if !scraped || !slices.Contains(pcfg.RuleFiles, "alerts.yml") {
		t.Errorf("prometheus.yml: want job pgoutbox scraping pgoutbox:%s and rule file alerts.yml; got %+v", port, pcfg)
	}
}

// TestPrometheusConfig: the configuration of docker-compose.yml's Prometheus, and the alert
// rules it loads, pass Prometheus' own checker.
func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		harness.Unavailable(t, "promtool is not installed (Debian package prometheus; `make test` installs it)")
	}
	cmd := exec.Command(promtool, "check", "config", "prometheus.yml")
	cmd.Dir = filepath.Join(repoRoot, "deploy", "prometheus")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}
