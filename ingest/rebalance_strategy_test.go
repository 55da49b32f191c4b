package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/describegroups"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/fault"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// The rebalance strategy (--kafka-rebalance-strategy) is the assignor the
// group runs, as the broker reports it (DescribeGroups); members that
// disagree (a rolling change of the setting) still form one group.
// Strategies kafka-go's consumer cannot run (cooperative-sticky: it
// rebalances eagerly) are refused.
func TestRebalanceStrategyIsTheGroupsAssignor(t *testing.T) {
	for _, tc := range []struct {
		strategies []string
		want       string // the protocol name the broker reports
	}{
		{[]string{"", ""}, "range"},
		{[]string{"range", "range"}, "range"},
		{[]string{"round-robin", "round-robin"}, "roundrobin"},
		{[]string{"round-robin", "range"}, ""}, // either, as long as the group forms
	} {
		t.Run(fmt.Sprint(tc.strategies), func(t *testing.T) {
			b := testenv.Broker(t, 6, "usage-events")
			group := "g-" + testenv.RandomID(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var cons []*ingest.Consumer
			for _, s := range tc.strategies {
				c := mustConsumer(t, ingest.ConsumerConfig{Brokers: []string{b.Addr()}, Topic: "usage-events", Group: group,
					MaxWait: 50 * time.Millisecond, SessionTimeout: 6 * time.Second, HeartbeatInterval: 200 * time.Millisecond,
					RebalanceStrategy: s})
				defer c.Close()
				cons = append(cons, c)
				go func() { _, _ = c.Fetch(ctx, 1, time.Millisecond) }() // joins the group
			}
			transport := &kafka.Transport{}
			defer transport.CloseIdleConnections()
			for {
				offs, err := cons[0].GroupOffsets(ctx)
				if err != nil {
					t.Fatal(err)
				}
				perMember := map[string]int{}
				for _, o := range offs {
					if o.Member != "" {
						perMember[o.Member]++
					}
				}
				if len(perMember) == 2 && perMember[offs[0].Member] == 3 {
					res, err := transport.RoundTrip(ctx, kafka.TCP(b.Addr()), &describegroups.Request{Groups: []string{group}})
					if err != nil {
						t.Fatal(err)
					}
					g := res.(*describegroups.Response).Groups[0]
					if g.GroupState == "Stable" {
						if tc.want != "" && g.ProtocolData != tc.want {
							t.Errorf("strategies %q: the group runs %q, want %q", tc.strategies, g.ProtocolData, tc.want)
						}
						return
					}
				}
				if ctx.Err() != nil {
					t.Fatalf("strategies %q: two members never shared the 6 partitions: %v", tc.strategies, perMember)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	for _, bad := range []string{"cooperative-sticky", "sticky", "roundrobin"} {
		_, err := ingest.NewConsumer(ingest.ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", RebalanceStrategy: bad})
		if !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("strategy %q: %v, want it refused", bad, err)
		}
	}
}
