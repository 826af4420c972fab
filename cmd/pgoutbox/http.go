package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// health is what /readyz reports: ready while streaming and the slot's alarm is below critical.
type health struct {
	mu          sync.Mutex
	streaming   bool
	reason      string // why not streaming
	alarm       capture.Level
	alarmReason string
	waits       map[string]bool // topics publishing waits for
}

// setTopicWait records that publishing waits for topic's metadata (or no longer does) and
// returns waiting.
func (h *health) setTopicWait(topic string, waiting bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waits == nil {
		h.waits = map[string]bool{}
	}
	if waiting {
		h.waits[topic] = true
	} else {
		delete(h.waits, topic)
	}
	return waiting
}

func (h *health) set(streaming bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streaming, h.reason = streaming, reason
}

func (h *health) setAlarm(l capture.Level, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.alarm, h.alarmReason = l, reason
}

func (h *health) ready() (bool, map[string]any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	body := map[string]any{"streaming": h.streaming, "alarm": h.alarm.String()}
	var why []string
	if !h.streaming {
		why = append(why, "not streaming: "+h.reason)
	}
	if h.alarm >= capture.LevelCritical {
		why = append(why, "slot alarm "+h.alarm.String()+": "+h.alarmReason)
	}
	for _, topic := range slices.Sorted(maps.Keys(h.waits)) {
		why = append(why, fmt.Sprintf("publishing waits for the metadata of topic %q (missing, or no leader): every channel is stalled", topic))
	}
	ok := len(why) == 0
	body["ready"] = ok
	if !ok {
		body["reason"] = strings.Join(why, "; ")
	}
	return ok, body
}

// serveHTTP serves /metrics, /healthz and /readyz until ctx is done. An address that cannot be
// bound is an error at start-up, not a silent lack of monitoring.
func serveHTTP(ctx context.Context, addr string, m *metrics, log zerolog.Logger) (func(), error) {
	h := m.health
	if addr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, body := h.ready()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, body)
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, errors.Join(err, errors.New("--http-addr: choose a free address, or set it empty to disable metrics and health"))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("http server stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving /metrics, /healthz, /readyz")
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
