package fault_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/archive"
	"github.com/creditmeter/creditmeter/balance"
	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/internal/redisx"
	"github.com/creditmeter/creditmeter/internal/testenv"
	"github.com/creditmeter/creditmeter/rating/catalogstore"
)

// closedAddr is a local address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// The classification of the errors the real services produce, and of the
// stores' sentinels.
func TestKindOfRealErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type row struct {
		name string
		err  error
		want fault.Kind
	}
	var rows []row
	add := func(name string, err error, want fault.Kind) {
		if err == nil {
			t.Fatalf("%s: no error produced", name)
		}
		rows = append(rows, row{name, err, want})
	}

	// Redis: a closed port, a wrong type, a failing script, a script's own
	// code (classified by its store, not here), a missing key.
	down := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer down.Close()
	add("redis closed port", down.Get(ctx, "k").Err(), fault.Unavailable)
	rc, prefix := testenv.Keyspace(t)
	if err := rc.Set(ctx, prefix+"str", "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	add("redis WRONGTYPE", rc.LPush(ctx, prefix+"str", "y").Err(), fault.Permanent)
	add("redis Lua runtime error", rc.Eval(ctx, "return redis.call('nosuchcommand')", []string{prefix + "k"}).Err(), fault.Permanent)
	add("redis Lua error reply of the scripts", rc.Eval(ctx, "return redis.error_reply('CMCONFLICT x')", []string{prefix + "k"}).Err(), fault.Unknown)
	add("redis nil", rc.Get(ctx, prefix+"missing").Err(), fault.Unknown)
	add("redis LOADING", errors.New("LOADING Redis is loading the dataset in memory"), fault.Unavailable)
	bs, err := balance.New(down, balance.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bs.Balance(ctx, "sub-1")
	add("balance store on a closed port", err, fault.Unavailable)

	// Kafka: a closed port, a broker's refusal, a retriable broker code.
	_, err = kafka.DialContext(ctx, "tcp", closedAddr(t))
	add("kafka closed port", err, fault.Unavailable)
	b := testenv.Broker(t, 1, "usage-events")
	res, err := (&kafka.Client{Addr: kafka.TCP(b.Addr())}).CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: "usage-events", NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	add("kafka topic already exists", res.Errors["usage-events"], fault.Unknown)
	add("kafka leader not available", fmt.Errorf("fetch: %w", kafka.LeaderNotAvailable), fault.Unavailable)
	add("ingest retryable", &ingest.RetryableError{Op: "commit offsets", Err: errors.New("x")}, fault.Unavailable)

	// ClickHouse: a closed port, a query the server refuses, a transient code.
	_, err = archive.Open(ctx, archive.ConnConfig{Addr: closedAddr(t), Database: "default"})
	add("clickhouse closed port", err, fault.Unavailable)
	conn, _ := testenv.ClickHouse(t)
	add("clickhouse unknown table", conn.Exec(ctx, "SELECT * FROM no_such_table"), fault.Unknown)
	add("clickhouse memory limit", fmt.Errorf("insert: %w", &clickhouse.Exception{Code: 241}), fault.Unavailable)

	// The stores' sentinels.
	add("balance invalid", fmt.Errorf("%w: x", balance.ErrInvalid), fault.Invalid)
	add("balance conflict", balance.ErrConflict, fault.Conflict)
	add("balance insufficient", balance.ErrInsufficientBalance, fault.Invalid)
	add("balance unavailable", balance.ErrUnavailable, fault.Unavailable)
	add("catalog conflict", catalogstore.ErrConflict, fault.Conflict)
	add("catalog busy", catalogstore.ErrBusy, fault.Unavailable)
	add("archive invalid row", archive.ErrInvalidRow, fault.Invalid)
	add("archive ledger conflict", &archive.LedgerConflictError{}, fault.Conflict)
	add("redisx unavailable", redisx.ErrUnavailable, fault.Unavailable)
	add("outage and invalid", errors.Join(balance.ErrInvalid, balance.ErrUnavailable), fault.Unavailable)
	add("context canceled", context.Canceled, fault.Unknown)
	add("io.EOF", fmt.Errorf("read: %w", io.EOF), fault.Unavailable)

	for _, r := range rows {
		if got := fault.Of(r.err); got != r.want {
			t.Errorf("%s: Of(%T %v) = %s, want %s", r.name, r.err, r.err, got, r.want)
		}
	}
}

func TestWrapKeepsTheMessageAndTheChain(t *testing.T) {
	base := errors.New("boom")
	for _, k := range []fault.Kind{fault.Unavailable, fault.Conflict, fault.Invalid, fault.Permanent} {
		err := fault.Wrap(k, base)
		if fault.Of(err) != k || !errors.Is(err, base) || err.Error() != "boom" {
			t.Errorf("Wrap(%s) = %v of kind %s", k, err, fault.Of(err))
		}
	}
	if fault.Wrap(fault.Invalid, nil) != nil {
		t.Error("Wrap of nil is not nil")
	}
	s := fault.New(fault.Conflict, "pkg: conflict")
	if e := fmt.Errorf("%w: x", s); !errors.Is(e, s) || !errors.Is(e, fault.ErrConflict) || errors.Is(e, fault.ErrInvalid) {
		t.Errorf("a sentinel's kind does not follow it: %v", e)
	}
}

func TestStatusOfEachKind(t *testing.T) {
	for k, want := range map[fault.Kind]int{fault.Unavailable: 503, fault.Conflict: 409, fault.Invalid: 400,
		fault.Permanent: 500, fault.Unknown: 500} {
		if got := fault.Status(k); got != want {
			t.Errorf("Status(%s) = %d, want %d", k, got, want)
		}
	}
}
