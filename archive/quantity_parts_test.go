package archive

import (
	"testing"

	"github.com/shopspring/decimal"
)

// A quantity exact at some scale but whose mantissa there exceeds Int64 is
// truncated to the most decimals that fit (as the Decimal(38, 9) column
// kept 9), not refused: only a whole part beyond Int64 is.
func TestQuantityPartsTruncatesBeyondInt64Mantissa(t *testing.T) {
	for _, tc := range []struct {
		in    string
		mant  int64
		scale uint8
		ok    bool
	}{
		{"1234.5", 12345, 1, true},
		{"9999999999.999999999", 999999999999999999, 8, true},
		{"-9999999999.999999999", -999999999999999999, 8, true},
		{"9223372036854775807.5", 9223372036854775807, 0, true},
		{"12345678901234567890", 0, 0, false},
	} {
		m, s, ok := quantityParts(decimal.RequireFromString(tc.in))
		if m != tc.mant || s != tc.scale || ok != tc.ok {
			t.Errorf("quantityParts(%s) = %d, %d, %v; want %d, %d, %v", tc.in, m, s, ok, tc.mant, tc.scale, tc.ok)
		}
	}
}
