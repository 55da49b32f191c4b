package credit

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/shopspring/decimal"
)

func TestParseExact(t *testing.T) {
	cases := map[string]Amount{"0": 0, "1": Unit, "12.5": 12_500_000, "-3": -3 * Unit, "0.000001": 1, "9000000000": MaxAmount, "-9000000000": -MaxAmount}
	for s, want := range cases {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, got, err, want)
		}
		if back := got.String(); back != s {
			t.Errorf("String of %q = %q", s, back)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for s, want := range map[string]error{"0.0000001": ErrTooPrecise, "9000000000.000001": ErrOutOfRange, "-9000000001": ErrOutOfRange} {
		if _, err := Parse(s); !errors.Is(err, want) {
			t.Errorf("Parse(%q) err = %v, want %v", s, err, want)
		}
	}
	if _, err := Parse("1e"); err == nil {
		t.Error("want error for 1e")
	}
}

func TestRoundHalfAwayFromZero(t *testing.T) {
	for s, want := range map[string]Amount{"0.0000005": 1, "0.0000004": 0, "-0.0000005": -1, "2.1234565": 2_123_457} {
		got, err := RoundDecimal(decimal.RequireFromString(s))
		if err != nil || got != want {
			t.Errorf("RoundDecimal(%s) = %d, %v; want %d", s, got, err, want)
		}
	}
}

func TestAmountJSONDecimalStringOrNumber(t *testing.T) {
	b, err := json.Marshal(struct{ A Amount }{MustParse("0.04")})
	if err != nil || string(b) != `{"A":"0.04"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var v struct{ A, B Amount }
	if err := json.Unmarshal([]byte(`{"A":"250","B":1.5}`), &v); err != nil || v.A != Credits(250) || v.B != 1_500_000 {
		t.Fatalf("unmarshal: %+v %v", v, err)
	}
	if err := json.Unmarshal([]byte(`{"A":"abc"}`), &v); err == nil {
		t.Fatal("want error for abc")
	}
}

func TestMaxBelowLuaExactLimit(t *testing.T) {
	if 2*int64(MaxAmount) >= 1<<54 || int64(MaxAmount) >= 1<<53 {
		t.Fatal("MaxAmount must keep Lua doubles exact")
	}
}
