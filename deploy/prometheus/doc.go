// Package prometheus holds creditmeter's Prometheus configuration: the
// scrape config (prometheus.yml), the alert rules (alerts.yml) with their
// promtool unit tests (rules_test.yml) and a Grafana dashboard. Its Go test
// runs promtool and checks that rules and dashboard use only metrics
// creditmeter serves.
package prometheus
