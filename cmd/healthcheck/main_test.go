package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"default", nil, nil, "http://127.0.0.1:9187/healthz", ""},
		{"argument", []string{"http://x:1/readyz"}, nil, "http://x:1/readyz", ""},
		{"wildcard port", nil, map[string]string{"PGOUTBOX_HTTP_ADDR": ":9200"}, "http://127.0.0.1:9200/healthz", ""},
		{"wildcard v4", nil, map[string]string{"PGOUTBOX_HTTP_ADDR": "0.0.0.0:9200"}, "http://127.0.0.1:9200/healthz", ""},
		{"wildcard v6", nil, map[string]string{"PGOUTBOX_HTTP_ADDR": "[::]:9200"}, "http://127.0.0.1:9200/healthz", ""},
		{"host", nil, map[string]string{"PGOUTBOX_HTTP_ADDR": "10.1.2.3:9200"}, "http://10.1.2.3:9200/healthz", ""},
		{"disabled", nil, map[string]string{"PGOUTBOX_HTTP_ADDR": ""}, "", "serves no /healthz"},
		{"bad address", nil, map[string]string{"PGOUTBOX_HTTP_ADDR": "9200"}, "", "PGOUTBOX_HTTP_ADDR"},
		{"two arguments", []string{"a", "b"}, nil, "", "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := target(tt.args, env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("target = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = w.Write([]byte(`{"status":"ok"}`))
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := check(ctx, srv.URL+"/healthz"); err != nil {
		t.Errorf("healthy server: %v", err)
	}
	if err := check(ctx, srv.URL+"/readyz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: err = %v, want one naming the status", err)
	}
	srv.Close()
	if err := check(ctx, srv.URL+"/healthz"); err == nil {
		t.Error("stopped server: no error")
	}
}
