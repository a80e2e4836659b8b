// Package rigger is a thin layer over the generated rigger.v1 Go client
// (package riggerv1): connection setup with TLS and bearer tokens, an event
// watcher that resumes across disconnects, and enum name helpers.
//
// It does not wrap the generated API. Dial returns a plain *grpc.ClientConn;
// build a riggerv1.RiggerServiceClient from it and call the service directly.
package rigger

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Options configures Dial. The zero value dials in plaintext without a token.
type Options struct {
	// CAFile is a PEM bundle used to verify the server. Setting it (or
	// CertFile/KeyFile) switches the connection to TLS; when TLS is on and
	// CAFile is empty, the system roots are used.
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key for
	// mutual TLS. Set both or neither.
	CertFile string
	KeyFile  string
	// Token, when set, is sent as "authorization: Bearer <Token>" on every
	// call, streams included. Without TLS it is sent in the clear, which is
	// meant for loopback servers (see IsLoopback); the Python and TypeScript
	// clients allow it too, so Dial does not refuse it elsewhere.
	Token string
	// DialOptions are appended after the ones Dial builds, so they win.
	DialOptions []grpc.DialOption
}

// Keepalive pings find a dead server or a NAT that dropped the mapping under
// an event stream that can be quiet for hours. 30s is what the other Rigger
// clients use and what `rig grpc` accepts (it allows client pings every 10s).
// A server with gRPC's default policy (5 minutes) would answer with GOAWAY
// "too_many_pings" after a few idle minutes; grpc-go then doubles the
// interval on its own and Watch resubscribes, so that costs a reconnect, not
// events. No pings without a stream: nothing needs to be kept alive then.
var defaultKeepalive = keepalive.ClientParameters{
	Time:                30 * time.Second,
	Timeout:             10 * time.Second,
	PermitWithoutStream: false,
}

// The channel's own reconnect backoff defaults to a 120s cap; a sidecar
// waiting for a restarted server should notice it within seconds, matching
// the watcher's own backoff.
var defaultConnectParams = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  100 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   5 * time.Second,
	},
	MinConnectTimeout: 10 * time.Second,
}

// Dial creates a client connection to addr (any gRPC target, such as
// "localhost:50051", "dns:///rigger:50051" or "unix:///run/rigger.sock").
// Like grpc.NewClient it connects lazily, on the first call.
func Dial(addr string, opts Options) (*grpc.ClientConn, error) {
	useTLS := opts.CAFile != "" || opts.CertFile != "" || opts.KeyFile != ""
	dialOpts := []grpc.DialOption{
		grpc.WithKeepaliveParams(defaultKeepalive),
		grpc.WithConnectParams(defaultConnectParams),
	}
	if useTLS {
		cfg, err := tlsConfig(opts)
		if err != nil {
			return nil, err
		}
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if opts.Token != "" {
		if strings.ContainsAny(opts.Token, "\r\n") {
			return nil, errors.New("rigger: token must be a single line")
		}
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearerToken{
			value:      "Bearer " + opts.Token,
			requireTLS: useTLS,
		}))
	}
	dialOpts = append(dialOpts, opts.DialOptions...)
	return grpc.NewClient(addr, dialOpts...)
}

func tlsConfig(opts Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("rigger: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("rigger: no PEM certificates in CA file %s", opts.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("rigger: client certificate and key must be given together")
	}
	if opts.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("rigger: loading client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// bearerToken is per-RPC credentials, so grpc-go attaches the header to
// streams as well as unary calls.
type bearerToken struct {
	value      string
	requireTLS bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.value}, nil
}

// RequireTransportSecurity is false for plaintext connections; otherwise
// grpc-go would refuse to send the token at all.
func (b bearerToken) RequireTransportSecurity() bool { return b.requireTLS }

// IsLoopback reports whether a gRPC target stays on this machine: a Unix
// socket, "localhost", or a loopback IP. Callers can use it to warn before a
// token goes out over plaintext.
func IsLoopback(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	endpoint := target
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			return false
		}
		endpoint = strings.TrimPrefix(u.Path, "/")
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
