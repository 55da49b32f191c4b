package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// PKI is a CA and the server and client certificates it signed, and
// another CA, as PEM files in a temporary directory, for TLS tests.
type PKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey, OtherCA string
}

// NewPKI is a PKI whose server certificate is for 127.0.0.1 and redis.test.
func NewPKI(t testing.TB) PKI {
	t.Helper()
	return newPKI(t, "redis", []string{"redis.test"}, []net.IP{net.IPv4(127, 0, 0, 1)})
}

// TLSFiles are PEM files of a test CA and of a server certificate it signed.
type TLSFiles struct {
	CA   string // the CA's certificate
	Cert string // the server's certificate
	Key  string // the server's private key
	// OtherCA is a CA that signed nothing here (to test an untrusted server).
	OtherCA string
}

// GenerateTLS makes a CA and a server certificate for localhost, 127.0.0.1
// and ::1 (plus names), valid for a day; the certificate also serves as a
// client certificate (mutual TLS).
func GenerateTLS(t testing.TB, names ...string) TLSFiles {
	t.Helper()
	p := newPKI(t, "localhost", append([]string{"localhost"}, names...), []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")})
	return TLSFiles{CA: p.CA, Cert: p.ServerCert, Key: p.ServerKey, OtherCA: p.OtherCA}
}

// newPKI issues the CA, another CA, a server certificate for dns and ips
// (usable as a client certificate too) and a client certificate.
func newPKI(t testing.TB, cn string, dns []string, ips []net.IP) PKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	ca := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		k := key()
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, k, der
	}
	leaf := func(caCert *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage []x509.ExtKeyUsage, ips []net.IP, dns []string) ([]byte, []byte) {
		k := key()
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, IPAddresses: ips, DNSNames: dns}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der, kder
	}
	caCert, caKey, caDER := ca("creditmeter test CA")
	_, _, otherDER := ca("some other CA")
	sc, sk := leaf(caCert, caKey, cn, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, ips, dns)
	cc, ck := leaf(caCert, caKey, "creditmeter", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	return PKI{
		CA: write("ca.pem", "CERTIFICATE", caDER), OtherCA: write("other-ca.pem", "CERTIFICATE", otherDER),
		ServerCert: write("server.pem", "CERTIFICATE", sc), ServerKey: write("server.key", "PRIVATE KEY", sk),
		ClientCert: write("client.pem", "CERTIFICATE", cc), ClientKey: write("client.key", "PRIVATE KEY", ck),
	}
}

// StartTLSRedis starts a private redis-server that also listens with TLS
// (client certificates required) and returns its TLS address and a client
// of its plain port (default user) to set ACL users up with.
func StartTLSRedis(t testing.TB, pki PKI) (string, *redis.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	p := StartRedis(t, "--tls-port", tlsPort, "--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey,
		"--tls-ca-cert-file", pki.CA, "--tls-auth-clients", "yes")
	return "127.0.0.1:" + tlsPort, p.Client()
}

// StartTLSRedisCluster starts a Redis Cluster of masters private
// redis-server processes that speak TLS only (clients, cluster bus,
// replication: ElastiCache's encryption in transit; no client certificate
// required), and returns their addresses and an admin client of each node
// (default user) to set ACL users up with: ACL users are per node.
func StartTLSRedisCluster(t testing.TB, pki PKI, masters int) ([]string, []*redis.Client) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "redis-server binary", "PATH", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		Unavailable(t, "redis-cli binary", "PATH", err)
	}
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	taken := map[int]bool{}
	var addrs []string
	var admins []*redis.Client
	for range masters {
		port := strconv.Itoa(freeClusterPort(t, taken))
		dir := t.TempDir()
		cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", "0", "--tls-port", port, "--dir", dir,
			"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey, "--tls-ca-cert-file", pki.CA,
			"--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
			"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server on TLS port %s: %v", port, err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := "127.0.0.1:" + port
		rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1,
			TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}})
		t.Cleanup(func() { rc.Close() })
		deadline := time.Now().Add(10 * time.Second)
		for rc.Ping(context.Background()).Err() != nil {
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
				t.Fatalf("TLS redis-server %s did not answer; log:\n%s", addr, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
		addrs, admins = append(addrs, addr), append(admins, rc)
	}
	args := append([]string{"--tls", "--cacert", pki.CA, "--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --tls --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, rc := range admins {
		for {
			info, err := rc.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(masters)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("TLS cluster not ok after 30s: %v\n%s", err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return addrs, admins
}
