package balance

import (
	"embed"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/creditmeter/creditmeter/internal/fault"
)

//go:embed lua/*.lua
var luaFS embed.FS

// sources keeps each script's text by the name of its last part, for the
// tests that read the scripts (TestScriptKeyNames).
var sources = map[string]string{}

// script joins common.lua and the named parts into one script: the parts
// share common.lua's locals, like one file.
func script(names ...string) *redis.Script {
	var b strings.Builder
	for _, name := range append([]string{"common.lua"}, names...) {
		body, err := luaFS.ReadFile("lua/" + name)
		if err != nil {
			panic(err)
		}
		b.Write(body)
		b.WriteString("\n")
	}
	sources[names[len(names)-1]] = b.String()
	return redis.NewScript(b.String())
}

var (
	applyScript   = script("dedupe.lua", "journal.lua", "debtlimit.lua", "unique.lua", "apply.lua")
	changeScript  = script("purchase.lua", "change.lua")
	topUpScript   = script("purchase.lua", "topup.lua")
	openScript    = script("open.lua")
	restoreScript = script("restore.lua")
	expireScript  = script("expire.lua")
	repairScript  = script("dedupe.lua", "repair.lua")
)

// subKeys are the keys of one subscription (key layout in README.md). Every
// script gets them as KEYS[1..subKeyCount], in the order of list(); the lua
// tag is the name the scripts give each (common.lua), and
// TestScriptKeyNames checks every K_ name of every script against them.
type subKeys struct {
	Account     string `lua:"K_ACCOUNT"`     // hash: account fields
	Grants      string `lua:"K_GRANTS"`      // hash: live grants
	Finished    string `lua:"K_FINISHED"`    // hash: finished grants (remaining 0)
	Ledger      string `lua:"K_LEDGER"`      // stream: the ledger
	Idempotency string `lua:"K_IDEMPOTENCY"` // hash: idempotency key → fingerprint|result
	Watermarks  string `lua:"K_WATERMARKS"`  // hash: topic/partition → last applied offset
	DedupeMeta  string `lua:"K_DEDUPE_META"` // hash: dedupe time bucket → count:levels
}

// subKeyCount is len(subKeys.list()).
const subKeyCount = 7

func (k subKeys) list() []string {
	return []string{k.Account, k.Grants, k.Finished, k.Ledger, k.Idempotency, k.Watermarks, k.DedupeMeta}
}

// applyKeys are apply.lua's fixed keys: the subscription's, then the
// journal of the batch's source. The dedupe sets the call may touch follow
// (ddKeys).
type applyKeys struct {
	subKeys
	Journal string `lua:"K_JOURNAL"` // list: first results of uncommitted lines
}

func (k applyKeys) list() []string { return append(k.subKeys.list(), k.Journal) }

// topUpKeys are topup.lua's keys: the subscription's, then its pending
// top-ups.
type topUpKeys struct {
	subKeys
	TopUps string `lua:"K_TOPUPS"` // hash: top-up id → pending top-up record
}

func (k topUpKeys) list() []string { return append(k.subKeys.list(), k.TopUps) }

// keys of one subscription: P{S}:<suffix>.
func (s *Store) keys(sub string) subKeys {
	b := s.prefix + "{" + sub + "}:"
	return subKeys{Account: b + "a", Grants: b + "g", Finished: b + "gd", Ledger: b + "l", Idempotency: b + "i",
		Watermarks: b + "w", DedupeMeta: b + "dm"}
}

// journalKey is the journal of one source ("topic/partition") of sub.
func (s *Store) journalKey(sub, source string) string {
	return s.prefix + "{" + sub + "}:j:" + source
}

// ErrInvariant: a script found the subscription's books broken — its
// balance is not the grants' remainders less the debt, or a grant's
// remainder is negative or unreadable — and refused the call before writing
// anything. Only a hand edit of Redis or a bug does that; retrying cannot
// help (the engine stops).
var ErrInvariant = fault.New(fault.Permanent, "balance: broken books (balance ≠ Σ remaining − debt)")
