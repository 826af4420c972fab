package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// CheckLogLines fails the test when a JSON log line of pgoutbox has a key twice: jq, Python and
// most log shippers keep only one of the two (an alarm's "level" used to shadow the log level).
// Every relay and every command a test runs is checked, so a full run parses every line.
func CheckLogLines(t testing.TB, who, text string) {
	t.Helper()
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue // console format, usage text, a panic: not a JSON log line
		}
		if err := uniqueKeys([]byte(line)); err != nil {
			t.Errorf("%s log line %d: %v: %s", who, i+1, err, line)
		}
	}
}

// uniqueKeys reports the first key that appears twice in the top-level object of line.
func uniqueKeys(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}
