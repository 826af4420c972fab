package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// relayProc is one `pgoutbox run` process (harness.RelayProcess) with /metrics on a port of its
// own. Each scenario starts its own, so that its peak resident memory (VmHWM) is the scenario's.
type relayProc struct {
	*harness.RelayProcess
	metrics string   // host:port of /metrics
	logFile *os.File // a copy of the log, with --relay-logs
}

// startRelay starts the relay on o with /metrics on a free port.
func (b *bench) startRelay(o *outbox, extraEnv ...string) (*relayProc, error) {
	port, err := harness.ListenPort()
	if err != nil {
		return nil, err
	}
	p := &relayProc{metrics: fmt.Sprintf("127.0.0.1:%d", port)}
	var logCopy io.Writer
	if b.opts.relayLogs != "" {
		if err := os.MkdirAll(b.opts.relayLogs, 0o750); err != nil {
			return nil, err
		}
		if p.logFile, err = os.Create(filepath.Join(b.opts.relayLogs, o.Name+".log")); err != nil {
			return nil, err
		}
		logCopy = p.logFile
	}
	if b.opts.relayEnv != "" {
		extraEnv = append(extraEnv, strings.Split(b.opts.relayEnv, ",")...)
	}
	p.RelayProcess, err = harness.StartRelayProcess(b.relayBin, o.env(append([]string{"PGOUTBOX_HTTP_ADDR=" + p.metrics}, extraEnv...)...), logCopy)
	if err != nil {
		p.closeLog()
		return nil, err
	}
	return p, nil
}

// stop ends the relay with SIGTERM (drain, final status update) and kills it if it takes
// longer than a minute.
func (p *relayProc) stop() error {
	err := p.Terminate(time.Minute)
	p.closeLog()
	return err
}

func (p *relayProc) closeLog() {
	if p.logFile != nil {
		_ = p.logFile.Close()
	}
}

// scrape reads /metrics into series → value ("name" or "name{labels}").
func (p *relayProc) scrape(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return harness.ScrapeMetrics(ctx, p.metrics)
}
