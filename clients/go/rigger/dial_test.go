package rigger

import (
	"context"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for target, want := range map[string]bool{
		"localhost:50051":             true,
		"LOCALHOST:1":                 true,
		"127.0.0.1:50051":             true,
		"127.3.2.1:50051":             true,
		"[::1]:50051":                 true,
		"dns:///localhost:50051":      true,
		"passthrough:///[::1]:50051":  true,
		"unix:///run/rigger.sock":     true,
		"unix:rigger.sock":            true,
		"localhost":                   true,
		"rigger.internal:50051":       false,
		"10.0.0.7:50051":              false,
		"[2001:db8::1]:50051":         false,
		"dns:///rigger.example:50051": false,
		"localhost.evil.example:1":    false,
	} {
		if got := IsLoopback(target); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", target, got, want)
		}
	}
}

func TestDialRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string]Options{
		"cert without key": {CertFile: "client.pem"},
		"key without cert": {KeyFile: "client.key"},
		"missing CA file":  {CAFile: "/nonexistent/ca.pem"},
		"multi-line token": {Token: "a\nb"},
	} {
		if conn, err := Dial("localhost:50051", opts); err == nil {
			conn.Close()
			t.Errorf("%s: Dial succeeded; want an error", name)
		}
	}
}

func TestBearerToken(t *testing.T) {
	md, err := bearerToken{value: "Bearer s3cret"}.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer s3cret" {
		t.Errorf("GetRequestMetadata = %v, %v", md, err)
	}
	conn, err := Dial("127.0.0.1:1", Options{Token: "s3cret"})
	if err != nil {
		t.Fatalf("a token over plaintext loopback must be allowed: %v", err)
	}
	conn.Close()
}
