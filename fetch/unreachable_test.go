package fetch

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A registry port where nothing listens: one error naming the host, what
// was tried and what to check, not the transport's two joined Get errors.
func TestUnreachableRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close() // nothing listens there now
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{Access: Access{Keychain: authn.NewMultiKeychain(), Retry: RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond}}, Cache: cache})
	repo, _ := name.NewRepository(host + "/app")
	h, _ := v1.NewHash("sha256:" + strings.Repeat("a", 64))
	_, err = c.FetchBlob(context.Background(), repo, v1.Descriptor{Digest: h, Size: 1})
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want an UnreachableError", err)
	}
	_, port, _ := net.SplitHostPort(host)
	for _, want := range []string{"cannot reach the registry " + host, "connection refused", "tried https and http, 2 times each", "is " + port + " its port?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if strings.Count(err.Error(), "Get ") > 0 {
		t.Errorf("raw transport errors in %q", err)
	}
}

func TestUnreachableOtherErrors(t *testing.T) {
	if Unreachable("h", errors.New("401 Unauthorized"), 1, false) != nil {
		t.Error("an answer is not unreachable")
	}
	dns := &net.DNSError{Err: "no such host", Name: "regsitry.example", IsNotFound: true}
	u := Unreachable("regsitry.example", dns, 1, false)
	if u == nil || !strings.Contains(u.Error(), "no such host (tried https, once); is the host name spelt right") {
		t.Errorf("DNS: %v", u)
	}
}
