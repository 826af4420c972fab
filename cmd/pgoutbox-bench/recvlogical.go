package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// recvLogical runs PostgreSQL's own pg_recvlogical on the outbox's reference slot, with
// pgoutput and the outbox's publication, writing to /dev/null until endpos: how fast one slot
// can decode this backlog and send it over a replication connection, with no work per row.
// It returns the process's wall time and the CPU time it, its walsender and Kafka used.
func (b *bench) recvLogical(ctx context.Context, o *outbox, endpos pglogrepl.LSN) (time.Duration, CPU, error) {
	bin, err := pgBin("pg_recvlogical")
	if err != nil {
		return 0, CPU{}, err
	}
	cfg, err := pgx.ParseConfig(b.opts.databaseURL)
	if err != nil {
		return 0, CPU{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	//nolint:gosec // the PostgreSQL client program, with our arguments
	cmd := exec.CommandContext(cctx, bin,
		"--dbname", fmt.Sprintf("host=%s port=%d user=%s dbname=%s", cfg.Host, cfg.Port, cfg.User, cfg.Database),
		"--slot", o.refSlot, "--start", "--endpos", endpos.String(), "--no-loop",
		"--option", "proto_version=1", "--option", "publication_names="+o.Name,
		"--file", os.DevNull)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+cfg.Password)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	meter := b.meterCPU(ctx, o.refSlot)
	began := time.Now()
	err = cmd.Run()
	took := time.Since(began)
	cpu := meter.stop()
	if err != nil {
		return 0, cpu, fmt.Errorf("pg_recvlogical: %w\n%s", err, out.String())
	}
	cpu.Reader = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	// It must have read up to endpos, not stopped early.
	conn, err := pgx.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return took, cpu, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	confirmed, err := harness.ReadSlotConfirmed(ctx, conn, o.refSlot)
	if err != nil {
		return took, cpu, err
	}
	if confirmed < endpos {
		return took, cpu, fmt.Errorf("pg_recvlogical stopped at %s, before the end of the backlog %s:\n%s", confirmed, endpos, out.String())
	}
	return took, cpu, nil
}
