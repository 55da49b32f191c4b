-- bump alone. KEYS: version, changes. ARGV: change.
return bump(KEYS[1], KEYS[2], ARGV[1])
