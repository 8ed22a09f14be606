package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
)

// writeSelfSignedCert writes a fresh self-signed certificate for 127.0.0.1
// and its key as PEM files and returns their paths and a pool trusting it.
func writeSelfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokka test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSConfigServesTLS13Only(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeSelfSignedCert(t)
	cfg, err := httpapi.TLSConfig(certFile, keyFile)
	require.NoError(t, err)
	b := setup(t)
	srv := httptest.NewUnstartedServer(b.e)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)

	client := func(minV, maxV uint16) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, MinVersion: minV, MaxVersion: maxV}}}
	}
	for name, c := range map[string]*http.Client{
		"TLS 1.2": client(tls.VersionTLS12, tls.VersionTLS12),
		"TLS 1.1": client(tls.VersionTLS10, tls.VersionTLS11),
	} {
		_, err := c.Get(srv.URL + "/healthz")
		require.Error(t, err, name+" must be refused")
		require.Contains(t, err.Error(), "protocol version", name)
	}
	resp, err := client(tls.VersionTLS13, tls.VersionTLS13).Get(srv.URL + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
	require.Contains(t, resp.Header.Get("Strict-Transport-Security"), "max-age=")

	_, err = httpapi.TLSConfig(certFile, filepath.Join(t.TempDir(), "missing.pem"))
	require.Error(t, err)
	_, err = httpapi.TLSConfig(keyFile, certFile)
	require.Error(t, err, "swapped files")
}
