package tokens

import (
	"regexp"
	"strings"
)

// DefaultAdminName names an admin token configured without a name.
const DefaultAdminName = "admin"

var adminNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ParseAdmin splits an admin token entry of the configuration: "name:secret"
// names it (the name is what the audit log and an adjustment's actor show);
// an entry without a colon, or whose part before the first colon is not a
// name (1-64 letters, digits, '.', '_', '@' or '-'), is a secret named
// DefaultAdminName, as before names existed.
func ParseAdmin(entry string) (name, secret string) {
	if n, sec, ok := strings.Cut(entry, ":"); ok && adminNameRe.MatchString(n) && sec != "" {
		return n, sec
	}
	return DefaultAdminName, entry
}
