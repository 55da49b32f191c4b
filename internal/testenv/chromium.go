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
		Unavailable(t, "chromium", bin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err == nil && len(out) == 0 {
		err = errors.New("no version printed")
	}
	if err != nil {
		Unavailable(t, "chromium", bin, errors.Join(err, errors.New(string(out))))
	}
	return bin
}
