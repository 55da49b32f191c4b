package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/creditmeter/creditmeter/internal/config"
)

// Set at link time (make build, the Dockerfile: -ldflags "-X main.version=…"),
// they override what debug.ReadBuildInfo knows: Go stamps the VCS revision
// only when it finds a .git directory (not in a git worktree, a Docker build
// context without .git, or under -buildvcs=false).
var version, revision, commitTime string

// build is what the binary knows of how it was built.
type build struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Time      string `json:"time"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
}

func buildInfo() build {
	b := build{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		b.Version = version
	}
	if revision != "" {
		b.Revision = revision
	}
	if commitTime != "" {
		b.Time = commitTime
	}
	return b
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := buildInfo()
			w := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(w).Encode(b)
			}
			modified := ""
			if b.Modified {
				modified = " (modified)"
			}
			_, err := fmt.Fprintf(w, "creditmeter %s\nrevision   %s%s\ncommitted  %s\ngo         %s\n", b.Version, b.Revision, modified, b.Time, b.GoVersion)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as a JSON object")
	withConfig(cmd, &cfg)
	return cmd
}

// buildInfoMetric is creditmeter_build_info{version,revision,goversion} 1.
func buildInfoMetric() prometheus.Collector {
	b := buildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "creditmeter_build_info", Help: "Always 1; the labels say which build of creditmeter runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion}})
	g.Set(1)
	return g
}
