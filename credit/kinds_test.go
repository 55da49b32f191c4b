package credit

import "testing"

func TestGrantTypeValidOnlyForKnownKinds(t *testing.T) {
	for _, g := range []GrantType{Promotional, Purchased, Adjustment} {
		if !g.Valid() {
			t.Errorf("%q is a grant type", g)
		}
	}
	for _, g := range []GrantType{"", "included", "Purchased"} {
		if g.Valid() {
			t.Errorf("%q is not a grant type", g)
		}
	}
}
