package space

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bytes are summed per filesystem (device id), with the margin; a
// filesystem that statfs cannot ask is not checked.
func TestCheck(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"srv", "cache", "other"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fs := map[string]struct {
		dev  uint64
		free int64
	}{
		root + "/srv":   {1, 100 << 20},
		root + "/cache": {1, 100 << 20}, // the same disk as srv
		root + "/other": {2, 50 << 20},
	}
	old := Statfs
	t.Cleanup(func() { Statfs = old })
	Statfs = func(dir string) (uint64, int64, error) {
		f, ok := fs[dir]
		if !ok {
			return 0, 0, errors.New("no such filesystem")
		}
		return f.dev, f.free, nil
	}
	for _, tt := range []struct {
		name string
		add  func(p *Plan)
		want string // "" means it passes
	}{
		{"fits", func(p *Plan) { p.Add(root+"/srv", "the bundle", 60<<20, 1) }, ""},
		{"one disk, summed", func(p *Plan) {
			p.Add(root+"/srv", "the bundle", 60<<20, 1)
			p.Add(root+"/cache", "the cache", 40<<20, 10)
		}, "not enough disk space: needs 101.1 MiB in " + root + "/srv, 100.0 MiB free (the bundle 60.0 MiB, the cache 40.0 MiB, margin 1.1 MiB)"},
		{"two disks, each fits", func(p *Plan) {
			p.Add(root+"/srv", "the bundle", 60<<20, 1)
			p.Add(root+"/other", "the cache", 40<<20, 10)
		}, ""},
		{"margin", func(p *Plan) { p.Add(root+"/other", "the cache", 49<<20+512<<10, 1) }, "needs 50.5 MiB in " + root + "/other, 50.0 MiB free"},
		{"one percent", func(p *Plan) { p.Add(root+"/srv", "the bundle", 99<<20, 1) }, "needs 100.0 MiB in " + root + "/srv"},
		{"unknown filesystem", func(p *Plan) { p.Add(root+"/nowhere", "the bundle", 1<<40, 1) }, ""},
	} {
		var p Plan
		tt.add(&p)
		err := p.Check()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want no error", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
		var se *Error
		if err != nil && !errors.As(err, &se) {
			t.Errorf("%s: %T is not *Error", tt.name, err)
		}
	}
}
