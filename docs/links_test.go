package docs

import (
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository's root, seen from this package's directory (go test runs there).
const root = ".."

// pages returns the Markdown files whose links are checked, as slash paths from the root:
// the front page and every page of docs/.
func pages(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	matches, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range matches {
		rel, err := filepath.Rel(root, m)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	if len(files) < 3 {
		t.Fatalf("found only %v: the test does not see the docs it should check", files)
	}
	return files
}

func read(t *testing.T, page string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(page)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	fence = regexp.MustCompile("(?m)^ {0,3}(```|~~~)")
	// codeSpan matches inline code (one or two backticks), which holds no links.
	codeSpan = regexp.MustCompile("``[^`]+``|`[^`\n]+`")
	// inlineLink matches [text](target) and ![alt](target), the text possibly over lines,
	// the target optionally followed by a "title".
	inlineLink = regexp.MustCompile(`\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	htmlLink   = regexp.MustCompile(`(?i)<(?:a|img)\s[^>]*(?:href|src)\s*=\s*"([^"]*)"`)
	heading    = regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	htmlAnchor = regexp.MustCompile(`(?i)<a\s[^>]*(?:id|name)\s*=\s*"([^"]+)"`)
)

// prose returns the page's lines outside fenced code blocks.
func prose(text string) []string {
	var out []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		if fence.MatchString(line) {
			in = !in
			continue
		}
		if !in {
			out = append(out, line)
		}
	}
	return out
}

// links returns the targets of the page's links, code excluded.
func links(text string) []string {
	body := codeSpan.ReplaceAllString(strings.Join(prose(text), "\n"), "")
	var out []string
	for _, m := range inlineLink.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	for _, m := range htmlLink.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// anchors returns the fragment ids a page's headings get on GitHub: the heading's text in
// lower case, every character but letters, digits, spaces, hyphens and underscores dropped,
// spaces made hyphens; a repeated id gets -1, -2, … Explicit <a id="…"> anchors count too.
func anchors(text string) map[string]bool {
	ids := map[string]bool{}
	seen := map[string]int{}
	for _, line := range prose(text) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			ids[m[1]] = true
		}
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		id := slug(m[2])
		if n := seen[id]; n > 0 {
			ids[id+"-"+strconv.Itoa(n)] = true
		} else {
			ids[id] = true
		}
		seen[id]++
	}
	return ids
}

func slug(title string) string {
	// What GitHub renders: links keep their text, emphasis and code marks vanish.
	title = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(title, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestSlug pins the anchor rule on headings the pages use.
func TestSlug(t *testing.T) {
	for title, want := range map[string]string{
		"Choosing a mode: table rows or WAL-only messages":    "choosing-a-mode-table-rows-or-wal-only-messages",
		"Delivery: exactly-once into Kafka":                   "delivery-exactly-once-into-kafka",
		"The `pgoutbox-position` header":                      "the-pgoutbox-position-header",
		"Behaviour you can rely on (and the choices we made)": "behaviour-you-can-rely-on-and-the-choices-we-made",
		"Commit → screen":                                     "commit--screen",
		"See [the design](x.md) now":                          "see-the-design-now",
		"snake_case stays":                                    "snake_case-stays",
	} {
		if got := slug(title); got != want {
			t.Errorf("slug(%q) = %q, want %q", title, got, want)
		}
	}
}

// TestLinks fails on a relative link to a file or heading that does not exist, on a link that
// leaves the repository other than to a public web site, and on a link into the repository
// that climbs out of it (such as ../shared/…, which no reader of the repository has).
func TestLinks(t *testing.T) {
	checked := 0
	for _, page := range pages(t) {
		text := read(t, page)
		for _, target := range links(text) {
			checked++
			if problem := checkLink(t, page, target); problem != "" {
				t.Errorf("%s: link %q: %s", page, target, problem)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d links found in the docs: the link parser is broken", checked)
	}
}

func checkLink(t *testing.T, page, target string) string {
	t.Helper()
	if target == "" {
		return "empty target"
	}
	u, err := url.Parse(target)
	if err != nil {
		return "not a URL: " + err.Error()
	}
	if u.Scheme != "" || strings.HasPrefix(target, "//") {
		return checkExternal(u)
	}
	if strings.HasPrefix(u.Path, "/") {
		return "an absolute path: write it relative to " + page
	}
	file := page
	if u.Path != "" {
		file = path.Join(path.Dir(page), u.Path)
		if file == ".." || strings.HasPrefix(file, "../") {
			return "leaves the repository: link only to files in it, or to a public web site"
		}
		info, err := os.Stat(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			return "no such file or directory in the repository"
		}
		if info.IsDir() {
			if u.Fragment != "" {
				return "an #anchor on a directory"
			}
			return ""
		}
	}
	if u.Fragment == "" || !strings.HasSuffix(file, ".md") {
		return ""
	}
	if !anchors(read(t, file))[u.Fragment] {
		return "no heading in " + file + " has the anchor #" + u.Fragment
	}
	return ""
}

// checkExternal accepts web links to public hosts only: a link to a laptop, a private network
// or a file on one machine works for nobody else.
func checkExternal(u *url.URL) string {
	if u.Scheme != "https" && u.Scheme != "http" {
		return "scheme " + u.Scheme + ": only web links may leave the repository"
	}
	host := u.Hostname()
	if host == "" {
		return "no host"
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsLinkLocalUnicast()) {
		return "a private address: link to a public site or a file in the repository"
	}
	if host == "localhost" || !strings.Contains(host, ".") ||
		slices.ContainsFunc([]string{".local", ".internal", ".localhost", ".lan"}, func(s string) bool { return strings.HasSuffix(host, s) }) {
		return "a private host: link to a public site or a file in the repository"
	}
	return ""
}

// TestCheckLink shows that the checks can fail: each of these links is refused.
func TestCheckLink(t *testing.T) {
	for _, target := range []string{
		"../shared/DESIGN.md", "docs/no-such-page.md", "README.md#no-such-heading",
		"/etc/passwd", "file:///etc/passwd", "http://127.0.0.1:8080/", "http://localhost:9090/",
		"https://db.internal/x", "#nothing-here", "",
	} {
		if checkLink(t, "README.md", target) == "" {
			t.Errorf("link %q from README.md was accepted", target)
		}
	}
	for _, target := range []string{"docs/architecture.md", "docs/", "#pgoutbox", "https://centrifugal.dev"} {
		if p := checkLink(t, "README.md", target); p != "" {
			t.Errorf("link %q from README.md was refused: %s", target, p)
		}
	}
}

// TestIndex_EveryPageLinked makes a new page findable: every docs/*.md page is linked from the
// front page's "Where to read on" table.
func TestIndex_EveryPageLinked(t *testing.T) {
	linked := map[string]bool{}
	for _, target := range links(read(t, "README.md")) {
		if u, err := url.Parse(target); err == nil && u.Scheme == "" {
			linked[path.Clean(u.Path)] = true
		}
	}
	for _, page := range pages(t)[1:] {
		if !linked[page] {
			t.Errorf("%s is not linked from README.md: add a row to its \"Where to read on\" table", page)
		}
	}
}
