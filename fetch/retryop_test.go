package fetch

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestRetryPolicyRetry checks the whole-operation retry load's uploads
// use: op's last error comes back as it is, after Attempts tries of a
// retryable error and after one of another; each retry is told, counting
// from 1; an ended context stops it with the context's error.
func TestRetryPolicyRetry(t *testing.T) {
	p := RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}
	again, final := errors.New("again"), errors.New("final")
	for _, tc := range []struct {
		name     string
		fail     []error // op's answers in turn; nil once spent
		want     error
		calls    int
		notified []int
	}{
		{"ok first", nil, nil, 1, nil},
		{"ok after two", []error{again, again}, nil, 3, []int{1, 2}},
		{"attempts spent", []error{again, again, again, again}, again, 3, []int{1, 2}},
		{"not retryable", []error{again, final, again}, final, 2, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			var notified []int
			err := p.Retry(context.Background(), func() error {
				calls++
				if calls <= len(tc.fail) {
					return tc.fail[calls-1]
				}
				return nil
			}, func(err error) bool { return err == again }, func(attempt int, err error, d time.Duration) {
				if err != again || d <= 0 || d > p.Max {
					t.Errorf("notified of %v, wait %v", err, d)
				}
				notified = append(notified, attempt)
			})
			if err != tc.want || calls != tc.calls || !slices.Equal(notified, tc.notified) {
				t.Errorf("got %v after %d calls, notified %v; want %v after %d, notified %v", err, calls, notified, tc.want, tc.calls, tc.notified)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := RetryPolicy{Attempts: 5, Base: time.Hour, Max: time.Hour}.Retry(ctx, func() error {
			calls++
			return again
		}, func(error) bool { return true }, func(int, error, time.Duration) {
			if calls == 1 {
				go cancel() // ends the hour's wait
			}
		})
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("got %v after %d calls, want context.Canceled after 1", err, calls)
		}
	})
}
