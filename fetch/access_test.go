package fetch

import (
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// TestNewAccess: the flags' values become one Access, the same for
// create, load and inventory; zero or negative mean the defaults, and a
// stall window is kept when the attempts are the default.
func TestNewAccess(t *testing.T) {
	for _, tt := range []struct {
		name    string
		retries int
		stall   time.Duration
		want    RetryPolicy
	}{
		{"defaults", 0, 0, RetryPolicy{Attempts: DefaultRetryPolicy.Attempts, Base: DefaultRetryPolicy.Base, Max: DefaultRetryPolicy.Max, Stall: DefaultStallTimeout}},
		{"retries", 2, 0, RetryPolicy{Attempts: 2, Base: DefaultRetryPolicy.Base, Max: DefaultRetryPolicy.Max, Stall: DefaultStallTimeout}},
		{"stall", 3, 5 * time.Second, RetryPolicy{Attempts: 3, Base: DefaultRetryPolicy.Base, Max: DefaultRetryPolicy.Max, Stall: 5 * time.Second}},
		{"stall with default retries", 0, 5 * time.Second, RetryPolicy{Attempts: DefaultRetryPolicy.Attempts, Base: DefaultRetryPolicy.Base, Max: DefaultRetryPolicy.Max, Stall: 5 * time.Second}},
		{"negative", -1, -time.Second, RetryPolicy{Attempts: DefaultRetryPolicy.Attempts, Base: DefaultRetryPolicy.Base, Max: DefaultRetryPolicy.Max, Stall: DefaultStallTimeout}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAccess([]string{"reg:5000"}, tt.retries, tt.stall)
			if a.Retry != tt.want {
				t.Errorf("Retry = %+v, want %+v", a.Retry, tt.want)
			}
			if a.Keychain != authn.DefaultKeychain {
				t.Errorf("Keychain = %v, want authn.DefaultKeychain", a.Keychain)
			}
			if len(a.Insecure) != 1 || a.Insecure[0] != "reg:5000" {
				t.Errorf("Insecure = %v", a.Insecure)
			}
		})
	}
}

// TestClientStallFromAccess: a Client's stall window is Access.Retry.Stall
// (the one stall knob), else DefaultStallTimeout.
func TestClientStallFromAccess(t *testing.T) {
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		access Access
		want   time.Duration
	}{
		{Access{}, DefaultStallTimeout},
		{Access{Retry: RetryPolicy{Stall: 7 * time.Second}}, 7 * time.Second},
		{Access{Retry: RetryPolicy{Attempts: 2, Stall: 3 * time.Second}}, 3 * time.Second},
	} {
		c := New(Options{Access: tt.access, Cache: cache})
		if c.stall != tt.want || c.policy.Stall != tt.want {
			t.Errorf("Access %+v: stall %v, policy.Stall %v, want %v", tt.access, c.stall, c.policy.Stall, tt.want)
		}
	}
}
