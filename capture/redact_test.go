package capture

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db":                 "postgres://u:%2A%2A%2A@h:5432/db",
		"postgresql://u:secret@h/db?sslmode=require":    "postgresql://u:%2A%2A%2A@h/db?sslmode=require",
		"postgres://u@h/db?password=secret":             "postgres://u@h/db?password=%2A%2A%2A",
		"postgres://h/db":                               "postgres://h/db",
		"host=h password=secret user=u":                 "host=h password=*** user=u",
		"host=h user=u password=secret":                 "host=h user=u password=***",
		"host=h password = 'a secret \\' quote' user=u": "host=h password = *** user=u",
		"postgres://u:sec%ret@h/db":                     "postgres://u:***@h/db", // unparsable escape
	} {
		got := RedactURL(in)
		if got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "sec%ret") {
			t.Errorf("RedactURL(%q) leaks the password", in)
		}
	}
}
