package sink

import (
	"strings"
	"testing"
	"time"
)

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		c := Config{Brokers: []string{"localhost:9092"}, Topic: "outbox"}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		want := Config{
			Brokers: []string{"localhost:9092"}, Topic: "outbox", ClientID: "pgoutbox",
			MaxBatchMessages: 10000, MaxRequestBytes: 1_000_000, RequestTimeout: 10 * time.Second,
			BackoffMin: 100 * time.Millisecond, BackoffMax: 5 * time.Second, DialTimeout: 5 * time.Second,
			Compression: "none", MetadataTTL: 5 * time.Second,
		}
		if c.ClientID != want.ClientID || c.MaxBatchMessages != want.MaxBatchMessages ||
			c.MaxRequestBytes != want.MaxRequestBytes || c.RequestTimeout != want.RequestTimeout ||
			c.BackoffMin != want.BackoffMin || c.BackoffMax != want.BackoffMax ||
			c.DialTimeout != want.DialTimeout || c.Compression != want.Compression ||
			c.MetadataTTL != want.MetadataTTL {
			t.Errorf("defaults = %+v, want %+v", c, want)
		}
	})
	t.Run("all problems at once", func(t *testing.T) {
		t.Parallel()
		c := Config{
			Brokers: []string{"nohost", ":9092", "h:99999"}, Topic: "bad topic!",
			MaxBatchMessages: -1, MaxRequestBytes: -5, RequestTimeout: -time.Second,
			BackoffMin: 10 * time.Second, BackoffMax: time.Second, Compression: "brotli",
		}
		err := c.Validate()
		if err == nil {
			t.Fatal("no error")
		}
		for _, want := range []string{`"nohost"`, `":9092"`, `"h:99999"`, "bad topic!", "max batch messages",
			"max request bytes", "request timeout", "min 10s is above max 1s", "brotli"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
	})
	t.Run("no brokers", func(t *testing.T) {
		t.Parallel()
		c := Config{}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "brokers: none given") || !strings.Contains(err.Error(), "topic name is empty") {
			t.Errorf("Validate() = %v", err)
		}
	})
	t.Run("compressions", func(t *testing.T) {
		t.Parallel()
		for _, comp := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
			c := Config{Brokers: []string{"b:1"}, Topic: "t", Compression: comp}
			if err := c.Validate(); err != nil {
				t.Errorf("compression %q: %v", comp, err)
			}
		}
	})
}

func TestCheckTopicName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"outbox": true, "a.b_c-D9": true, strings.Repeat("x", 249): true,
		"": false, ".": false, "..": false, "a b": false, "é": false, "a/b": false, strings.Repeat("x", 250): false,
	} {
		if err := checkTopicName(name); (err == nil) != ok {
			t.Errorf("checkTopicName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
