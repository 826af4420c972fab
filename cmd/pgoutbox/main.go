// Command pgoutbox relays a PostgreSQL transactional outbox to Kafka: it streams the outbox
// table's inserts from logical decoding (pgoutput), publishes each row to Kafka keyed by its
// channel, and confirms the replication slot's position only after Kafka acknowledged the rows.
//
//	pgoutbox setup   create (or verify) the outbox table, publication, slot and topic
//	pgoutbox run     the relay
//
// Every flag has a PGOUTBOX_* environment variable; `pgoutbox <command> --help` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

const usage = `pgoutbox relays a PostgreSQL transactional outbox to Kafka.

Usage:
  pgoutbox setup [flags]   create or verify the outbox table, publication, slot and (with --partitions) topic
  pgoutbox run [flags]     stream outbox inserts to Kafka; confirm the slot only after Kafka acks
  pgoutbox status [flags]  the slot's lag and alarm level; exit 0 ok, 1 warn, 2 critical, 3 lost/missing/unknown
  pgoutbox drop-slot --yes drop the replication slot (refuses while a relay streams from it)
  pgoutbox dlq list        what the dead-letter topic holds: original topic, position, error
  pgoutbox dlq redrive [--apply] re-publish dead-letter records to their original topics, in position order (dry run without --apply)
  pgoutbox recover [--apply] publish the events of a publication stretch the relay stopped at, or after a lost slot create it again and republish the outbox rows Kafka lacks (dry run without --apply)
  pgoutbox help [command]  show a command's flags (every flag also reads a PGOUTBOX_* variable)

Exit status: 0 on success and on SIGINT/SIGTERM, 1 on a runtime error, 2 on bad configuration.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" && len(args) == 1 {
		_, _ = fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	command, rest := args[0], args[1:]
	if command == "help" {
		command, rest = args[1], []string{"--help"}
	}
	if command == "dlq" {
		if len(rest) == 0 || rest[0] != "list" && rest[0] != "redrive" {
			_, _ = fmt.Fprintf(stderr, "pgoutbox dlq: want `pgoutbox dlq list` or `pgoutbox dlq redrive [--apply]`\n")
			return 2
		}
		command, rest = "dlq "+rest[0], rest[1:]
	}
	var sc scope
	switch command {
	case "dlq list", "dlq redrive":
		sc = scopeRun | scopeRecover
	case "run":
		sc = scopeRun
	case "setup":
		sc = scopeSetup
	case "status":
		sc = scopeStatus
	case "drop-slot":
		sc = scopeDrop
	case "recover":
		sc = scopeRun | scopeRecover
	default:
		_, _ = fmt.Fprintf(stderr, "pgoutbox: unknown command %q\n\n%s", command, usage)
		return 2
	}

	// Every usage or configuration error of status exits 3 (unknown): 2 would read as
	// "critical" to a monitoring agent.
	badUsage := 2
	if command == "status" {
		badUsage = statusExitUnknown
	}
	var cfg Config
	fs, envErr := newFlagSet(command, sc, &cfg)
	if slices.Contains(rest, "-h") || slices.Contains(rest, "--help") || slices.Contains(rest, "-help") {
		fs.SetOutput(stdout) // asked-for help goes to stdout and exits 0
	} else {
		fs.SetOutput(io.Discard) // a mistake gets one line of ours, not the whole usage
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		_, _ = fmt.Fprintf(stderr, "pgoutbox %s: %s; see `pgoutbox %s --help`\n", command, flagError(fs, err), command)
		return badUsage
	}
	if err := errors.Join(envErr, cfg.Validate(sc)); err != nil {
		_, _ = fmt.Fprintf(stderr, "pgoutbox: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return badUsage
	}
	log := newLogger(&cfg, stderr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var err error
	switch command {
	case "run":
		err = runRelay(ctx, &cfg, log)
	case "setup":
		err = runSetup(ctx, &cfg, log, stdout)
	case "drop-slot":
		err = runDropSlot(ctx, &cfg, log, stdout)
	case "recover":
		err = runRecover(ctx, &cfg, log, stdout)
	case "dlq list":
		err = runDLQList(ctx, &cfg, log, stdout)
	case "dlq redrive":
		err = runDLQRedrive(ctx, &cfg, log, stdout)
	case "status":
		code, err := runStatus(ctx, &cfg, stdout)
		if err != nil {
			log.Error().Err(err).Msg("status failed")
		}
		return code
	}
	if err != nil {
		log.Error().Err(err).Msg(command + " failed")
		return 1
	}
	return 0
}

func parseLevel(s string) (zerolog.Level, error) {
	l, err := zerolog.ParseLevel(s)
	if err != nil || s == "" || l == zerolog.NoLevel {
		return l, fmt.Errorf("--log-level %q: use trace, debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(cfg *Config, w io.Writer) zerolog.Logger {
	level, _ := parseLevel(cfg.LogLevel) // validated
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
