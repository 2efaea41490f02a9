package testenv

import (
	"testing"
	"time"
)

// Within runs fn and returns its error, failing the test when fn has not
// returned within 20 s: a planted FIFO or /dev/zero must never make bundle
// wait or spin. The goroutine of an fn that never returns is left behind.
func Within(t testing.TB, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s has not returned after 20 s: it waits on or reads a planted file", what)
		return nil
	}
}
