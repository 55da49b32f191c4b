package deploy_test

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/creditmeter/creditmeter/internal/config"
	"github.com/creditmeter/creditmeter/internal/testenv"
)

// staticBuild runs the Dockerfile's go build line (with its ARG defaults)
// here and returns the binary.
func staticBuild(t *testing.T) string {
	t.Helper()
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var build string
	args := map[string]string{}
	var froms []string
	for _, l := range strings.Split(string(df), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "FROM":
			froms = append(froms, f[1])
		case len(f) == 2 && f[0] == "ARG" && strings.Contains(f[1], "="):
			k, v, _ := strings.Cut(f[1], "=")
			args[k] = v
		case len(f) > 1 && f[0] == "RUN" && strings.Contains(l, "go build"):
			build = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "RUN"))
		}
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile: want a multi-stage build, found FROM %v", froms)
	}
	if last := froms[len(froms)-1]; last != "scratch" && !strings.HasPrefix(last, "gcr.io/distroless/static") {
		t.Errorf("Dockerfile: the final image %s is neither scratch nor distroless static", last)
	}
	checkGoImage(t, froms[0])
	if !strings.HasPrefix(build, "CGO_ENABLED=0 go build ") || !strings.Contains(build, " -o /out/creditmeter ./cmd/creditmeter") {
		t.Fatalf("Dockerfile: the build line %q must be CGO_ENABLED=0 go build … -o /out/creditmeter ./cmd/creditmeter", build)
	}
	out := filepath.Join(t.TempDir(), "creditmeter")
	cmd := exec.Command("sh", "-c", strings.Replace(build, "-o /out/creditmeter", "-o "+out, 1))
	cmd.Dir = ".."
	cmd.Env = os.Environ()
	for k, v := range args {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build line failed here: %v\n%s", err, b)
	}
	return out
}

// checkGoImage: the builder image's Go is at least go.mod's.
func checkGoImage(t *testing.T, image string) {
	t.Helper()
	m := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(image)
	if m == nil {
		t.Errorf("Dockerfile: the build stage %s is not a golang:X.Y image", image)
		return
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	g := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(mod)
	if g == nil {
		t.Fatal("go.mod has no go line")
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if num(m[1])*1000+num(m[2]) < num(string(g[1]))*1000+num(string(g[2])) {
		t.Errorf("Dockerfile: %s is older than go.mod's go %s.%s", image, g[1], g[2])
	}
}

// The Dockerfile's build makes a static binary (no ELF interpreter, no
// shared libraries), so it runs on scratch or distroless static.
func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	bin := staticBuild(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "creditmeter dev\nrevision   unknown\n") {
		t.Errorf("the static binary's version (stamped by the Dockerfile's ARG defaults): %v\n%s", err, out)
	}
	if _, err := exec.LookPath("file"); err == nil {
		desc, _ := exec.Command("file", "-b", bin).Output()
		if !strings.Contains(string(desc), "statically linked") {
			t.Errorf("file says: %s", desc)
		}
	}
}

// The unit passes systemd-analyze verify (with its binary and environment
// file at paths that exist here).
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Unavailable(t, "systemd-analyze (Debian package systemd, installed by deploy/local/install.sh)", "PATH", err)
	}
	unit, err := os.ReadFile("systemd/creditmeter.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nExecStart=/usr/local/bin/creditmeter serve\n", "\nEnvironmentFile=/etc/creditmeter/creditmeter.env\n", "\nKillSignal=SIGTERM\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	bin := filepath.Join(t.TempDir(), "creditmeter")
	if b, err := exec.Command("go", "build", "-o", bin, "../cmd/creditmeter").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	env, _ := filepath.Abs("systemd/creditmeter.env.example")
	u := strings.Replace(string(unit), "ExecStart=/usr/local/bin/creditmeter", "ExecStart="+bin, 1)
	u = strings.Replace(u, "EnvironmentFile=/etc/creditmeter/creditmeter.env", "EnvironmentFile="+env, 1)
	path := filepath.Join(t.TempDir(), "creditmeter.service")
	if err := os.WriteFile(path, []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	// verify may also report on units it pulls in; any line about ours fails.
	if err != nil || strings.Contains(string(out), "creditmeter.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Every variable of the environment example is a setting of serve, and
// together they pass serve's validation.
func TestEnvExampleIsValidForServe(t *testing.T) {
	f, err := os.Open("systemd/creditmeter.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(k, config.EnvPrefix) {
			t.Errorf("line %d: want CREDITMETER_NAME=value, got %q", n, l)
			continue
		}
		vars[k] = v
	}
	// serve's settings, as cmd/creditmeter binds them.
	groups := []config.Group{config.GroupKafka, config.GroupRedis, config.GroupClickHouse, config.GroupHTTP, config.GroupEngine}
	c := config.Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.Bind(fs, groups...)
	c.BindLog(fs)
	known := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { known[config.EnvName(f.Name)] = true })
	for k := range vars {
		if !known[k] {
			t.Errorf("%s is not a setting of serve", k)
		}
	}
	if err := config.ApplyEnv(fs, func(k string) (string, bool) { v, ok := vars[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(groups...); err != nil {
		t.Errorf("the example does not validate: %v", err)
	}
	if err := c.ValidateLog(); err != nil {
		t.Errorf("the example does not validate: %v", err)
	}
}
