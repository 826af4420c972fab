// Command demo is the web app of `make demo`: a shared task board that several browsers edit
// together, live. Its state spans two tables (the board, its tasks); each change writes the
// business rows and one outbox event in the same transaction; pgoutbox relays the event to
// Kafka, Centrifugo fans it out to every page, and each page applies it with the bootstrap rules
// of docs/fan-out.md (cmd/demo/web/rules.js mirrors the checkpoint package).
//
//	demo init    create the tables and the board, add the outbox's mutation_id/rejected columns
//	demo serve   serve the page and its API (the default)
//	demo watch   the terminal view: print the records arriving from Kafka, with their latency
//
// It reads the same PGOUTBOX_DATABASE_URL, PGOUTBOX_KAFKA_BROKERS, PGOUTBOX_TOPIC and
// PGOUTBOX_TABLE variables as pgoutbox, and PGOUTBOX_DEMO_* for its own settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"github.com/rs/zerolog"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// config is the app's settings; every one is a flag and a PGOUTBOX_* variable.
type config struct {
	databaseURL      string // PGOUTBOX_DATABASE_URL
	outboxTable      string // PGOUTBOX_TABLE, default public.demo_outbox
	prefix           string // PGOUTBOX_DEMO_TABLE_PREFIX, default demo_: the app's tables are <prefix>boards, <prefix>tasks
	addr             string // PGOUTBOX_DEMO_ADDR, default 127.0.0.1:8080
	centrifugoURL    string // PGOUTBOX_DEMO_CENTRIFUGO_URL, default http://127.0.0.1:58000 (server API; the page connects to its /connection/websocket)
	centrifugoConfig string // PGOUTBOX_DEMO_CENTRIFUGO_CONFIG, default deploy/centrifugo/config.yaml: where the keys are, unless CENTRIFUGO_* say them
	board            Board
}

func main() {
	cmd := "serve"
	args := os.Args[1:]
	if len(args) > 0 && (args[0] == "init" || args[0] == "serve" || args[0] == "watch") {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	if cmd == "watch" {
		err = runWatch(ctx, args)
	} else {
		err = runApp(ctx, cmd, args)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func runApp(ctx context.Context, cmd string, args []string) error {
	var c config
	fs := flag.NewFlagSet("demo "+cmd, flag.ExitOnError)
	fs.StringVar(&c.databaseURL, "database-url", env("PGOUTBOX_DATABASE_URL", "postgres://pgoutbox:pgoutbox@127.0.0.1:55432/pgoutbox"), "PostgreSQL (PGOUTBOX_DATABASE_URL)")
	fs.StringVar(&c.outboxTable, "table", env("PGOUTBOX_TABLE", "public.demo_outbox"), "the outbox table the relay reads (PGOUTBOX_TABLE)")
	fs.StringVar(&c.prefix, "table-prefix", env("PGOUTBOX_DEMO_TABLE_PREFIX", "demo_"), "prefix of the app's tables (PGOUTBOX_DEMO_TABLE_PREFIX)")
	fs.StringVar(&c.addr, "addr", env("PGOUTBOX_DEMO_ADDR", "127.0.0.1:8080"), "listen address of the page and its API (PGOUTBOX_DEMO_ADDR)")
	fs.StringVar(&c.centrifugoURL, "centrifugo-url", env("PGOUTBOX_DEMO_CENTRIFUGO_URL", "http://127.0.0.1:58000"), "Centrifugo's HTTP address (PGOUTBOX_DEMO_CENTRIFUGO_URL)")
	fs.StringVar(&c.centrifugoConfig, "centrifugo-config", env("PGOUTBOX_DEMO_CENTRIFUGO_CONFIG", "deploy/centrifugo/config.yaml"), "Centrifugo's config file, for its API and token keys (PGOUTBOX_DEMO_CENTRIFUGO_CONFIG)")
	fs.IntVar(&c.board.OpenLimit, "open-limit", 8, "open tasks a board allows: the business rule that rejects some changes")
	fs.IntVar(&c.board.TaskLimit, "task-limit", 40, "tasks a board holds")
	_ = fs.Parse(args)
	c.board.ID, c.board.Title = "launch", "Launch checklist"

	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Str("component", "demo").Logger()
	pool, err := pgxpool.New(ctx, c.databaseURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer pool.Close()
	st, err := newStore(pool, c.prefix, c.outboxTable)
	if err != nil {
		return err
	}
	if err := st.migrate(ctx, c.board); err != nil {
		return err
	}
	if cmd == "init" {
		return nil
	}

	keys, err := modelserver.ReadCentrifugoKeys(c.centrifugoConfig)
	if err != nil {
		return err
	}
	tokens, err := modelserver.NewHS256Tokens([]byte(keys.HMACSecret))
	if err != nil {
		return err
	}
	srv := &server{
		store: st, boardID: c.board.ID, channel: "outbox:board-" + c.board.ID, log: log, sessionKey: []byte(keys.HMACSecret),
		cf: &centrifugo{
			api:    &modelserver.Centrifugo{URL: c.centrifugoURL, APIKey: keys.APIKey},
			tokens: tokens, publicURL: wsURL(c.centrifugoURL),
		},
	}
	h, err := srv.routes()
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen on %s (another demo running? set PGOUTBOX_DEMO_ADDR): %w", c.addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info().Str("addr", ln.Addr().String()).Str("channel", srv.channel).Msg("serving the board")
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
