package balance

import (
	"strings"

	"github.com/shopspring/decimal"

	"github.com/creditmeter/creditmeter/credit"
)

// minorUnits lists the ISO 4217 currencies whose minor unit is not two
// decimal places; every other currency has two.
var minorUnits = map[string]int32{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

// MinorUnits is the number of decimal places of the currency's minor unit
// (USD 2, JPY 0, KWD 3; 2 for a currency not in ISO 4217's exceptions).
func MinorUnits(currency string) int32 {
	if n, ok := minorUnits[strings.ToUpper(currency)]; ok {
		return n
	}
	return 2
}

// Charge is what a purchase of amount credits at value per credit costs:
// rounded once, half up (away from zero), to the currency's minor unit, so
// every recorded charge and every invoice sum is a whole number of cents.
func Charge(amount credit.Amount, value decimal.Decimal, currency string) decimal.Decimal {
	return amount.Decimal().Mul(value).Round(MinorUnits(currency))
}
