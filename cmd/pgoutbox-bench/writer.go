package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// payloadFill makes the payload about 200 bytes of JSON: jsonb prints
// {"id": 123456, "body": "xx…", "kind": "bench.event", "channel": "ch-456"}.
const payloadFill = 130

// insertSQL inserts the outbox rows k = $1..$2 in one statement (and so, alone, in one
// transaction): channel ch-<k mod channels>, a payload of about 200 bytes, no headers.
func (b *bench) insertSQL(table string) string {
	return fmt.Sprintf(`INSERT INTO %s (channel, name, data)
		SELECT 'ch-' || (k %% %d), 'bench.event',
			jsonb_build_object('id', k, 'channel', 'ch-' || (k %% %d), 'kind', 'bench.event', 'body', repeat('x', %d))
		FROM generate_series($1::bigint, $2::bigint) k`,
		pgx.Identifier{table}.Sanitize(), b.opts.channels, b.opts.channels, payloadFill)
}

// benchPayload is the payload PostgreSQL publishes for row k (jsonb's text form of insertSQL's).
func benchPayload(k int64, channels int) []byte {
	body := make([]byte, payloadFill)
	for i := range body {
		body[i] = 'x'
	}
	return fmt.Appendf(nil, `{"id": %d, "body": "%s", "kind": "bench.event", "channel": "ch-%d"}`, k, body, k%int64(channels))
}

// backlog is what writeBacklog wrote.
type backlog struct {
	Rows       int
	RowsPerTxn int
	Seconds    float64       // writing took
	StartLSN   pglogrepl.LSN // WAL position before the first row
	EndLSN     pglogrepl.LSN // flushed WAL position after the last commit: every row's commit is before it
}

// WALBytes is the WAL the backlog spans (with whatever else the cluster wrote meanwhile).
func (w backlog) WALBytes() int64 { return int64(w.EndLSN - w.StartLSN) }

// writeBacklog commits rows rows into table, rowsPerTxn per transaction, over conns connections
// in parallel. Each connection pipelines its statements with a Sync after each one, so each is
// its own transaction (a pgx Batch would run them all in one implicit transaction), and checks
// the result's number of transactions afterwards.
func (b *bench) writeBacklog(ctx context.Context, table string, rows, rowsPerTxn, conns int) (backlog, error) {
	w := backlog{Rows: rows, RowsPerTxn: rowsPerTxn}
	var err error
	if w.StartLSN, err = b.walLSN(ctx); err != nil {
		return w, err
	}
	txns := rows / rowsPerTxn
	conns = max(1, min(conns, txns))
	began := time.Now()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for c := range conns {
		from, to := txns*c/conns, txns*(c+1)/conns // this connection's transactions
		wg.Go(func() {
			if errs[c] = b.writeTxns(wctx, table, from, to, rowsPerTxn); errs[c] != nil {
				cancel() // the others stop too
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return w, err
	}
	w.Seconds = time.Since(began).Seconds()
	if w.EndLSN, err = b.walLSN(ctx); err != nil {
		return w, err
	}
	return w, b.checkBacklog(ctx, table, rows, txns)
}

// writeTxns commits transactions [from, to) of rowsPerTxn rows each, pipelined in chunks.
func (b *bench) writeTxns(ctx context.Context, table string, from, to, rowsPerTxn int) error {
	conn, err := b.writerConn(ctx, table)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	const chunk = 500
	var txns [][2]int64
	for t := from; t < to; t += chunk {
		txns = txns[:0]
		for i := range min(chunk, to-t) {
			first := int64(t+i)*int64(rowsPerTxn) + 1
			txns = append(txns, [2]int64{first, first + int64(rowsPerTxn) - 1})
		}
		if err := pipelineTxns(ctx, conn, txns); err != nil {
			return err
		}
	}
	return nil
}

// writerConn connects and prepares insertSQL as "ins".
func (b *bench) writerConn(ctx context.Context, table string) (*pgconn.PgConn, error) {
	conn, err := pgconn.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Prepare(ctx, "ins", b.insertSQL(table), nil); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// pipelineTxns runs "ins" once for each range of rows, each in its own transaction (a Sync
// after each), in one round trip.
func pipelineTxns(ctx context.Context, conn *pgconn.PgConn, txns [][2]int64) error {
	p := conn.StartPipeline(ctx)
	for _, t := range txns {
		p.SendQueryPrepared("ins", [][]byte{strconv.AppendInt(nil, t[0], 10), strconv.AppendInt(nil, t[1], 10)}, nil, nil)
		p.SendPipelineSync()
	}
	if err := p.Flush(); err != nil {
		return err
	}
	for range txns {
		if err := pipelineResult(p); err != nil {
			_ = p.Close()
			return err
		}
	}
	return p.Close()
}

// pipelineResult reads one statement's result and the Sync after it.
func pipelineResult(p *pgconn.Pipeline) error {
	res, err := p.GetResults()
	if err != nil {
		return err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("pipeline: got %T, want a result", res)
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	res, err = p.GetResults()
	if err != nil {
		return err
	}
	if _, ok := res.(*pgconn.PipelineSync); !ok {
		return fmt.Errorf("pipeline: got %T, want a sync", res)
	}
	return nil
}

// checkBacklog verifies the table holds rows rows written by txns transactions.
func (b *bench) checkBacklog(ctx context.Context, table string, rows, txns int) error {
	conn, err := pgx.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n, x int
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), count(DISTINCT xmin::text) FROM %s`, pgx.Identifier{table}.Sanitize())).Scan(&n, &x)
	if err != nil {
		return err
	}
	if n != rows || x != txns {
		return fmt.Errorf("backlog check: %d rows in %d transactions, want %d in %d", n, x, rows, txns)
	}
	return nil
}

// walLSN is the flushed WAL position: a commit that returned (synchronous_commit=on) is before it.
func (b *bench) walLSN(ctx context.Context) (pglogrepl.LSN, error) {
	conn, err := pgx.Connect(ctx, b.opts.databaseURL)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var s string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text`).Scan(&s); err != nil {
		return 0, err
	}
	return pglogrepl.ParseLSN(s)
}
