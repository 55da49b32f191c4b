package ingest_test

import (
	"errors"
	"testing"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/fault"
)

// A consumer without brokers, topic or group is refused with an error
// naming the field, instead of kafka-go's panic.
func TestNewConsumerRefusesAnIncompleteConfig(t *testing.T) {
	for _, c := range []struct {
		cfg   ingest.ConsumerConfig
		field string
	}{
		{ingest.ConsumerConfig{Topic: "usage-events", Group: "g"}, "brokers"},
		{ingest.ConsumerConfig{Brokers: []string{""}, Topic: "usage-events", Group: "g"}, "brokers"},
		{ingest.ConsumerConfig{Brokers: []string{"127.0.0.1:9092"}, Group: "g"}, "topic"},
		{ingest.ConsumerConfig{Brokers: []string{"127.0.0.1:9092"}, Topic: "usage-events"}, "group"},
	} {
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("missing %s: NewConsumer panicked: %v", c.field, p)
				}
			}()
			var cons *ingest.Consumer
			cons, err = ingest.NewConsumer(c.cfg)
			if cons != nil {
				cons.Close()
			}
		}()
		var ce *ingest.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field || fault.Of(err) != fault.Invalid {
			t.Errorf("missing %s: NewConsumer error %v, want a ConfigError on %s of kind invalid", c.field, err, c.field)
		}
	}
}

func mustConsumer(t testing.TB, c ingest.ConsumerConfig) *ingest.Consumer {
	t.Helper()
	cons, err := ingest.NewConsumer(c)
	if err != nil {
		t.Fatal(err)
	}
	return cons
}
