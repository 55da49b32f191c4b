package prometheus_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

type dashTarget struct {
	RefID  string `json:"refId"`
	Expr   string `json:"expr"`
	Legend string `json:"legendFormat"`
}

type dashPanel struct {
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Targets     []dashTarget `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options string `json:"options"`
			} `json:"matcher"`
			Properties []struct {
				ID    string `json:"id"`
				Value any    `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
}

// property is the override of field prop for the series of query refID, or
// the panel's default ("" when none).
func (p dashPanel) property(refID, prop string) string {
	for _, o := range p.FieldConfig.Overrides {
		if o.Matcher.ID != "byFrameRefID" || o.Matcher.Options != refID {
			continue
		}
		for _, pr := range o.Properties {
			if pr.ID == prop {
				s, _ := pr.Value.(string)
				return s
			}
		}
	}
	if prop == "unit" {
		return p.FieldConfig.Defaults.Unit
	}
	return ""
}

var (
	seconds  = regexp.MustCompile(`creditmeter_\w+_seconds(_bucket|_sum|_count)?\b`)
	credits  = regexp.MustCompile(`creditmeter_\w*credits\w*`)
	rateOver = regexp.MustCompile(`^sum[^/]*\(rate\((creditmeter_\w+_total)\{[^/]*\)\s*/\s*sum[^/]*\(rate\((creditmeter_\w+_total)\{`)
)

// Every series is drawn on an axis of its own unit: durations on seconds,
// counts of events or subscriptions never on seconds nor summed from
// credits, ratios as percentages; a second unit in a panel gets the right
// axis.
func TestDashboardUnits(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		if p.Type != "timeseries" {
			continue
		}
		for _, tg := range p.Targets {
			unit := p.property(tg.RefID, "unit")
			where := p.Title + " / " + tg.RefID + " (" + tg.Legend + ")"
			isSeconds := seconds.MatchString(tg.Expr)
			if isSeconds && unit != "s" {
				t.Errorf("%s: a duration drawn in unit %q, want s", where, unit)
			}
			if !isSeconds && unit == "s" {
				t.Errorf("%s: %s is not a duration but is drawn on a seconds axis", where, tg.Expr)
			}
			if m := rateOver.FindStringSubmatch(tg.Expr); m != nil && m[1] != m[2] && unit != "percentunit" {
				t.Errorf("%s: a ratio of two counters drawn in unit %q, want percentunit", where, unit)
			}
			if credits.MatchString(tg.Expr) && !strings.Contains(strings.ToLower(p.Title+" "+tg.Legend), "credit") {
				t.Errorf("%s: sums credits (%s) under a title and legend that do not say credits", where, tg.Expr)
			}
			if unit != p.FieldConfig.Defaults.Unit && p.property(tg.RefID, "custom.axisPlacement") != "right" {
				t.Errorf("%s: unit %q beside the panel's %q on the same axis; put it on the right axis", where, unit, p.FieldConfig.Defaults.Unit)
			}
		}
	}
}
