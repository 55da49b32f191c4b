package redisx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestClassify(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rc.Close()
	down := rc.Get(context.Background(), "k").Err()
	for _, err := range []error{down, io.EOF, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), context.DeadlineExceeded,
		redis.ErrClosed, redis.ErrPoolTimeout, errors.New("LOADING Redis is loading the dataset in memory"),
		errors.New("READONLY You can't write against a read only replica.")} {
		if c := Classify(err); !errors.Is(c, ErrUnavailable) || !errors.Is(c, err) {
			t.Errorf("Classify(%v) = %v, want it wrapped in ErrUnavailable", err, c)
		}
	}
	for _, err := range []error{nil, redis.Nil, errors.New("WRONGTYPE Operation against a key"), errors.New("CMCONFLICT x")} {
		if c := Classify(err); c != err || Unavailable(err) {
			t.Errorf("Classify(%v) = %v, want it unchanged", err, c)
		}
	}
	once := Classify(io.EOF)
	if Classify(once) != once {
		t.Error("classifying twice wraps twice")
	}
}
