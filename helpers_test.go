package main

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/bundle-tool/bundle/manifests"
	"github.com/google/go-containerregistry/pkg/name"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := manifests.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
