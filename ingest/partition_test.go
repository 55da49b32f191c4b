package ingest_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/creditmeter/creditmeter/ingest"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// javaMurmur2 are the vectors of the Kafka Java client's own test of the
// hash its default partitioner uses (clients/src/test/java/org/apache/kafka/
// common/utils/UtilsTest.java, testMurmur2): Utils.murmur2(key) as a Java int.
var javaMurmur2 = map[string]int32{
	"21":                         -973932308,
	"foobar":                     -790332482,
	"a-little-bit-long-string":   -985981536,
	"a-little-bit-longer-string": -1486304829,
	"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
	"abc": 479470107,
}

// javaPartition is the Java client's partition of a keyed record:
// Utils.toPositive(Utils.murmur2(key)) % numPartitions.
func javaPartition(key string, partitions int) int {
	return int(uint32(javaMurmur2[key])&0x7fffffff) % partitions
}

// Events produced by creditmeter (POST /v1/events, the dead-letter queue)
// land on the partition the Java client (and librdkafka's murmur2_random)
// would choose for the same key, so other producers of the topic keep a
// customer's events on one partition with ours.
func TestUsageEventsPartitionedLikeTheJavaClient(t *testing.T) {
	for _, partitions := range []int{7, 12} {
		topic, dlq := "usage-events", "usage-events-dlq"
		b := testenv.Broker(t, partitions, topic, dlq)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		w := ingest.NewWriters([]string{b.Addr()}, topic, dlq)
		var msgs []kafka.Message
		for key := range javaMurmur2 {
			msgs = append(msgs, kafka.Message{Key: []byte(key), Value: []byte(`{}`)})
		}
		if err := w.PublishRaw(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		dls := make([]ingest.DeadLetter, len(msgs))
		for i, m := range msgs {
			dls[i] = ingest.DeadLetter{Msg: m, Reason: ingest.ReasonMalformed}
		}
		if err := w.SendDLQ(ctx, dls); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for _, tp := range []string{topic, dlq} {
			got := keysByPartition(ctx, t, b.Addr(), tp, partitions)
			if len(got) != len(javaMurmur2) {
				t.Errorf("%s: found %d of %d keys", tp, len(got), len(javaMurmur2))
			}
			for key := range javaMurmur2 {
				if p, ok := got[key]; ok && p != javaPartition(key, partitions) {
					t.Errorf("%s with %d partitions: key %q on partition %d, the Java client's murmur2 puts it on %d",
						tp, partitions, key, p, javaPartition(key, partitions))
				}
			}
		}
	}
}

// keysByPartition reads every record of the topic and says where each key is.
func keysByPartition(ctx context.Context, t *testing.T, addr, topic string, partitions int) map[string]int {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(addr)}
	out := map[string]int{}
	for p := range partitions {
		res, err := c.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p, Offset: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		}
		if res.Error != nil {
			t.Fatalf("fetch %s/%d: %v", topic, p, res.Error)
		}
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			k, err := io.ReadAll(r.Key)
			if err != nil {
				t.Fatal(err)
			}
			if prev, dup := out[string(k)]; dup && prev != p {
				t.Errorf("%s: key %q on partitions %d and %d", topic, k, prev, p)
			}
			out[string(k)] = p
		}
	}
	return out
}
