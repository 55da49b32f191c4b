package config

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// Every setting (each flag of every group, with its CREDITMETER_* variable)
// has a row in README.md's configuration table.
func TestReadmeConfigurationTableCoversEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Configuration\n")
	end := strings.Index(readme[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README.md has no \"## Configuration\" section")
	}
	var rows []string
	for _, l := range strings.Split(readme[start:start+1+end], "\n") {
		if strings.HasPrefix(l, "| `") || strings.HasPrefix(l, "| broker `") {
			rows = append(rows, l)
		}
	}
	c := Default()
	fs := pflag.NewFlagSet("all", pflag.ContinueOnError)
	c.Bind(fs, GroupKafka, GroupRedis, GroupClickHouse, GroupHTTP, GroupPrometheus, GroupBroker, GroupEngine)
	c.BindLog(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		for _, r := range rows {
			if strings.Contains(r, "`--"+f.Name+"`") {
				return
			}
		}
		t.Errorf("README.md's configuration table has no row for --%s (%s)", f.Name, EnvName(f.Name))
	})
}
