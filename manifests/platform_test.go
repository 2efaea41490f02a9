package manifests

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestMatchPlatform(t *testing.T) {
	for _, c := range []struct {
		want, have string
		ok         bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/arm64", "linux/arm64/v8", true},  // no variant asked: any variant
		{"linux/arm64/v8", "linux/arm64", false}, // a variant asked: that one
		{"linux/arm/v7", "linux/arm/v6", false},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
		{"windows/amd64:10.0.17763", "windows/amd64", false},
		{"windows/amd64", "windows/amd64:10.0.17763", true},
	} {
		w, err := v1.ParsePlatform(c.want)
		if err != nil {
			t.Fatal(err)
		}
		h, err := v1.ParsePlatform(c.have)
		if err != nil {
			t.Fatal(err)
		}
		if got := MatchPlatform(*w, *h); got != c.ok {
			t.Errorf("MatchPlatform(%s, %s) = %v, want %v", c.want, c.have, got, c.ok)
		}
	}
}

func TestIsAllPlatforms(t *testing.T) {
	for _, c := range []struct {
		in []string
		ok bool
	}{
		{[]string{AllPlatforms}, true},
		{nil, false},
		{[]string{"linux/amd64"}, false},
		{[]string{AllPlatforms, "linux/amd64"}, false},
	} {
		if got := IsAllPlatforms(c.in); got != c.ok {
			t.Errorf("IsAllPlatforms(%q) = %v, want %v", c.in, got, c.ok)
		}
	}
}
