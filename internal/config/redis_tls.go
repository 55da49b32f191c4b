package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
)

// RedisTLS is TLS to Redis beyond rediss:// (ElastiCache in transit, Redis
// Cloud): a private CA, a client certificate, a server name.
type RedisTLS struct {
	TLSCAFile             string
	TLSCertFile           string
	TLSKeyFile            string
	TLSServerName         string
	TLSInsecureSkipVerify bool
}

func (t *RedisTLS) bind(fs *pflag.FlagSet) {
	fs.StringVar(&t.TLSCAFile, "redis-tls-ca-file", t.TLSCAFile, "PEM file of the CA that signed Redis's certificate (default: the system's roots); needs a rediss:// --redis-addr")
	fs.StringVar(&t.TLSCertFile, "redis-tls-cert-file", t.TLSCertFile, "PEM client certificate for Redis (with --redis-tls-key-file), when the server requires one")
	fs.StringVar(&t.TLSKeyFile, "redis-tls-key-file", t.TLSKeyFile, "PEM private key of --redis-tls-cert-file")
	fs.StringVar(&t.TLSServerName, "redis-tls-server-name", t.TLSServerName, "name Redis's certificate must carry (default: each node's host)")
	fs.BoolVar(&t.TLSInsecureSkipVerify, "redis-tls-insecure-skip-verify", t.TLSInsecureSkipVerify, "do not verify Redis's certificate (testing only: anyone on the path can read and change balances)")
}

// config builds the TLS configuration of the settings (nil when only
// defaults apply); every error names its setting.
func (t RedisTLS) config(on bool) (*tls.Config, []error) {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &SettingError{Flag: flag, Err: fmt.Errorf(format, args...)})
	}
	if t == (RedisTLS{}) {
		return nil, nil
	}
	if !on {
		for flag, set := range map[string]bool{"redis-tls-ca-file": t.TLSCAFile != "", "redis-tls-cert-file": t.TLSCertFile != "",
			"redis-tls-key-file": t.TLSKeyFile != "", "redis-tls-server-name": t.TLSServerName != "", "redis-tls-insecure-skip-verify": t.TLSInsecureSkipVerify} {
			if set {
				bad(flag, "needs TLS: give --redis-addr as a rediss:// URL")
			}
		}
		return nil, errs
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.TLSServerName, InsecureSkipVerify: t.TLSInsecureSkipVerify}
	if t.TLSInsecureSkipVerify && t.TLSCAFile != "" {
		bad("redis-tls-insecure-skip-verify", "contradicts --redis-tls-ca-file (a CA is only used to verify)")
	}
	if t.TLSCAFile != "" {
		pem, err := os.ReadFile(t.TLSCAFile)
		if err != nil {
			bad("redis-tls-ca-file", "%v", err)
		} else {
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				bad("redis-tls-ca-file", "no PEM certificate in %s", t.TLSCAFile)
			}
		}
	}
	switch {
	case t.TLSCertFile != "" && t.TLSKeyFile == "":
		bad("redis-tls-key-file", "required with --redis-tls-cert-file")
	case t.TLSCertFile == "" && t.TLSKeyFile != "":
		bad("redis-tls-cert-file", "required with --redis-tls-key-file")
	case t.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(t.TLSCertFile, t.TLSKeyFile)
		if err != nil {
			bad("redis-tls-cert-file", "%v", err)
		} else {
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	return tc, errs
}

// explainHook turns the Redis errors a wrong setting causes (TLS handshake,
// authentication, ACL permission) into a *SettingError naming it; the
// original error stays reachable with errors.Is/As.
type explainHook struct{ r RedisConn }

func (h explainHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h explainHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if e := ExplainRedisError(h.r, err); e != err {
			cmd.SetErr(e)
			return e
		}
		return err
	}
}

func (h explainHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if e := ExplainRedisError(h.r, c.Err()); e != c.Err() {
				c.SetErr(e)
			}
		}
		return ExplainRedisError(h.r, err)
	}
}

// ExplainRedisError names the setting behind err, or returns err unchanged.
func ExplainRedisError(r RedisConn, err error) error {
	if err == nil {
		return nil
	}
	var se *SettingError
	if errors.As(err, &se) {
		return err
	}
	msg := err.Error()
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var notTLS tls.RecordHeaderError
	var certInvalid x509.CertificateInvalidError
	switch {
	// Redis 7.0 answers a script's denied command with ERR and this text.
	case strings.HasPrefix(msg, "NOPERM") || strings.Contains(msg, "NOPERM ") || strings.Contains(msg, "The user executing the script can't"):
		return &SettingError{Flag: "redis-username", Err: fmt.Errorf(
			"Redis user %q may not do this (grant the ACL rule in README.md, \"Redis ACL\", for --redis-key-prefix): %w", userOrDefault(r.Username), err)}
	case strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH"):
		return &SettingError{Flag: "redis-password", Err: fmt.Errorf("Redis refused user %q with this password (--redis-username, --redis-password): %w", userOrDefault(r.Username), err)}
	case errors.As(err, &unknownCA):
		//lint:ignore ST1005 Redis is a proper noun; operators read this message
		return &SettingError{Flag: "redis-tls-ca-file", Err: fmt.Errorf("Redis's certificate is not signed by a trusted CA: %w", err)}
	case errors.As(err, &hostname):
		//lint:ignore ST1005 Redis is a proper noun; operators read this message
		return &SettingError{Flag: "redis-tls-server-name", Err: fmt.Errorf("Redis's certificate does not name this host: %w", err)}
	case errors.As(err, &certInvalid):
		//lint:ignore ST1005 Redis is a proper noun; operators read this message
		return &SettingError{Flag: "redis-tls-ca-file", Err: fmt.Errorf("Redis's certificate is not valid: %w", err)}
	case errors.As(err, &notTLS):
		return &SettingError{Flag: "redis-addr", Err: fmt.Errorf("Redis does not speak TLS on this port (use redis://, or its TLS port): %w", err)}
	case r.TLS && strings.Contains(msg, "certificate required"):
		return &SettingError{Flag: "redis-tls-cert-file", Err: fmt.Errorf("Redis requires a client certificate: %w", err)}
	case r.TLS && strings.Contains(msg, "remote error: tls: "):
		return &SettingError{Flag: "redis-tls-cert-file", Err: fmt.Errorf("Redis refused the TLS handshake (client certificate?): %w", err)}
	}
	return err
}

func userOrDefault(u string) string {
	if u == "" {
		return "default"
	}
	return u
}
