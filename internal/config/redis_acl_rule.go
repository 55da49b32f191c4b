package config

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// RedisACLCommands are the commands creditmeter sends, directly or from its
// Lua scripts (a script's commands are checked against the caller's ACL):
// the least a creditmeter user needs. README.md ("Redis ACL") shows the rule;
// a test runs the whole product under it.
var RedisACLCommands = []string{
	// connection: go-redis's handshake, readiness, WAIT and Identity.
	"ping", "hello", "auth", "select", "info", "wait",
	// Redis Cluster topology (doctor checks each node's CLUSTER INFO), and
	// COMMAND, which go-redis's cluster client asks for routing before each
	// command until answered (cluster mode only).
	"cluster|slots", "cluster|shards", "cluster|info", "command",
	// scripts: balances, catalog versions, leases.
	"evalsha", "eval", "script|load", "script|exists",
	// catalog transactions.
	"watch", "unwatch", "multi", "exec", "discard",
	"get", "set", "del", "exists", "pexpire", "incr", "decrby",
	"hget", "hgetall", "hmget", "hset", "hsetnx", "hdel", "hexists", "hincrby", "hkeys", "hlen",
	"sadd", "srem", "smembers", "sismember", "smismember", "scard",
	"zadd", "zrem", "zscore", "zcard", "zrangebyscore", "zrevrange", "zremrangebyrank",
	"lindex", "lpop", "lrange", "rpush", "ltrim",
	"xadd", "xrange", "xdel", "xsetid",
}

// RedisACLRule is the least-privilege ACL rule of a creditmeter user whose
// keys start with prefix (--redis-key-prefix): ACL SETUSER <user> <rule...>.
func RedisACLRule(prefix string) []string {
	rule := []string{"on", "resetkeys", "~" + prefix + "*", "resetchannels", "-@all"}
	for _, c := range RedisACLCommands {
		rule = append(rule, "+"+c)
	}
	return rule
}

// RedisACLRuleString is RedisACLRule as one line.
func RedisACLRuleString(prefix string) string { return strings.Join(RedisACLRule(prefix), " ") }

// aclProbe are commands with arguments of the right arity; "\x00K" stands
// for a key under the prefix, so the key pattern is checked too.
var aclProbe = [][]string{
	{"ping"}, {"select", "0"}, {"info", "server"}, {"wait", "0", "0"},
	{"evalsha", "0000000000000000000000000000000000000000", "1", "\x00K"}, {"eval", "return 1", "1", "\x00K"},
	{"script", "load", "return 1"},
	{"get", "\x00K"}, {"set", "\x00K", "v"}, {"del", "\x00K"}, {"exists", "\x00K"}, {"pexpire", "\x00K", "1"},
	{"incr", "\x00K"}, {"decrby", "\x00K", "1"},
	{"hget", "\x00K", "f"}, {"hgetall", "\x00K"}, {"hmget", "\x00K", "f"}, {"hset", "\x00K", "f", "v"}, {"hdel", "\x00K", "f"},
	{"hexists", "\x00K", "f"}, {"hincrby", "\x00K", "f", "1"}, {"hkeys", "\x00K"}, {"hlen", "\x00K"}, {"hsetnx", "\x00K", "f", "v"},
	{"sadd", "\x00K", "m"}, {"srem", "\x00K", "m"}, {"smembers", "\x00K"}, {"sismember", "\x00K", "m"}, {"smismember", "\x00K", "m"}, {"scard", "\x00K"},
	{"zadd", "\x00K", "1", "m"}, {"zrem", "\x00K", "m"}, {"zscore", "\x00K", "m"}, {"zcard", "\x00K"},
	{"zrangebyscore", "\x00K", "0", "1"}, {"zrevrange", "\x00K", "0", "1"}, {"zremrangebyrank", "\x00K", "0", "1"},
	{"lindex", "\x00K", "0"}, {"lpop", "\x00K"}, {"lrange", "\x00K", "0", "1"}, {"rpush", "\x00K", "v"}, {"ltrim", "\x00K", "0", "1"},
	{"xadd", "\x00K", "1-0", "f", "v"}, {"xrange", "\x00K", "-", "+"}, {"xdel", "\x00K", "1-0"}, {"xsetid", "\x00K", "1-0"},
	{"watch", "\x00K"}, {"multi"}, {"exec"},
}

// aclCheckScript asks Redis (7.0+: redis.acl_check_cmd) whether the calling
// user may run each probe; it changes nothing and returns the commands denied.
const aclCheckScript = `
if not redis.acl_check_cmd then return {'?'} end
local denied, i = {}, 1
while i <= #ARGV do
  local n, args = tonumber(ARGV[i]), {}
  for j = 1, n do
    local a = ARGV[i + j]
    if a == '\0K' then a = KEYS[1] end
    args[j] = a
  end
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(args))
  if ok and not allowed then denied[#denied + 1] = args[1] end
  i = i + n + 1
end
return denied`

// CheckRedisACL tells whether the connected user may run what creditmeter
// runs on keys under prefix. A denial is a *SettingError naming
// --redis-username and listing the commands; it matters before any write,
// because Redis does not roll back a script that fails half-way (a balance
// changed without its ledger entry). Other errors (Redis down) are returned
// as they are; a Redis without redis.acl_check_cmd (< 7.0) is not checked.
func CheckRedisACL(ctx context.Context, rc redis.UniversalClient, r RedisConn, prefix string) error {
	var argv []any
	for _, p := range aclProbe {
		argv = append(argv, len(p))
		for _, a := range p {
			argv = append(argv, a)
		}
	}
	res, err := rc.Eval(ctx, aclCheckScript, []string{prefix + "{creditmeter-acl-check}"}, argv...).StringSlice()
	if se := (*SettingError)(nil); errors.As(err, &se) && se.Flag == "redis-username" {
		return &SettingError{Flag: "redis-username", Err: fmt.Errorf("Redis user %q may not run EVAL on keys %s* (grant the ACL rule in README.md, \"Redis ACL\", for --redis-key-prefix): %w",
			userOrDefault(r.Username), prefix, errors.Unwrap(se.Err))}
	}
	if err != nil {
		return err
	}
	if len(res) == 1 && res[0] == "?" || len(res) == 0 {
		return nil
	}
	return &SettingError{Flag: "redis-username", Err: fmt.Errorf("Redis user %q may not run %s on keys %s* (grant the ACL rule in README.md, \"Redis ACL\")",
		userOrDefault(r.Username), strings.ToUpper(strings.Join(res, ", ")), prefix)}
}
