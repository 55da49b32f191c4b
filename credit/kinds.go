package credit

// OveragePolicy says what usage beyond the available credits does; usage is
// always recorded. The catalog's plans (rating) and the balance accounts
// (balance) share it.
type OveragePolicy string

// Overage policies.
const (
	// Overage lets the balance go negative (debt settled by the next grant).
	Overage OveragePolicy = "overage"
	// Unfunded keeps the balance at zero and records the shortfall as
	// unfunded usage.
	Unfunded OveragePolicy = "unfunded"
)

// GrantType is the kind of a credit grant. A plan's included credits are
// promotional or purchased; adjustments that add credits make adjustment
// grants.
type GrantType string

// Grant types.
const (
	Promotional GrantType = "promotional"
	Purchased   GrantType = "purchased"
	Adjustment  GrantType = "adjustment"
)

// Valid reports whether t is a known grant type.
func (t GrantType) Valid() bool { return t == Promotional || t == Purchased || t == Adjustment }
