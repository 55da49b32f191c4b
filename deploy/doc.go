// Package deploy holds creditmeter's deployment files: the systemd unit and
// its environment file (systemd/), the development services (local/) and the
// Prometheus configuration (prometheus/). Its test checks the unit with
// systemd-analyze, the environment example against serve's settings, and
// that the Dockerfile's build line makes a static binary.
package deploy
