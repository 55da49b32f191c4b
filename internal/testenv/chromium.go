package testenv

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Chromium returns the path of the Chromium binary for browser tests: the
// CREDITMETER_CHROMIUM variable, else chromium on PATH, else Debian's
// /usr/bin/chromium. A missing or broken binary skips the test, or fails it
// when services are required (install it with deploy/local/install.sh).
func Chromium(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("CREDITMETER_CHROMIUM")
	if bin == "" {
		if p, err := exec.LookPath("chromium"); err == nil {
			bin = p
		} else {
			bin = "/usr/bin/chromium"
		}
	}
	if _, err := os.Stat(bin); err != nil {
		noChromium(t, bin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err == nil && len(out) == 0 {
		err = errors.New("no version printed")
	}
	if err != nil {
		noChromium(t, bin, errors.Join(err, errors.New(string(out))))
	}
	return bin
}

func noChromium(t testing.TB, bin string, err error) {
	t.Helper()
	const how = "install it with deploy/local/install.sh (apt-get install chromium) or point CREDITMETER_CHROMIUM at it"
	if RequireServices() {
		t.Fatalf("chromium at %s is required (CREDITMETER_REQUIRE_SERVICES=1) but not usable; %s: %v", bin, how, err)
	}
	t.Skipf("chromium at %s not usable; %s: %v", bin, how, err)
}
